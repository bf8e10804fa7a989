//! `probe` against a real nginx started by the fault lab, and `gwdoctor probe` as a command
//! (exit statuses, text and JSON).

use assert_cmd::Command;
use gwdoctor::collect::probe::{probe_blocking, ProbeOptions, ProbeReport, ProbeTarget};
use gwdoctor::lab::runner::{self, Started};
use gwdoctor::lab::scenarios;
use gwdoctor::rules::probe::findings;
use std::time::Duration;

/// Starts a scenario, or says why it cannot run here (then the test passes without running).
fn start(name: &str) -> Option<Started> {
    let scenario = scenarios::find(name).expect("a scenario of the lab");
    if let Some(why) = runner::skip_reason(&scenario) {
        eprintln!("skipped: {why}");
        return None;
    }
    let mut started = runner::start(&scenario).expect("the scenario starts");
    assert!(
        started.nginx.is_running(),
        "nginx runs: {:?}",
        started.nginx.error_lines()
    );
    Some(started)
}

fn stop(started: Started) {
    started.nginx.stop();
    started.bench.shutdown();
}

fn probe(url: &str, options: ProbeOptions) -> ProbeReport {
    let options = ProbeOptions {
        timeout: Duration::from_secs(5),
        system_dns: false,
        ..options
    };
    probe_blocking(&ProbeTarget::parse(url).unwrap(), &options).unwrap()
}

