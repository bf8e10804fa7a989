//! `watch` against https targets: the lab's TLS upstreams (a certificate of the lab CA valid for
//! 30 days, an expired one, one for another name, a self-signed one, one that needs SNI) and a
//! server of this test whose certificate expires in 5 days. The lab CA and this test's CA are
//! trusted the way an operator trusts a private CA: `ca_files` (the probe's `--ca-file`).
//!
//! Checked: `/metrics` carries `gwdoctor_cert_expiry_timestamp_seconds` with the right date, also
//! for a certificate that did not verify; probe failures are labelled with the TLS reason
//! (`cert-expired`, `cert-unknown-issuer`, `cert-wrong-name`, `tls-alert`); `/api/status` and
//! the status page show days left, coloured by urgency; the page is looked at in headless
//! Chromium when it is installed.

mod common;

use gwdoctor::i18n::Lang;
use gwdoctor::lab::bench::Bench;
use gwdoctor::lab::tls::CertKind;
use gwdoctor::lab::upstream::Behaviour;
use gwdoctor::watch::config::{AlertRules, Target, WatchConfig};
use gwdoctor::watch::Watch;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const DAY: i64 = 86_400;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A CA of this test and a server on `ip` whose certificate (for `ip`, signed by that CA) ends
/// `days` from now: the "valid but soon expiring" case the lab does not make. Returns the
/// server's address, the CA's PEM file (in `dir`) and the certificate's notAfter.
async fn expiring_server(ip: IpAddr, days: i64, dir: &Path) -> (SocketAddr, PathBuf, i64) {
    let now_t = time::OffsetDateTime::now_utc();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "watch test CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.not_before = now_t - time::Duration::days(1);
    ca.not_after = now_t + time::Duration::days(365);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let mut leaf = CertificateParams::new(vec![ip.to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, ip.to_string());
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf.use_authority_key_identifier_extension = true;
    leaf.not_before = now_t - time::Duration::hours(1);
    let not_after = now_t + time::Duration::days(days);
    leaf.not_after = not_after;
    let leaf_cert = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let ca_file = dir.join("test-ca.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();

    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![CertificateDer::from(leaf_cert.der().to_vec())],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        // Bounded: the test probes a few dozen times.
        for _ in 0..2_000 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let served = async {
                    let mut tls = acceptor.accept(tcp).await.ok()?;
                    let mut head = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
                        let n = tls.read(&mut chunk).await.ok()?;
                        if n == 0 {
                            return None;
                        }
                        head.extend_from_slice(&chunk[..n]);
                    }
                    tls.write_all(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n",
                    )
                    .await
                    .ok()?;
                    tls.shutdown().await.ok()
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), served).await;
            });
        }
    });
    (addr, ca_file, not_after.unix_timestamp())
}

/// The value of one series of a text exposition.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// A screenshot of `url` by headless Chromium, when it is installed (bounded; killed by pid).
fn screenshot(url: &str, png: &Path) {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("skipping the screenshot: /usr/bin/chromium is not installed");
        return;
    }
    let profile = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--window-size=1200,700",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let began = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if began.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("chromium did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success() && png.exists(), "chromium: {status:?}");
    eprintln!("screenshot: {}", png.display());
}

