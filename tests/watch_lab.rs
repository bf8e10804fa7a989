//! `watch` against a real nginx in front of a lab upstream: healthy, then broken (the upstream
//! stopped: nginx answers 502 and logs `connect() failed (111: Connection refused)`), then
//! healed (a new upstream on the same port). A webhook receiver in the test asserts one alert
//! (with the diagnosis) and one resolve in each of the three shapes; `/metrics` is parsed for the
//! expected series; the status page is loaded in headless Chromium when it is installed.

mod common;

use gwdoctor::i18n::Lang;
use gwdoctor::lab::bench::Bench;
use gwdoctor::lab::nginx::{Nginx, NginxParts, LAB_LOG_FORMAT};
use gwdoctor::lab::upstream::{self, Behaviour, Bind};
use gwdoctor::watch::config::{AlertRules, Target, WatchConfig, Webhook, WebhookFormat};
use gwdoctor::watch::Watch;
use std::collections::BTreeMap;
use std::io::Read;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A webhook receiver: every POST's path and JSON body go to the channel. The very first POST is
/// answered 503, so the sender's retry is exercised; every later one 200.
async fn receiver() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<(String, serde_json::Value)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut first = true;
        // Bounded: the test ends long before this many posts.
        for _ in 0..200 {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
            let request = loop {
                let n = match tokio::time::timeout_at(deadline, sock.read(&mut chunk)).await {
                    Ok(Ok(n)) if n > 0 => n,
                    _ => break None,
                };
                buf.extend_from_slice(&chunk[..n]);
                let mut headers = [httparse::EMPTY_HEADER; 32];
                let mut req = httparse::Request::new(&mut headers);
                if let Ok(httparse::Status::Complete(head)) = req.parse(&buf) {
                    let len = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .and_then(|h| std::str::from_utf8(h.value).ok()?.parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() >= head + len {
                        let path = req.path.unwrap_or("").to_string();
                        break Some((path, buf[head..head + len].to_vec()));
                    }
                }
            };
            let Some((path, body)) = request else {
                continue;
            };
            let status = if first {
                "503 Service Unavailable"
            } else {
                "200 OK"
            };
            let _ = sock
                .write_all(
                    format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .as_bytes(),
                )
                .await;
            if !first {
                let json = serde_json::from_slice(&body).expect("webhook body is JSON");
                let _ = tx.send((path, json));
            }
            first = false;
        }
    });
    (addr, rx)
}

/// Waits (at most `limit`) for the webhook messages of all three shapes with `status`.
async fn await_status(
    rx: &mut mpsc::UnboundedReceiver<(String, serde_json::Value)>,
    seen: &mut Vec<(String, serde_json::Value)>,
    status: &str,
    limit: Duration,
) -> BTreeMap<String, serde_json::Value> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut got = BTreeMap::new();
    while got.len() < 3 {
        let Ok(Some((path, body))) = tokio::time::timeout_at(deadline, rx.recv()).await else {
            panic!("no {status} webhooks within {limit:?}; got {got:?}; earlier {seen:?}");
        };
        seen.push((path.clone(), body.clone()));
        let is_status = match path.as_str() {
            "/json" => body["status"] == status,
            "/slack" => {
                let text = body["text"].as_str().unwrap_or("");
                if status == "firing" {
                    text.contains("gateway errors")
                } else {
                    text.contains("resolved")
                }
            }
            "/am" => (status == "resolved") == body[0].get("endsAt").is_some(),
            other => panic!("unexpected webhook path {other}"),
        };
        if is_status {
            got.insert(path, body);
        }
    }
    got
}

/// The samples of a text exposition: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

fn sample_matching(samples: &BTreeMap<String, f64>, name: &str, parts: &[&str]) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && parts.iter().all(|p| k.contains(p)))
        .map(|(_, v)| *v)
        .sum()
}

/// Runs a program with a deadline; kills it by pid when the deadline passes.
fn run_bounded(mut cmd: std::process::Command, limit: Duration) -> std::process::Output {
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    let mut child = cmd.spawn().expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut out = Vec::new();
        let _ = (&mut stdout).take(16 << 20).read_to_end(&mut out);
        out
    });
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if began.elapsed() > limit {
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    std::process::Output {
        status,
        stdout: reader.join().unwrap(),
        stderr: Vec::new(),
    }
}

