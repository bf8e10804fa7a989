//! `probe` against real sockets on loopback: the lab's misbehaving upstreams, its TLS
//! certificates and DNS responder, and a few servers of this file's own for what the lab does not
//! have (a server that trickles, sends endless headers or never closes; an HTTP/2 server; a
//! CONNECT proxy). Every server here stops by itself; every probe has a deadline.

use gwdoctor::collect::probe::{
    probe_blocking, FailureKind, Phase, ProbeOptions, ProbeReport, ProbeTarget, ProxySettings,
    ResolveOverride,
};
use gwdoctor::lab::bench::{Bench, APP_NAME};
use gwdoctor::lab::dns::DnsMode;
use gwdoctor::lab::tls::{CertKind, LabCa};
use gwdoctor::lab::upstream::Behaviour;
use gwdoctor::rules::probe::findings;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

fn opts() -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_secs(3),
        system_dns: false,
        ..ProbeOptions::default()
    }
}

fn run(url: &str, options: &ProbeOptions) -> ProbeReport {
    let target = ProbeTarget::parse(url).expect("a valid URL");
    probe_blocking(&target, options).expect("a runtime")
}

/// The cause ids of the findings, most likely first.
fn causes(report: &ProbeReport) -> Vec<String> {
    findings(report).0.into_iter().map(|f| f.cause).collect()
}

fn failure_of(report: &ProbeReport) -> (FailureKind, Phase) {
    let f = report.requests[0]
        .failure()
        .unwrap_or_else(|| panic!("expected a failure: {report:#?}"));
    (f.kind, f.phase)
}

/// The probe options with a one-second deadline, for servers that stall on purpose.
fn one_second_deadline() -> ProbeOptions {
    ProbeOptions {
        timeout: Duration::from_secs(1),
        ..opts()
    }
}

/// Pins the lab's site name to `addr`, so that a probe of `https://APP_NAME:port/` sends the
/// name (SNI, Host) yet dials the lab's loopback address.
fn app_name_at(addr: SocketAddr) -> Vec<ResolveOverride> {
    vec![ResolveOverride {
        host: APP_NAME.to_string(),
        port: addr.port(),
        addrs: vec![addr.ip()],
    }]
}

/// Reads a request head (up to the blank line, at most `limit` bytes) byte by byte, so that
/// nothing after it is consumed; `None` when the peer stops or goes quiet first.
fn read_request_head(stream: &mut TcpStream, limit: usize) -> Option<Vec<u8>> {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < limit {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(head)
}

/// The fingerprint of the first hop's answer (who produced the page).
fn first_fingerprint(report: &ProbeReport) -> &gwdoctor::collect::probe::Fingerprint {
    &report.requests[0].hops[0]
        .http
        .as_ref()
        .unwrap()
        .fingerprint
}

// ─────────────────────────────────────────── HTTP ───────────────────────────────────────────

#[test]
fn a_healthy_upstream_is_healthy_with_every_phase_timed() {
    let mut bench = Bench::new().unwrap();
    let addr = bench.upstream(Behaviour::Ok).unwrap();
    let report = run(&format!("http://{addr}/health"), &opts());
    assert!(report.healthy(), "{report:#?}");
    let (f, checks) = findings(&report);
    assert!(f.is_empty(), "{f:#?}");
    assert!(
        checks
            .iter()
            .all(|c| c.status == gwdoctor::findings::Status::Pass),
        "{checks:#?}"
    );
    let hop = &report.requests[0].hops[0];
    let http = hop.http.as_ref().unwrap();
    assert_eq!(
        (http.status, http.body_bytes, http.framing.as_str()),
        (200, 3, "content-length")
    );
    assert!(
        hop.timings.connect_ms.is_some()
            && hop.timings.wait_ms.is_some()
            && hop.timings.transfer_ms.is_some()
    );
    assert_eq!(report.addresses_from, "literal");
}

#[test]
fn a_slow_upstream_shows_in_the_wait_phase() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::Slow {
            delay: Duration::from_millis(300),
        })
        .unwrap();
    let report = run(&format!("http://{addr}/"), &opts());
    assert!(report.healthy());
    let wait = report.requests[0].hops[0].timings.wait_ms.unwrap();
    assert!(wait >= 290.0, "wait {wait} ms");
}