/// `1.22.1` from `nginx -v`.
fn nginx_version() -> String {
    let out = std::process::Command::new("nginx")
        .arg("-v")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    text.trim()
        .rsplit('/')
        .next()
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// The `proxy_pass` target of a scenario's configuration.
fn proxy_pass(started: &Started) -> String {
    let re = regex::Regex::new(r"proxy_pass http://([0-9.]+:[0-9]+)").unwrap();
    re.captures(&started.plan.nginx.server).unwrap()[1].to_string()
}

#[test]
fn nginx_s_own_502_page_is_attributed_to_nginx_and_its_version() {
    let Some(started) = start("refused") else {
        return;
    };
    let url = started.url();
    let upstream = proxy_pass(&started);
    let report = probe(&url, ProbeOptions::default());
    let http = report.requests[0].hops[0].http.clone().expect("an answer");
    assert_eq!(http.status, 502);
    let fp = &http.fingerprint;
    let version = nginx_version();
    assert_eq!(fp.page.as_ref().unwrap().signature, "nginx-502-page");
    assert_eq!(fp.producer().unwrap().label(), format!("nginx/{version}"));
    assert_eq!(
        fp.front.as_ref().unwrap().label(),
        format!("nginx/{version}")
    );
    assert!(!fp.passed_through());
    let (f, _) = findings(&report);
    let refused = f
        .iter()
        .find(|f| f.cause == "upstream-refused")
        .expect("the page names upstream-refused");
    assert!(
        refused.confidence < 0.5,
        "a generic page only hints: {refused:#?}"
    );
    assert!(
        refused.evidence[0]
            .detail
            .contains(&format!("nginx/{version}")),
        "{refused:#?}"
    );

    // Probing nginx's upstream directly settles it.
    let report = probe(
        &url,
        ProbeOptions {
            upstream: Some(upstream.clone()),
            ..ProbeOptions::default()
        },
    );
    let (f, _) = findings(&report);
    assert_eq!(f[0].cause, "upstream-refused", "{f:#?}");
    assert!(f[0].confidence >= 0.85);
    // The page's hint and the direct probe's proof are pooled in one finding.
    assert!(
        f[0].evidence
            .iter()
            .any(|e| e.location.contains(&upstream) && e.detail.contains("refused")),
        "{f:#?}"
    );
    stop(started);
}

#[test]
fn an_upstream_s_page_relayed_by_nginx_is_a_passthrough() {
    let Some(started) = start("passthrough-502") else {
        return;
    };
    let report = probe(&started.url(), ProbeOptions::default());
    let (f, _) = findings(&report);
    assert_eq!(f[0].cause, "upstream-5xx-passthrough", "{f:#?}");
    let fp = &report.requests[0].hops[0]
        .http
        .as_ref()
        .unwrap()
        .fingerprint;
    assert_eq!(fp.page.as_ref().unwrap().product, "haproxy");
    assert_eq!(fp.front.as_ref().unwrap().product, "nginx");
    stop(started);
}

fn gwdoctor() -> Command {
    let mut cmd = Command::cargo_bin("gwdoctor").unwrap();
    // The probe honours the proxy variables: none here.
    for var in [
        "http_proxy",
        "HTTP_PROXY",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("LANG", "C").timeout(Duration::from_secs(60));
    cmd
}

#[test]
fn the_command_exits_0_when_healthy_and_draws_the_waterfall() {
    let Some(started) = start("healthy") else {
        return;
    };
    let out = gwdoctor()
        .args(["probe", &started.url(), "--count", "3"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for phase in [
        "connect  │",
        "wait     │",
        "transfer │",
        "p50",
        "No problem found.",
    ] {
        assert!(text.contains(phase), "{phase:?} missing in:\n{text}");
    }
    let out = gwdoctor()
        .args(["probe", &started.url(), "--format", "json", "--lang", "zh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], true);
    assert_eq!(json["findings"].as_array().unwrap().len(), 0);
    assert!(
        json["checks"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["status"] == "pass"),
        "{json:#}"
    );
    assert_eq!(
        json["probe"]["requests"][0]["hops"][0]["http"]["status"],
        200
    );
    stop(started);
}

#[test]
fn the_command_exits_1_with_findings_in_both_languages() {
    let Some(started) = start("refused") else {
        return;
    };
    let out = gwdoctor()
        .args(["probe", &started.url(), "--format", "json", "--lang", "zh"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], false);
    let titles: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["title"].as_str())
        .collect();
    assert!(
        titles
            .iter()
            .any(|t| t.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c))),
        "{titles:?}"
    );
    let out = gwdoctor().args(["probe", &started.url()]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("upstream-refused") && text.contains("nginx/"),
        "{text}"
    );
    stop(started);
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let cases: &[&[&str]] = &[
        &["probe", "ftp://example.test/"],
        &["probe", "http://"],
        &[
            "probe",
            "http://127.0.0.1:1/",
            "--ca-file",
            "/nonexistent/ca.pem",
        ],
        &["probe", "http://127.0.0.1:1/", "--resolve", "nonsense"],
        &["probe", "http://127.0.0.1:1/", "--timeout", "soon"],
        &["probe", "http://127.0.0.1:1/", "--format", "html"],
    ];
    for args in cases {
        let out = gwdoctor().args(*args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.trim().is_empty(), "{args:?}");
    }
    let out = gwdoctor()
        .args([
            "probe",
            "http://127.0.0.1:1/",
            "--ca-file",
            "/nonexistent/ca.pem",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ca.pem"));
    // A CA file that is not PEM names the file too.
    let junk = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(junk.path(), b"\x00\x01 not a certificate").unwrap();
    let out = gwdoctor()
        .args([
            "probe",
            "http://127.0.0.1:1/",
            "--ca-file",
            junk.path().to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains(junk.path().to_str().unwrap()));
}

#[test]
fn secrets_in_the_url_never_reach_the_output() {
    let out = gwdoctor()
        .args([
            "probe",
            "http://admin:hunter2@127.0.0.1:1/?token=abc123",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2") && !text.contains("abc123"),
        "{text}"
    );
    let out = gwdoctor()
        .args(["probe", "http://admin:hunter2@127.0.0.1:1/?token=abc123"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("hunter2") && !text.contains("abc123"),
        "{text}"
    );
}

#[test]
fn the_command_verifies_with_a_ca_file_and_keeps_reporting_under_insecure() {
    use gwdoctor::lab::bench::{Bench, APP_NAME};
    use gwdoctor::lab::tls::CertKind;
    use gwdoctor::lab::upstream::Behaviour;
    let mut bench = Bench::new().unwrap();
    let addr = bench
        .upstream_tls(
            Some(CertKind::Valid {
                name: APP_NAME.to_string(),
            }),
            Behaviour::Ok,
        )
        .unwrap();
    let ca = bench.ca_file().unwrap();
    let url = format!("https://{APP_NAME}:{}/", addr.port());
    let resolve = format!("{APP_NAME}:{}:{}", addr.port(), addr.ip());
    let ca = ca.to_str().unwrap();

    let out = gwdoctor()
        .args(["probe", &url, "--resolve", &resolve, "--ca-file", ca])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.contains("TLS 1.3") && text.contains("verified") && text.contains("tls      │"),
        "{text}"
    );

    let out = gwdoctor()
        .args(["probe", &url, "--resolve", &resolve])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("site-cert-invalid") && text.contains("cert-unknown-issuer"),
        "{text}"
    );

    let out = gwdoctor()
        .args(["probe", &url, "--resolve", &resolve, "--insecure"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("200 OK") && text.contains("site-cert-invalid"),
        "{text}"
    );
}