#[test]
fn certificates_expiry_and_tls_failure_reasons() {
    let mut bench = Bench::new().unwrap();
    let ip = bench.ip;
    let name = ip.to_string();
    let made = now();
    let mut upstream = |kind: Option<CertKind>| {
        let addr = bench.upstream_tls(kind, Behaviour::Ok).unwrap();
        format!("https://{addr}/")
    };
    let valid = upstream(Some(CertKind::Valid { name: name.clone() }));
    let expired = upstream(Some(CertKind::Expired { name: name.clone() }));
    let wrong_name = upstream(Some(CertKind::WrongName { name: name.clone() }));
    let self_signed = upstream(Some(CertKind::SelfSigned { name: name.clone() }));
    // An address literal is not sent as SNI: this upstream refuses the handshake.
    let needs_sni = upstream(None);
    let lab_ca = bench.ca_file().unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (soon_addr, test_ca, soon_not_after) =
        rt.block_on(expiring_server(IpAddr::V4(ip), 5, dir.path()));
    let soon = format!("https://{soon_addr}/");

    let targets = [
        ("valid", &valid),
        ("soon", &soon),
        ("expired", &expired),
        ("wrong-name", &wrong_name),
        ("self-signed", &self_signed),
        ("needs-sni", &needs_sni),
    ];
    let config = WatchConfig {
        targets: targets
            .iter()
            .map(|(n, url)| Target::new(url, Some(n.to_string()), Duration::from_secs(3)).unwrap())
            .collect(),
        interval: Duration::from_millis(300),
        listen: "127.0.0.1:0".parse().unwrap(),
        ca_files: vec![lab_ca, test_ca],
        alert: AlertRules {
            // Failing targets are what this test is about; the alert path is watch_lab's.
            failed_probes: 1_000_000,
            ..AlertRules::default()
        },
        ..WatchConfig::default()
    };
    let watch = rt.block_on(Watch::start(config, Lang::En)).unwrap();
    let page = watch.addr;

    // Every target probed at least twice.
    let began = Instant::now();
    let status = loop {
        let status: serde_json::Value =
            serde_json::from_str(&common::get_body(page, "/api/status")).unwrap();
        let all = status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["probes"].as_u64() >= Some(2));
        if all {
            break status;
        }
        assert!(
            began.elapsed() < Duration::from_secs(30),
            "targets not probed: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let target = |n: &str| {
        status["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == n)
            .unwrap()
            .clone()
    };

    // Verified: up, and the expiry is the lab leaf's (30 days after it was made).
    let v = target("valid");
    assert_eq!(v["up"], true, "{v:#}");
    assert_eq!(v["cert"]["verified"], true, "{v:#}");
    let expires = v["cert"]["expires"].as_i64().unwrap();
    assert!(
        (expires - (made + 30 * DAY)).abs() <= 120,
        "expires {expires}, made {made}: {v:#}"
    );
    // 30 days to the second when probed within the second it was made, else 29 and some.
    let days = v["cert"]["days_left"].as_i64().unwrap();
    assert!(days == 29 || days == 30, "{v:#}");

    // Valid but soon expiring: up, verified, 4 whole days (and some) left.
    let s = target("soon");
    assert_eq!(s["up"], true, "{s:#}");
    assert_eq!(s["cert"]["expires"], soon_not_after, "{s:#}");
    let days = s["cert"]["days_left"].as_i64().unwrap();
    assert!(days == 4 || days == 5, "{s:#}");

    // Expired: down because of it, and its date still known (yesterday).
    let e = target("expired");
    assert_eq!(e["up"], false);
    assert_eq!(e["last_failure"], "cert-expired", "{e:#}");
    assert_eq!(e["cert"]["days_left"], -1, "{e:#}");
    assert_eq!(e["cert"]["problem"], "cert-expired");
    assert!(
        e["last_detail"].as_str().unwrap().contains("expired"),
        "{e:#}"
    );

    // Untrusted and wrong name: named, with the certificate still read.
    let w = target("wrong-name");
    assert_eq!(w["last_failure"], "cert-wrong-name", "{w:#}");
    assert!(w["cert"]["names"]
        .as_array()
        .unwrap()
        .iter()
        .any(|n| n == gwdoctor::lab::tls::WRONG_NAME));
    let u = target("self-signed");
    assert_eq!(u["last_failure"], "cert-unknown-issuer", "{u:#}");
    assert_eq!(u["cert"]["verified"], false);

    // The handshake itself refused: no certificate at all.
    let h = target("needs-sni");
    assert_eq!(h["last_failure"], "tls-alert", "{h:#}");
    assert!(h["cert"].is_null(), "{h:#}");

    // The same in /metrics.
    let metrics = common::get_body(page, "/metrics");
    let expiry = |t: &str| {
        sample(
            &metrics,
            &format!("gwdoctor_cert_expiry_timestamp_seconds{{target=\"{t}\"}}"),
        )
    };
    assert_eq!(expiry("valid"), Some(expires as f64), "{metrics}");
    assert_eq!(expiry("soon"), Some(soon_not_after as f64));
    assert!(expiry("expired").unwrap() < now() as f64);
    assert_eq!(expiry("needs-sni"), None);
    for (t, reason) in [
        ("expired", "cert-expired"),
        ("wrong-name", "cert-wrong-name"),
        ("self-signed", "cert-unknown-issuer"),
        ("needs-sni", "tls-alert"),
    ] {
        let n = sample(
            &metrics,
            &format!("gwdoctor_probe_failures_total{{target=\"{t}\",reason=\"{reason}\"}}"),
        );
        assert!(n >= Some(2.0), "{t}: {reason}: {metrics}");
    }
    assert!(!metrics.contains("gwdoctor_probe_failures_total{target=\"valid\""));
    assert!(
        sample(
            &metrics,
            "gwdoctor_probe_duration_seconds_count{target=\"valid\",phase=\"tls\"}"
        ) >= Some(2.0),
        "{metrics}"
    );

    // The page: one certificate cell per target, coloured by urgency.
    let html = common::get_body(page, "/");
    let cell = |t: &str| {
        let row = html
            .split("<tr>")
            .find(|r| r.contains(&format!("<b>{t}</b>")))
            .unwrap_or_else(|| panic!("no row for {t}: {html}"));
        row.split("class=\"cert ")
            .nth(1)
            .and_then(|c| c.split('"').next())
            .unwrap_or_else(|| panic!("no certificate cell for {t}: {row}"))
            .to_string()
    };
    assert_eq!(cell("valid"), "ok");
    assert_eq!(cell("soon"), "warn");
    assert_eq!(cell("expired"), "bad");
    assert_eq!(cell("self-signed"), "bad");
    assert_eq!(cell("needs-sni"), "muted");
    assert!(
        html.contains("4 days left") || html.contains("5 days left"),
        "{html}"
    );
    assert!(html.contains("expired 1 day ago"), "{html}");
    screenshot(
        &format!("http://{page}/"),
        &std::env::temp_dir().join("gwdoctor-watch-tls-page.png"),
    );

    rt.block_on(watch.stop());
    drop(rt);
    bench.shutdown();
}