#[test]
fn a_hanging_upstream_is_cut_off_at_the_deadline() {
    let mut bench = Bench::new().unwrap();
    let addr = bench.upstream(Behaviour::Hang).unwrap();
    let options = ProbeOptions {
        timeout: Duration::from_millis(800),
        ..opts()
    };
    let started = Instant::now();
    let report = run(&format!("http://{addr}/"), &options);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(failure_of(&report), (FailureKind::NoResponse, Phase::Head));
    assert!(causes(&report).contains(&"upstream-read-timeout".to_string()));
}

#[test]
fn broken_answers_are_named() {
    let mut bench = Bench::new().unwrap();
    let cases = [
        (
            Behaviour::Garbage,
            FailureKind::NotHttp,
            Phase::Head,
            "upstream-invalid-response",
        ),
        (
            Behaviour::InvalidHeader,
            FailureKind::InvalidResponse,
            Phase::Head,
            "upstream-invalid-response",
        ),
        (
            Behaviour::CloseAfterRequest,
            FailureKind::EmptyReply,
            Phase::Head,
            "upstream-premature-close",
        ),
        (
            Behaviour::Reset,
            FailureKind::Reset,
            Phase::Head,
            "upstream-reset",
        ),
        (
            Behaviour::InvalidChunked,
            FailureKind::InvalidChunked,
            Phase::Body,
            "upstream-invalid-response",
        ),
        (
            Behaviour::HugeHeader { bytes: 200_000 },
            FailureKind::HeadTooBig,
            Phase::Head,
            "upstream-header-too-big",
        ),
    ];
    for (behaviour, kind, phase, cause) in cases {
        let addr = bench.upstream(behaviour.clone()).unwrap();
        let report = run(&format!("http://{addr}/"), &opts());
        assert_eq!(
            failure_of(&report),
            (kind, phase),
            "{behaviour:?}: {report:#?}"
        );
        assert!(
            causes(&report).contains(&cause.to_string()),
            "{behaviour:?}: {:?}",
            causes(&report)
        );
    }
    // Reset carries its errno.
    let addr = bench.upstream(Behaviour::Reset).unwrap();
    let report = run(&format!("http://{addr}/"), &opts());
    assert_eq!(report.requests[0].failure().unwrap().errno, Some(104));
}

#[test]
fn a_big_header_within_the_bound_is_read_and_measured() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::HugeHeader { bytes: 20_000 })
        .unwrap();
    let report = run(&format!("http://{addr}/"), &opts());
    assert!(report.healthy());
    assert!(report.requests[0].hops[0].http.as_ref().unwrap().head_bytes > 20_000);
}

#[test]
fn a_closed_port_is_the_gateway_down_and_the_upstream_port_is_upstream_refused() {
    let bench = Bench::new().unwrap();
    let port = bench.free_port(bench.ip).unwrap();
    let report = run(&format!("http://{}:{port}/", bench.ip), &opts());
    assert_eq!(failure_of(&report), (FailureKind::Refused, Phase::Connect));
    assert_eq!(report.requests[0].failure().unwrap().errno, Some(111));
    assert_eq!(causes(&report)[0], "gateway-down");

    // The site answers 502; its upstream, probed directly, refuses.
    let mut bench = Bench::new().unwrap();
    let site = bench
        .upstream(Behaviour::ForeignPage {
            status: 502,
            body: NGINX_502,
            server: "nginx/1.22.1",
        })
        .unwrap();
    let dead = bench.free_port(bench.ip).unwrap();
    let options = ProbeOptions {
        upstream: Some(format!("{}:{dead}", bench.ip)),
        ..opts()
    };
    let report = run(&format!("http://{site}/"), &options);
    let (f, _) = findings(&report);
    assert_eq!(f[0].cause, "upstream-refused", "{f:#?}");
    assert!(f[0].confidence >= 0.85);
    assert!(
        f[0].evidence
            .iter()
            .any(|e| e.detail.contains("(111: Connection refused)")),
        "{f:#?}"
    );
}