/// What a person sees: the DOM after the page loaded, and a screenshot at `png`.
fn chromium(url: &str, png: &Path) -> Option<String> {
    let chromium = Path::new("/usr/bin/chromium");
    if !chromium.exists() {
        eprintln!("skipping the browser check: /usr/bin/chromium is not installed");
        return None;
    }
    let profile = tempfile::tempdir().unwrap();
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,900",
    ];
    let mut shot = std::process::Command::new(chromium);
    shot.args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg(url);
    let out = run_bounded(shot, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "chromium --screenshot failed: {:?}",
        out.status
    );
    assert!(png.exists(), "no screenshot written");
    let mut dom = std::process::Command::new(chromium);
    dom.args(common)
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url);
    let out = run_bounded(dom, Duration::from_secs(60));
    assert!(
        out.status.success(),
        "chromium --dump-dom failed: {:?}",
        out.status
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn healthy_broken_healed_alerts_and_resolves() {
    if !gwdoctor::lab::process::have_program(gwdoctor::lab::nginx::NGINX) {
        eprintln!("skipping: nginx is not installed");
        return;
    }
    let bench = Bench::new().unwrap();
    let ip = bench.ip;
    let port = bench.free_port(ip).unwrap();
    let up_addr = SocketAddr::from((ip, port));
    let handle = bench.runtime().handle().clone();
    let up = upstream::start(&handle, Bind::Tcp(up_addr), Behaviour::Ok, None, 0).unwrap();
    let parts = NginxParts {
        server: format!("    location / {{ proxy_pass http://{up_addr}; }}\n"),
        ..Default::default()
    };
    let mut nginx = Nginx::start(
        &bench.dir().join("nginx"),
        SocketAddr::from((ip, 8080)),
        &parts,
        None,
    )
    .unwrap();
    assert!(nginx.is_running(), "nginx: {:?}", nginx.error_lines());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (hook, mut rx) = rt.block_on(receiver());
    let config = WatchConfig {
        targets: vec![Target::new(
            &format!("http://{ip}:8080/"),
            Some("shop".into()),
            Duration::from_secs(3),
        )
        .unwrap()],
        error_logs: vec![nginx.error_log.clone()],
        access_logs: vec![nginx.access_log.clone()],
        log_format: Some(LAB_LOG_FORMAT.to_string()),
        interval: Duration::from_millis(200),
        listen: "127.0.0.1:0".parse().unwrap(),
        alert: AlertRules {
            window: Duration::from_secs(4),
            error_rate: 0.5,
            min_requests: 3,
            failed_probes: 3,
            diagnose_budget: Duration::from_secs(10),
        },
        webhooks: ["json", "slack", "am"]
            .iter()
            .zip([
                WebhookFormat::Json,
                WebhookFormat::Slack,
                WebhookFormat::Alertmanager,
            ])
            .map(|(path, format)| Webhook {
                url: format!("http://{hook}/{path}"),
                format,
            })
            .collect(),
        tail_every: Duration::from_millis(100),
        ca_files: Vec::new(),
    };
    let watch = rt.block_on(Watch::start(config, Lang::En)).unwrap();
    let page = watch.addr;

    // Healthy: the target comes up and no alert is sent.
    let began = Instant::now();
    loop {
        let status: serde_json::Value =
            serde_json::from_str(&common::get_body(page, "/api/status")).unwrap();
        if status["targets"][0]["up"] == true && status["responses_in_window"].as_u64() >= Some(3) {
            assert!(status["firing"].is_null(), "{status}");
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(15),
            "never healthy: {status}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // Broken: nothing listens behind nginx any more.
    up.stop();
    let mut seen = Vec::new();
    let fired = rt.block_on(await_status(
        &mut rx,
        &mut seen,
        "firing",
        Duration::from_secs(40),
    ));
    let json = &fired["/json"];
    let causes: Vec<&str> = json["diagnosis"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["cause"].as_str())
        .collect();
    assert!(causes.contains(&"upstream-refused"), "{json:#}");
    let refused = json["diagnosis"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["cause"] == "upstream-refused")
        .unwrap();
    let evidence = refused["evidence"].as_array().unwrap();
    assert!(!evidence.is_empty(), "{json:#}");
    assert!(
        evidence.iter().any(|e| e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("Connection refused")
            || e["location"].as_str().unwrap_or("").contains("error.log")),
        "{json:#}"
    );
    assert!(json["reasons"].as_array().unwrap().iter().any(|r| {
        let r = r.as_str().unwrap();
        r.contains("5xx rate") || r.contains("probes failed in a row")
    }));
    assert!(fired["/slack"]["text"]
        .as_str()
        .unwrap()
        .contains("upstream-refused"));
    assert_eq!(fired["/am"][0]["labels"]["alertname"], "GatewayErrors");
    assert_eq!(
        fired["/am"][0]["annotations"]["cause"],
        json["diagnosis"]["causes"][0]["cause"]
    );
    let id = json["id"].as_str().unwrap().to_string();

    // While broken: the metrics carry the failure, by status, reason, cause and upstream.
    let metrics = samples(&common::get_body(page, "/metrics"));
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_responses_total",
            &["target=\"shop\"", "status=\"502\""]
        ) >= 1.0,
        "{metrics:#?}"
    );
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_responses_total",
            &["access.log", "status=\"502\""]
        ) >= 1.0
    );
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_probe_failures_total",
            &["target=\"shop\"", "reason=\"http-5xx\""]
        ) >= 3.0
    );
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_upstream_errors_total",
            &["cause=\"upstream-refused\"", &up_addr.to_string()]
        ) >= 1.0,
        "{metrics:#?}"
    );
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_probe_duration_seconds_count",
            &["phase=\"connect\""]
        ) >= 1.0
    );
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_last_diagnosis",
            &["cause=\"upstream-refused\""]
        ) > 0.0
    );
    assert_eq!(metrics.get("gwdoctor_alert_firing"), Some(&1.0));
    assert_eq!(
        metrics.get("gwdoctor_target_up{target=\"shop\"}"),
        Some(&0.0)
    );

    // What a person sees on the page while it is broken.
    let png = std::env::temp_dir().join("gwdoctor-watch-page.png");
    if let Some(dom) = chromium(&format!("http://{page}/"), &png) {
        assert!(dom.contains("ALERT firing since"), "{dom}");
        assert!(dom.contains(">DOWN<"), "{dom}");
        assert!(dom.contains("<svg id=\"chart-5xx\""), "{dom}");
        assert!(
            dom.contains("class=\"err\""),
            "no 5xx bar in the chart: {dom}"
        );
        assert!(dom.contains("<code>upstream-refused</code>"), "{dom}");
        assert!(dom.contains("FIRING"), "{dom}");
        eprintln!("screenshot: {}", png.display());
    }

    // Healed: a new upstream on the same port.
    let up = upstream::start(&handle, Bind::Tcp(up_addr), Behaviour::Ok, None, 0).unwrap();
    let resolved = rt.block_on(await_status(
        &mut rx,
        &mut seen,
        "resolved",
        Duration::from_secs(40),
    ));
    assert_eq!(resolved["/json"]["id"], id.as_str());
    assert!(resolved["/json"]["ended"].as_i64() >= resolved["/json"]["started"].as_i64());
    assert!(resolved["/am"][0]["endsAt"].is_string());
    // Deduplicated: one firing message per shape for the whole episode.
    let firing_json = seen
        .iter()
        .filter(|(p, b)| p == "/json" && b["status"] == "firing")
        .count();
    assert_eq!(firing_json, 1, "{seen:#?}");
    // The sender counts a delivery after the receiver's answer: give it a moment.
    let began = Instant::now();
    let metrics = loop {
        let metrics = samples(&common::get_body(page, "/metrics"));
        let ok = sample_matching(
            &metrics,
            "gwdoctor_webhook_deliveries_total",
            &["result=\"ok\""],
        );
        if ok >= 6.0 || began.elapsed() > Duration::from_secs(10) {
            break metrics;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(metrics.get("gwdoctor_alert_firing"), Some(&0.0));
    assert_eq!(
        metrics.get("gwdoctor_target_up{target=\"shop\"}"),
        Some(&1.0)
    );
    // The refused first POST was retried: every message delivered.
    assert!(
        sample_matching(
            &metrics,
            "gwdoctor_webhook_deliveries_total",
            &["result=\"ok\""]
        ) >= 6.0
    );

    rt.block_on(watch.stop());
    drop(rt);
    up.stop();
    nginx.stop();
    bench.shutdown();
}
