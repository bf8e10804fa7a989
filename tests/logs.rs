//! `gwdoctor logs` over real-format fixtures of every log kind it reads, rotated and compressed
//! series, bad input, and the logs of a real nginx in the lab.

use assert_cmd::Command;
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};

const LAB_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time"#;

fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/logs/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn logs_json(args: &[&str]) -> (Value, i32) {
    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .arg("logs")
        .arg("--format")
        .arg("json")
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, out.status.code().unwrap())
}

fn count(v: &Value, cause: &str) -> u64 {
    v["causes"][cause].as_u64().unwrap_or(0)
}

#[test]
fn each_log_kind_is_detected_and_classified() {
    let cases: &[(&str, &str, &str)] = &[
        ("nginx-error.log", "nginx-error", "fpm-max-children"),
        ("php-fpm.log", "php-fpm", "fpm-max-children"),
        ("apache-error.log", "apache-error", "upstream-refused"),
        ("gunicorn.log", "gunicorn", "app-worker-timeout"),
        ("kern.log", "system", "oom-killed"),
    ];
    for (file, kind, cause) in cases {
        let (v, code) = logs_json(&[&fixture(file)]);
        assert_eq!(v["files"][0]["kind"], *kind, "{file}");
        assert!(
            count(&v, cause) >= 1,
            "{file}: {cause} not counted in {}",
            v["causes"]
        );
        assert_eq!(code, 1, "{file}: findings exit 1");
    }
}

#[test]
fn access_logs_give_statuses_upstreams_paths_and_hidden_retries() {
    let (v, _) = logs_json(&["--log-format", LAB_FORMAT, &fixture("access-upstream.log")]);
    assert_eq!(v["files"][0]["kind"], "access");
    assert_eq!(v["statuses"]["502"], 4);
    assert_eq!(v["statuses"]["009"], 1);
    assert_eq!(
        v["hidden_retries"], 1,
        "the \"502, 200\" request was retried successfully"
    );
    let ups = v["upstreams"].as_array().unwrap();
    let bad = ups
        .iter()
        .find(|u| u["address"] == "127.0.0.1:8002")
        .unwrap();
    assert_eq!(bad["attempts"], 5);
    assert_eq!(bad["errors"], 5);
    // One address carries the failures while the other answers: partial backend failure.
    let findings: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cause"].as_str().unwrap())
        .collect();
    assert!(
        findings.contains(&"partial-backend-failure"),
        "{findings:?}"
    );
    assert_eq!(v["top_paths_5xx"][0]["path"], "/checkout");
    // Secrets in URLs never reach the report.
    assert!(!v.to_string().contains("abc123"));
    let checks = v["checks"].to_string();
    assert!(checks.contains("HTTP/0.9"), "{checks}");
}

#[test]
fn combined_and_json_access_logs() {
    let (v, _) = logs_json(&[&fixture("access-combined.log")]);
    assert_eq!(v["files"][0]["format"], "combined");
    assert_eq!(v["statuses"]["502"], 2);
    // The +0200 zone is honoured: 14:02:09 +0200 is 12:02:09 UTC.
    assert_eq!(v["first_time"], "2024-05-02 12:02:01");
    let (j, _) = logs_json(&[&fixture("access.json")]);
    assert_eq!(j["files"][0]["kind"], "json-access");
    assert_eq!(j["statuses"]["502"], 1);
}

#[test]
fn the_event_before_the_errors_is_named() {
    // PHP-FPM reached max_children at 14:02:08; nginx's first failure came at 14:02:09.
    let (v, _) = logs_json(&[&fixture("nginx-error.log"), &fixture("php-fpm.log")]);
    let c = &v["correlation"];
    assert_eq!(c["cause"], "fpm-max-children", "{v:#}");
    assert_eq!(c["onset"], "2024-05-02 14:02:09");
    assert!(c["cause_line"]["location"]
        .as_str()
        .unwrap()
        .ends_with("php-fpm.log:3"));
    assert!(c["text"].as_str().unwrap().contains("1 s after"));
    // The WordPress plugin behind the PHP fatal error is named.
    let php = v["php"].as_array().unwrap();
    assert!(
        php.iter()
            .any(|p| p["culprit"] == "plugin cart-booster" && p["fatal"] == 1),
        "{php:?}"
    );
    // Text output carries the same story.
    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["logs", &fixture("nginx-error.log"), &fixture("php-fpm.log")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("The errors began at 2024-05-02 14:02:09, 1 s after"),
        "{text}"
    );
}

fn write_gz(path: &Path, text: &str) {
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(path).unwrap(),
        flate2::Compression::default(),
    );
    enc.write_all(text.as_bytes()).unwrap();
    enc.finish().unwrap();
}