#[test]
fn an_upstream_that_crashes_fails_the_later_requests() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::CrashAfter { requests: 3 })
        .unwrap();
    let options = ProbeOptions { count: 6, ..opts() };
    let report = run(&format!("http://{addr}/"), &options);
    let stats = report.stats.as_ref().unwrap();
    assert_eq!(stats.requests, 6);
    assert_eq!(stats.statuses.get(&200), Some(&3), "{stats:#?}");
    assert_eq!(stats.healthy, 3);
    let c = causes(&report);
    assert!(c.contains(&"gateway-down".to_string()), "{c:?}");
}

#[test]
fn one_failing_address_of_two_is_a_partial_backend_failure() {
    let mut bench = Bench::new().unwrap();
    let good = bench.upstream(Behaviour::Ok).unwrap();
    let octets = bench.ip.octets();
    let other = Ipv4Addr::new(127, 78, octets[2], octets[3]);
    let bad = bench
        .upstream_at(other, good.port(), Behaviour::CloseAfterRequest)
        .unwrap();
    let options = ProbeOptions {
        count: 10,
        concurrency: 3,
        resolve: vec![ResolveOverride {
            host: APP_NAME.to_string(),
            port: good.port(),
            addrs: vec![good.ip(), bad.ip()],
        }],
        ..opts()
    };
    let report = run(&format!("http://{APP_NAME}:{}/", good.port()), &options);
    let stats = report.stats.as_ref().unwrap();
    assert_eq!((stats.requests, stats.healthy), (10, 5), "{stats:#?}");
    assert_eq!(stats.failures.get("empty-reply"), Some(&5));
    let latency = stats.latency.as_ref().unwrap();
    assert!(latency.p50_ms <= latency.p95_ms && latency.p95_ms <= latency.p99_ms);
    let (f, _) = findings(&report);
    let partial = f
        .iter()
        .find(|f| f.cause == "partial-backend-failure")
        .expect("partial-backend-failure");
    assert!(partial.confidence >= 0.8);
    assert!(
        partial.evidence[0].detail.contains(&bad.to_string()),
        "{partial:#?}"
    );
}

#[test]
fn concurrency_and_interval_are_honoured() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::Slow {
            delay: Duration::from_millis(200),
        })
        .unwrap();
    // Four requests, two at a time, 200 ms each: two rounds.
    let options = ProbeOptions {
        count: 4,
        concurrency: 2,
        ..opts()
    };
    let started = Instant::now();
    let report = run(&format!("http://{addr}/"), &options);
    let took = started.elapsed();
    assert_eq!(report.stats.as_ref().unwrap().healthy, 4);
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    // An interval spaces the starts.
    let options = ProbeOptions {
        count: 3,
        concurrency: 3,
        interval: Duration::from_millis(150),
        ..opts()
    };
    let report = run(&format!("http://{addr}/"), &options);
    let starts: Vec<f64> = report.requests.iter().map(|r| r.started_ms).collect();
    assert!(starts[2] - starts[0] >= 290.0, "{starts:?}");
}

// ─────────────────────── servers the lab does not have: trickle, endless, never closes ───────────────────────

/// Serves one connection on 127.0.0.1 with `handler` (after reading the request head), on a
/// thread that ends when the handler returns (handlers stop on a failed write or after 10 s).
fn serve_once(handler: fn(&mut TcpStream)) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        if let Ok((mut stream, _)) = listener.accept() {
            if read_request_head(&mut stream, 65536).is_some() {
                handler(&mut stream);
            }
        }
    });
    addr
}

/// Writes `piece` every `every` until a write fails or 10 s have passed.
fn keep_writing(stream: &mut TcpStream, piece: &[u8], every: Duration) {
    let end = Instant::now() + Duration::from_secs(10);
    while Instant::now() < end {
        if stream.write_all(piece).is_err() {
            return;
        }
        std::thread::sleep(every);
    }
}

#[test]
fn a_trickling_head_is_cut_off_and_named() {
    let addr = serve_once(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ");
        keep_writing(s, b"a", Duration::from_millis(50));
    });
    let started = Instant::now();
    let report = run(&format!("http://{addr}/"), &one_second_deadline());
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(failure_of(&report), (FailureKind::Trickle, Phase::Head));
}

