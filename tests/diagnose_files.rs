//! `diagnose` on recorded evidence (a configuration and logs in files, `--no-host`: nothing on
//! this machine is looked at, nothing is dialled), and the README's first command.

mod common;

use assert_cmd::Command;
use gwdoctor::diagnose::{diagnose, DiagnoseOptions};
use std::path::Path;
use std::time::Duration;

const FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time"#;

/// A gateway with `proxy_read_timeout 2s` in front of a report service that usually needs
/// 1.6–1.9 s: the slow tail of its answers crosses the timeout.
fn write_site(dir: &Path) {
    std::fs::write(
        dir.join("nginx.conf"),
        format!(
            "events {{}}\nhttp {{\n    log_format timed '{FORMAT}';\n    access_log {dir}/access.log timed;\n    error_log {dir}/error.log;\n    server {{\n        listen 80;\n        location /report {{\n            proxy_pass http://127.0.0.1:8000;\n            proxy_read_timeout 2s;\n        }}\n    }}\n}}\n",
            dir = dir.display()
        ),
    )
    .unwrap();
    let mut access = String::new();
    let mut errors = String::new();
    for (i, (status, seconds)) in [
        (200, "1.712"),
        (200, "1.804"),
        (200, "0.950"),
        (504, "2.001"),
        (200, "1.873"),
        (504, "2.002"),
    ]
    .iter()
    .enumerate()
    {
        access.push_str(&format!(
            "203.0.113.7 - - [20/Nov/2026:14:0{i}:00 +0000] \"GET /report HTTP/1.1\" {status} 512 \"-\" \"curl/8.5\" upstream_addr=\"127.0.0.1:8000\" upstream_status=\"{status}\" upstream_response_time=\"{seconds}\" request_time={seconds}\n"
        ));
        if *status == 504 {
            errors.push_str(&format!(
                "2026/11/20 14:0{i}:02 [error] 815#815: *10{i} upstream timed out (110: Connection timed out) while reading response header from upstream, client: 203.0.113.7, server: report.example.com, request: \"GET /report HTTP/1.1\", upstream: \"http://127.0.0.1:8000/report\", host: \"report.example.com\"\n"
            ));
        }
    }
    std::fs::write(dir.join("access.log"), access).unwrap();
    std::fs::write(dir.join("error.log"), errors).unwrap();
}

/// Diagnose options for the site `write_site` wrote, as recorded evidence (`--no-host`), with
/// or without its logs named.
fn recorded_site(dir: &Path, with_logs: bool) -> DiagnoseOptions {
    let logs = |name: &str| {
        if with_logs {
            vec![dir.join(name)]
        } else {
            Vec::new()
        }
    };
    DiagnoseOptions {
        nginx_configs: vec![dir.join("nginx.conf")],
        error_logs: logs("error.log"),
        access_logs: logs("access.log"),
        budget: Duration::from_secs(10),
        no_host: true,
        ..Default::default()
    }
}

#[test]
fn answers_close_to_the_configured_timeout_mean_it_is_too_short() {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path());
    let d = diagnose(&recorded_site(dir.path(), true)).unwrap();
    let found: Vec<String> = d
        .findings
        .iter()
        .map(|f| format!("{} {:.2}", f.cause, f.confidence))
        .collect();
    let first = &d.findings[0];
    assert_eq!(first.cause, "proxy-timeout-too-short", "{found:?}");
    // The configured timeout, with its file and line, beside what the access log shows.
    common::assert_evidence(first, |e| {
        e.source == "config"
            && e.location.ends_with("nginx.conf:10")
            && e.detail.contains("proxy_read_timeout 2s")
    });
    common::assert_evidence(first, |e| {
        e.source == "access-log" && e.detail.starts_with("3 of 6 attempts")
    });
    // --no-host: nothing was dialled, and the walk says why.
    common::assert_check(&d, |c| {
        c.name == "live checks" && c.detail.contains("--no-host")
    });
    common::assert_check(&d, |c| {
        c.name == "timed request" && c.detail.contains("--no-host")
    });
}

#[test]
fn a_configuration_from_elsewhere_does_not_read_this_hosts_logs() {
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path());
    let d = diagnose(&recorded_site(dir.path(), false)).unwrap();
    assert!(d.logs.is_none());
    assert!(d
        .checks
        .iter()
        .any(|c| c.name == "logs" && c.detail.contains("--error-log")));
}

#[test]
fn a_named_configuration_that_cannot_be_read_is_a_usage_error() {
    Command::cargo_bin("gwdoctor")
        .unwrap()
        .args([
            "diagnose",
            "--no-host",
            "--nginx-config",
            "/nonexistent/nginx.conf",
        ])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("/nonexistent/nginx.conf"));
}

/// The README's first command: the recorded incident, its cause first, exit 1.
#[test]
fn the_readme_incident() {
    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args([
            "diagnose",
            "--no-host",
            "--nginx-config",
            "examples/incident/nginx.conf",
            "--error-log",
            "examples/incident/error.log",
            "--access-log",
            "examples/incident/access.log",
            "--log",
            "examples/incident/php-fpm.log",
            "--format",
            "json",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let json: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(findings[0]["cause"], "no-live-upstreams", "{json:#}");
    // Underneath: the failures of node_app's own servers, not PHP-FPM's.
    let underneath = findings[0]["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["location"] == "underneath")
        .unwrap()["detail"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        underneath.contains("upstream-refused") && underneath.contains("127.0.0.1:3000"),
        "{underneath}"
    );
    assert!(!underneath.contains("fpm"), "{underneath}");
    // The configuration was read, statically: the keepalive the /api/ location cannot use.
    assert!(
        findings.iter().any(|f| f["cause"] == "keepalive-race"
            && f["evidence"][0]["location"]
                .as_str()
                .unwrap()
                .ends_with("nginx.conf:18")),
        "{json:#}"
    );
}

#[test]
fn each_step_is_reported_as_it_starts_and_ends() {
    use gwdoctor::diagnose::{diagnose_with_progress, StepEvent};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    write_site(dir.path());
    let events: Arc<Mutex<Vec<StepEvent>>> = Arc::default();
    let sink = events.clone();
    diagnose_with_progress(
        &recorded_site(dir.path(), true),
        Arc::new(move |e| sink.lock().unwrap().push(e)),
    )
    .unwrap();
    let events = events.lock().unwrap();
    for step in ["config", "logs"] {
        let started = events
            .iter()
            .position(|e| matches!(e, StepEvent::Started { step: s, .. } if *s == step));
        let finished = events
            .iter()
            .position(|e| matches!(e, StepEvent::Finished { step: s, .. } if *s == step));
        assert!(
            matches!((started, finished), (Some(a), Some(b)) if a < b),
            "{step}: {events:#?}"
        );
    }
    // --no-host: neither the host nor the live checks ran.
    assert!(!events.iter().any(|e| matches!(
        e,
        StepEvent::Started {
            step: "host" | "live",
            ..
        }
    )));
}