#[test]
fn rotated_compressed_series_are_read_in_time_order() {
    let dir = tempfile::tempdir().unwrap();
    let line = |h: u32| {
        format!("2024/05/02 {h:02}:00:00 [error] 1#1: *1 connect() failed (111: Connection refused) while connecting to upstream, client: 10.0.0.1, server: x, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8000/\", host: \"x\"\n")
    };
    write_gz(&dir.path().join("error.log.2.gz"), &line(10));
    std::fs::write(dir.path().join("error.log.1"), line(11)).unwrap();
    let zst = zstd::encode_all(line(12).as_bytes(), 3).unwrap();
    std::fs::write(dir.path().join("error.log.3.zst"), zst).unwrap();
    std::fs::write(dir.path().join("error.log"), line(13)).unwrap();
    let (v, _) = logs_json(&[dir.path().to_str().unwrap()]);
    let files: Vec<String> = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            PathBuf::from(f["path"].as_str().unwrap())
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        files,
        [
            "error.log.3.zst",
            "error.log.2.gz",
            "error.log.1",
            "error.log"
        ]
    );
    assert_eq!(
        v["cause_details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["cause"] == "upstream-refused")
            .unwrap()["first_seen"],
        "2024-05-02 10:00:00"
    );
    assert_eq!(count(&v, "upstream-refused"), 4);
}

#[test]
fn bad_input_is_reported_never_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    // A truncated gzip stream: the lines before the cut count, the file gets a warning.
    let full = dir.path().join("full.gz");
    let text: String = (0..2000).map(|i| format!("2024/05/02 10:00:00 [error] 1#1: *{i} upstream prematurely closed connection while reading response header from upstream, client: 10.0.0.1, server: x, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:8000/\", host: \"x\"\n")).collect();
    write_gz(&full, &text);
    let bytes = std::fs::read(&full).unwrap();
    let cut = dir.path().join("error.log.gz");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let (v, code) = logs_json(&[cut.to_str().unwrap()]);
    assert!(v["files"][0]["warning"].as_str().is_some(), "{v}");
    assert_eq!(code, 1);
    // Binary junk and invalid UTF-8: counted as not understood.
    let junk = dir.path().join("junk.log");
    let data: Vec<u8> = (0..300_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8)
        .collect();
    std::fs::write(&junk, data).unwrap();
    let (v, code) = logs_json(&[junk.to_str().unwrap()]);
    assert!(v["unknown"]["count"].as_u64().unwrap() > 0);
    assert_eq!(code, 0);
    // A line of 3 MiB: read on its first MiB, counted.
    let long = dir.path().join("long.log");
    std::fs::write(
        &long,
        format!("{}\n{}", "y".repeat(3 << 20), text.lines().next().unwrap()),
    )
    .unwrap();
    let (v, _) = logs_json(&[long.to_str().unwrap()]);
    assert_eq!(v["long_lines"], 1);
    assert_eq!(v["lines"], 2);
    // A missing file: exit 2 naming it.
    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["logs", "/nonexistent/error.log"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/error.log"));
    // Bad --since.
    Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["logs", "--since", "someday", &fixture("php-fpm.log")])
        .assert()
        .code(2);
}

#[test]
fn since_and_until_select_a_window() {
    let (v, _) = logs_json(&[
        "--since",
        "2024-05-02 14:02:20",
        "--until",
        "2024-05-02 14:02:45",
        &fixture("nginx-error.log"),
    ]);
    assert_eq!(count(&v, "fpm-max-children"), 0);
    assert!(v["lines"].as_u64().unwrap() == 5);
}

#[test]
fn logs_of_a_real_nginx_name_the_lab_scenarios_cause() {
    use gwdoctor::lab::client::{send, LabRequest};
    use gwdoctor::lab::{runner, scenarios};
    let scenario = scenarios::find("refused").unwrap();
    if let Some(why) = runner::skip_reason(&scenario) {
        assert!(std::env::var_os("CI").is_none(), "{why}");
        return;
    }
    let started = runner::start(&scenario).unwrap();
    for _ in 0..3 {
        send(
            started.gateway,
            &LabRequest::get("/"),
            std::time::Duration::from_secs(5),
            None,
        );
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let error_log = started.nginx.error_log.display().to_string();
    let access_log = started.nginx.access_log.display().to_string();
    let (v, code) = logs_json(&[
        "--log-format",
        gwdoctor::lab::nginx::LAB_LOG_FORMAT,
        &error_log,
        &access_log,
    ]);
    let runner::Started { bench, nginx, .. } = started;
    nginx.stop();
    bench.shutdown();
    assert_eq!(code, 1);
    assert_eq!(count(&v, "upstream-refused"), 3, "{v:#}");
    assert_eq!(v["statuses"]["502"], 3);
    assert_eq!(v["findings"][0]["cause"], "upstream-refused");
}