#[test]
fn a_trickling_body_is_cut_off_and_named() {
    let addr = serve_once(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n");
        keep_writing(s, b"a", Duration::from_millis(50));
    });
    let report = run(&format!("http://{addr}/"), &one_second_deadline());
    assert_eq!(failure_of(&report), (FailureKind::Trickle, Phase::Body));
    let http = report.requests[0].hops[0].http.as_ref().unwrap();
    assert_eq!(http.status, 200);
    assert!(!http.body_complete && http.body_bytes > 0);
}

#[test]
fn endless_headers_hit_the_bounds() {
    // Many header lines: the field count bound.
    let addr = serve_once(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\n");
        keep_writing(s, b"X-Endless: more\r\n", Duration::from_micros(100));
    });
    let report = run(&format!("http://{addr}/"), &opts());
    assert_eq!(
        failure_of(&report),
        (FailureKind::TooManyHeaders, Phase::Head)
    );
    // One header line that never ends: the size bound.
    let addr = serve_once(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Endless: ");
        keep_writing(s, &[b'a'; 4096], Duration::from_micros(100));
    });
    let started = Instant::now();
    let report = run(&format!("http://{addr}/"), &opts());
    assert_eq!(failure_of(&report), (FailureKind::HeadTooBig, Phase::Head));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the bound, not the deadline, ended it"
    );
}

#[test]
fn a_server_that_never_closes_an_unframed_body_is_named() {
    let addr = serve_once(|s| {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\n\r\npartial body");
        std::thread::sleep(Duration::from_secs(5));
    });
    let report = run(&format!("http://{addr}/"), &one_second_deadline());
    assert_eq!(failure_of(&report), (FailureKind::NeverCloses, Phase::Body));
    assert_eq!(
        report.requests[0].hops[0].http.as_ref().unwrap().body_bytes,
        12
    );
}

#[test]
fn redirects_are_followed_and_listed_up_to_the_limit() {
    fn redirect(s: &mut TcpStream) {
        let _ = s.write_all(b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n");
    }
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    // Redirects forever: at most 3 connections are served, then the thread ends.
    std::thread::spawn(move || {
        for _ in 0..3 {
            let Ok((mut s, _)) = listener.accept() else {
                return;
            };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            redirect(&mut s);
        }
    });
    let options = ProbeOptions {
        max_redirects: 2,
        ..opts()
    };
    let report = run(&format!("http://{addr}/start"), &options);
    let hops = &report.requests[0].hops;
    assert_eq!(hops.len(), 3, "{hops:#?}");
    assert!(hops[1].url.ends_with("/next"));
    assert_eq!(
        report.requests[0].failure().unwrap().kind,
        FailureKind::TooManyRedirects
    );
}

// ─────────────────────────────────────────── TLS ───────────────────────────────────────────

fn tls_probe(
    bench: &mut Bench,
    kind: Option<CertKind>,
    with_ca: bool,
    insecure: bool,
) -> ProbeReport {
    let addr = bench.upstream_tls(kind, Behaviour::Ok).unwrap();
    let ca = gwdoctor::collect::probe::tls::read_ca_file(&bench.ca_file().unwrap()).unwrap();
    let options = ProbeOptions {
        resolve: app_name_at(addr),
        extra_roots: if with_ca { ca } else { Vec::new() },
        insecure,
        ..opts()
    };
    run(&format!("https://{APP_NAME}:{}/", addr.port()), &options)
}

fn name() -> String {
    APP_NAME.to_string()
}

#[test]
fn a_valid_certificate_from_the_lab_ca_verifies() {
    let mut bench = Bench::new().unwrap();
    let report = tls_probe(
        &mut bench,
        Some(CertKind::Valid { name: name() }),
        true,
        false,
    );
    assert!(report.healthy(), "{report:#?}");
    let tls = report.requests[0].hops[0].tls.as_ref().unwrap();
    assert!(tls.verified && tls.name_matches == Some(true));
    assert!(tls.version.is_some() && tls.cipher.is_some());
    let leaf = &tls.chain[0];
    assert!(leaf.names.contains(&name()), "{leaf:#?}");
    assert!((28..=30).contains(&leaf.days_left), "{leaf:#?}");
    assert!(tls.roots.contains("from --ca-file"));
    assert!(findings(&report).0.is_empty());
}

#[test]
fn certificate_failures_are_named_and_judged() {
    let mut bench = Bench::new().unwrap();
    let cases = [
        (
            Some(CertKind::Valid { name: name() }),
            false,
            FailureKind::CertUnknownIssuer,
        ),
        (
            Some(CertKind::SelfSigned { name: name() }),
            true,
            FailureKind::CertUnknownIssuer,
        ),
        (
            Some(CertKind::Expired { name: name() }),
            true,
            FailureKind::CertExpired,
        ),
        (
            Some(CertKind::WrongName { name: name() }),
            true,
            FailureKind::CertWrongName,
        ),
    ];
    for (kind, with_ca, want) in cases {
        let report = tls_probe(&mut bench, kind.clone(), with_ca, false);
        assert_eq!(failure_of(&report), (want, Phase::Tls), "{kind:?}");
        let tls = report.requests[0].hops[0].tls.as_ref().unwrap();
        assert!(
            !tls.chain.is_empty(),
            "the chain is reported even when it fails: {kind:?}"
        );
        let (f, _) = findings(&report);
        assert_eq!(f[0].cause, "site-cert-invalid", "{kind:?}");
        match want {
            FailureKind::CertExpired => assert!(tls.chain[0].days_left < 0),
            FailureKind::CertWrongName => assert_eq!(tls.name_matches, Some(false)),
            _ => {}
        }
    }
    let report = tls_probe(
        &mut bench,
        Some(CertKind::SelfSigned { name: name() }),
        true,
        false,
    );
    assert!(report.requests[0].hops[0].tls.as_ref().unwrap().chain[0].self_issued);
}

#[test]
fn insecure_goes_on_and_still_reports_the_certificate() {
    let mut bench = Bench::new().unwrap();
    let report = tls_probe(
        &mut bench,
        Some(CertKind::Expired { name: name() }),
        true,
        true,
    );
    assert_eq!(report.requests[0].final_status(), Some(200));
    assert!(report.requests[0].failure().is_none());
    assert_eq!(causes(&report)[0], "site-cert-invalid");
}

#[test]
fn a_server_demanding_sni_fails_without_it() {
    // An address literal sends no SNI: the lab's SNI-demanding server aborts the handshake.
    let mut bench = Bench::new().unwrap();
    let addr = bench.upstream_tls(None, Behaviour::Ok).unwrap();
    let report = run(&format!("https://{addr}/"), &opts());
    let (kind, phase) = failure_of(&report);
    assert_eq!(
        (kind, phase),
        (FailureKind::TlsAlert, Phase::Tls),
        "{report:#?}"
    );
}

#[test]
fn the_wrong_scheme_is_a_protocol_mismatch() {
    let mut bench = Bench::new().unwrap();
    let tls_port = bench
        .upstream_tls(Some(CertKind::Valid { name: name() }), Behaviour::Ok)
        .unwrap();
    let report = run(&format!("http://{tls_port}/"), &opts());
    assert_eq!(failure_of(&report).1, Phase::Head);
    assert!(
        matches!(
            failure_of(&report).0,
            FailureKind::ProtocolMismatch | FailureKind::Truncated | FailureKind::EmptyReply
        ),
        "{report:#?}"
    );
    let plain = bench.upstream(Behaviour::Ok).unwrap();
    let report = run(&format!("https://{plain}/"), &opts());
    assert_eq!(failure_of(&report).1, Phase::Tls, "{report:#?}");
}

/// An HTTP/2 server over TLS (ALPN h2) with a lab certificate, answering `status` to one
/// request, on its own runtime thread.
fn h2_server(ca: &LabCa, status: u16) -> SocketAddr {
    let config = gwdoctor::lab::tls::server_config(ca, &CertKind::Valid { name: name() }).unwrap();
    let mut config = (*config).clone();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            let serve = async {
                let (tcp, _) = listener.accept().await.ok()?;
                let tls = acceptor.accept(tcp).await.ok()?;
                let mut conn = h2::server::handshake(tls).await.ok()?;
                let (_req, mut respond) = conn.accept().await?.ok()?;
                let response = http::Response::builder()
                    .status(status)
                    .header("server", "h2-lab")
                    .body(())
                    .ok()?;
                let mut send = respond.send_response(response, false).ok()?;
                send.send_data(bytes::Bytes::from_static(b"hello over h2\n"), true)
                    .ok()?;
                // Drive the connection until the client goes away.
                let _ = tokio::time::timeout(Duration::from_secs(5), conn.accept()).await;
                Some(())
            };
            let _ = tokio::time::timeout(Duration::from_secs(10), serve).await;
        });
    });
    addr
}

#[test]
fn http2_is_used_when_alpn_offers_it() {
    let ca = LabCa::new().unwrap();
    let addr = h2_server(&ca, 503);
    let options = ProbeOptions {
        resolve: app_name_at(addr),
        extra_roots: vec![ca.cert_der()],
        ..opts()
    };
    let report = run(&format!("https://{APP_NAME}:{}/", addr.port()), &options);
    let hop = &report.requests[0].hops[0];
    assert_eq!(
        hop.tls.as_ref().unwrap().alpn.as_deref(),
        Some("h2"),
        "{report:#?}"
    );
    let http = hop.http.as_ref().unwrap();
    assert_eq!(
        (http.version.as_str(), http.status, http.body_bytes),
        ("HTTP/2", 503, 14)
    );
    assert_eq!(http.header("server"), Some("h2-lab"));
    assert!(!report.healthy());
}

// ─────────────────────────────────────────── DNS ───────────────────────────────────────────

#[test]
fn resolver_failures_are_classified() {
    let mut bench = Bench::new().unwrap();
    let cases = [
        (DnsMode::NxDomain, FailureKind::DnsNxdomain, "dns-nxdomain"),
        (DnsMode::ServFail, FailureKind::DnsServfail, "dns-failure"),
        (DnsMode::Silent, FailureKind::DnsTimeout, "dns-failure"),
    ];
    for (mode, kind, cause) in cases {
        let server = bench.dns(mode.clone()).unwrap();
        let options = ProbeOptions {
            resolvers: vec![server],
            ..opts()
        };
        let started = Instant::now();
        let report = run(&format!("http://{APP_NAME}/"), &options);
        assert!(
            started.elapsed() < Duration::from_secs(4),
            "{mode:?} took {:?}",
            started.elapsed()
        );
        let answer = &report.dns.as_ref().unwrap().answers[0];
        assert_eq!(
            answer.failure.as_ref().unwrap().kind,
            kind,
            "{mode:?}: {answer:#?}"
        );
        assert_eq!(failure_of(&report), (kind, Phase::Dns));
        assert_eq!(causes(&report)[0], cause, "{mode:?}");
    }
}

/// A lab DNS server that answers every A query with `v4` (and no AAAA) at `ttl` seconds.
fn dns_answering(bench: &mut Bench, v4: Ipv4Addr, ttl: u32) -> SocketAddr {
    bench
        .dns(DnsMode::Answer {
            v4: vec![v4],
            v6: vec![],
            ttl,
        })
        .unwrap()
}

/// Probes `http://APP_NAME:port/` of `app`, asking only `resolvers` for the name.
fn run_by_name(app: SocketAddr, resolvers: Vec<SocketAddr>) -> ProbeReport {
    let options = ProbeOptions {
        resolvers,
        ..opts()
    };
    run(&format!("http://{APP_NAME}:{}/", app.port()), &options)
}

#[test]
fn a_resolver_answer_is_used_with_its_ttl() {
    let mut bench = Bench::new().unwrap();
    let app = bench.upstream(Behaviour::Ok).unwrap();
    let ip = bench.ip;
    let server = dns_answering(&mut bench, ip, 120);
    let report = run_by_name(app, vec![server]);
    assert!(report.healthy(), "{report:#?}");
    assert_eq!(report.addresses, vec![app]);
    let answer = &report.dns.as_ref().unwrap().answers[0];
    assert!(
        answer
            .records
            .iter()
            .any(|r| r.rtype == "A" && r.ttl == 120 && r.data == bench.ip.to_string()),
        "{answer:#?}"
    );
}

#[test]
fn resolvers_that_disagree_are_a_client_dns_mismatch() {
    let mut bench = Bench::new().unwrap();
    let app = bench.upstream(Behaviour::Ok).unwrap();
    let ip = bench.ip;
    let right = dns_answering(&mut bench, ip, 60);
    let stale = dns_answering(&mut bench, Ipv4Addr::new(127, 79, 0, 1), 86400);
    let report = run_by_name(app, vec![right, stale]);
    let (f, _) = findings(&report);
    let mismatch = f
        .iter()
        .find(|f| f.cause == "client-dns-mismatch")
        .expect("client-dns-mismatch");
    assert_eq!(mismatch.evidence.len(), 2);
    assert!(
        mismatch.evidence[1].detail.contains("127.79.0.1"),
        "{mismatch:#?}"
    );
}

// ─────────────────────────────────────────── proxy ───────────────────────────────────────────

const SQUID_502: &str = "<html><head><title>ERROR: The requested URL could not be retrieved</title></head><body><h1>ERROR</h1><p>The system returned: (111) Connection refused</p></body></html>\n";
const NGINX_502: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n</body>\r\n</html>\r\n";

/// A proxy's own 502 page: squid could not reach the site.
const SQUID_REFUSING: Behaviour = Behaviour::ForeignPage {
    status: 502,
    body: SQUID_502,
    server: "squid/5.7",
};

fn proxy_env(var: &str, value: String, no_proxy: Option<&str>) -> ProxySettings {
    ProxySettings::from_lookup(|n| {
        if n == var {
            Some(value.clone())
        } else if n == "NO_PROXY" {
            no_proxy.map(str::to_string)
        } else {
            None
        }
    })
}

#[test]
fn a_failing_proxy_with_a_working_site_is_the_client_proxy() {
    let mut bench = Bench::new().unwrap();
    let site = bench.upstream(Behaviour::Ok).unwrap();
    let proxy = bench.upstream(SQUID_REFUSING).unwrap();
    let options = ProbeOptions {
        proxy: proxy_env("HTTP_PROXY", format!("http://{proxy}"), None),
        ..opts()
    };
    let report = run(&format!("http://{site}/"), &options);
    assert_eq!(report.requests[0].final_status(), Some(502));
    assert!(report.requests[0].hops[0].proxy.is_some());
    assert!(report
        .proxy
        .as_ref()
        .unwrap()
        .direct
        .as_ref()
        .unwrap()
        .healthy());
    assert_eq!(causes(&report)[0], "client-proxy");

    // NO_PROXY covers the site: straight there.
    let options = ProbeOptions {
        proxy: proxy_env(
            "HTTP_PROXY",
            format!("http://{proxy}"),
            Some(&site.ip().to_string()),
        ),
        ..opts()
    };
    let report = run(&format!("http://{site}/"), &options);
    assert!(report.healthy() && report.proxy.is_none());
    assert!(
        report.notes.iter().any(|n| n.contains("NO_PROXY")),
        "{:?}",
        report.notes
    );
}

#[test]
fn https_goes_through_a_connect_tunnel() {
    let mut bench = Bench::new().unwrap();
    let site = bench
        .upstream_tls(Some(CertKind::Valid { name: name() }), Behaviour::Ok)
        .unwrap();
    let ca = gwdoctor::collect::probe::tls::read_ca_file(&bench.ca_file().unwrap()).unwrap();
    let url = format!("https://{APP_NAME}:{}/", site.port());
    let resolve = app_name_at(site);

    // A proxy that refuses the tunnel with its own error page.
    let refusing = bench.upstream(SQUID_REFUSING).unwrap();
    let options = ProbeOptions {
        resolve: resolve.clone(),
        extra_roots: ca.clone(),
        proxy: proxy_env("HTTPS_PROXY", format!("{refusing}"), None),
        ..opts()
    };
    let report = run(&url, &options);
    assert_eq!(
        failure_of(&report),
        (FailureKind::ProxyTunnelRefused, Phase::Proxy)
    );
    assert_eq!(causes(&report)[0], "client-proxy");

    // A working proxy: TLS runs end to end through the tunnel and verifies.
    let proxy = connect_proxy(site);
    let options = ProbeOptions {
        resolve,
        extra_roots: ca,
        proxy: proxy_env("https_proxy", format!("http://{proxy}"), None),
        ..opts()
    };
    let report = run(&url, &options);
    assert!(report.healthy(), "{report:#?}");
    assert!(report.requests[0].hops[0].timings.proxy_ms.is_some());
    assert!(report.requests[0].hops[0].tls.as_ref().unwrap().verified);
}

/// A CONNECT proxy for one tunnel, which may only lead to `allowed` (the lab's site).
fn connect_proxy(allowed: SocketAddr) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let Ok((mut client, _)) = listener.accept() else {
            return;
        };
        let Some(head) = read_request_head(&mut client, 8192) else {
            return;
        };
        assert!(
            head.starts_with(b"CONNECT "),
            "{}",
            String::from_utf8_lossy(&head)
        );
        let Ok(mut upstream) = TcpStream::connect_timeout(&allowed, Duration::from_secs(2)) else {
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        upstream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let (mut c2, mut u2) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut c2, &mut u2);
            let _ = u2.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut upstream, &mut client);
        let _ = client.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    });
    addr
}

// ─────────────────────────────────────────── who produced it ───────────────────────────────────────────

#[test]
fn a_cloudflare_521_page_blames_the_origin() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::ForeignPage {
            status: 521,
            body: CLOUDFLARE_521,
            server: "cloudflare",
        })
        .unwrap();
    let report = run(&format!("http://{addr}/"), &opts());
    let fp = first_fingerprint(&report);
    assert_eq!(fp.page.as_ref().unwrap().signature, "cloudflare-521");
    assert_eq!(fp.front.as_ref().unwrap().product, "cloudflare");
    let c = causes(&report);
    assert_eq!(&c[..2], ["edge-origin-error", "upstream-refused"], "{c:?}");
}

#[test]
fn another_hops_page_behind_nginx_is_a_passthrough() {
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream(Behaviour::ForeignPage {
            status: 502,
            body: "<html><body><h1>502 Bad Gateway</h1>\nThe server returned an invalid or incomplete response.\n</body></html>\n",
            server: "nginx/1.24.0",
        })
        .unwrap();
    let report = run(&format!("http://{addr}/"), &opts());
    let fp = first_fingerprint(&report);
    assert!(fp.passed_through());
    assert_eq!(fp.page.as_ref().unwrap().product, "haproxy");
    assert_eq!(causes(&report)[0], "upstream-5xx-passthrough");
}

const CLOUDFLARE_521: &str = r#"<!DOCTYPE html>
<head>
<title>example.com | 521: Web server is down</title>
<meta charset="UTF-8" />
</head>
<body>
<div id="cf-wrapper">
    <div id="cf-error-details" class="p-0">
        <header class="mx-auto pt-10 lg:pt-6 lg:px-8 w-240 lg:w-full mb-8">
            <h1 class="inline-block sm:block sm:mb-2 font-light text-60 lg:text-4xl text-black-dark leading-tight mr-2">
              <span class="inline-block">Web server is down</span>
              <span class="code-label">Error code 521</span>
            </h1>
        </header>
<div id="cf-host-status" class="cf-error-source relative w-1/3 md:w-full py-15 md:p-0 md:py-8 md:text-left md:border-solid md:border-0 md:border-b md:border-gray-400 overflow-hidden float-left md:float-none text-center">
  <span class="md:block w-full truncate">example.com</span>
  <span class="leading-1.3 text-2xl text-red-error">Error</span>
</div>
                    <h2 class="text-3xl font-normal leading-1.3 mb-4">What happened?</h2>
                    <p>The web server is not returning a connection. As a result, the web page is not displaying.</p>
</div></div></body></html>
"#;
