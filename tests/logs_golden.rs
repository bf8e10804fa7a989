//! Golden tests of `gwdoctor logs`: the JSON report of every real-format fixture in
//! tests/fixtures/logs is compared with tests/fixtures/logs/golden/NAME.json, so any change in
//! what the scanner counts (causes, first and last times, upstreams, examples with file:line,
//! statuses, percentiles, PHP culprits, lines not understood) shows as a diff.
//!
//! When a change is intended, rewrite the goldens with `GWDOCTOR_BLESS=1 cargo test --release
//! --test logs_golden` and review `git diff tests/fixtures/logs/golden`.
//!
//! Not here: the kernel log (syslog lines carry no year, so its report depends on the year the
//! test runs in; tests/logs.rs checks it), and the catalog's texts of each finding (tests of the
//! catalog check those): findings are compared by cause, confidence and evidence.

use assert_cmd::Command;
use serde_json::Value;
use std::path::PathBuf;

const LAB_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time"#;

/// Each fixture and the extra arguments it is read with.
const CASES: &[(&str, &[&str])] = &[
    ("nginx-error.log", &[]),
    ("access-combined.log", &[]),
    ("access-upstream.log", &["--log-format", LAB_FORMAT]),
    ("access.json", &[]),
    ("apache-error.log", &[]),
    ("php-fpm.log", &[]),
    ("gunicorn.log", &[]),
    ("uwsgi.log", &[]),
];

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/logs")
}

/// The report without what differs between runs and machines: timings, the checkout's path,
/// the catalog's prose.
fn normalise(mut report: Value) -> Value {
    let Some(map) = report.as_object_mut() else {
        return report;
    };
    map.remove("elapsed_ms");
    if let Some(findings) = map.get_mut("findings").and_then(Value::as_array_mut) {
        for f in findings {
            if let Some(f) = f.as_object_mut() {
                f.retain(|k, _| matches!(k.as_str(), "cause" | "confidence" | "evidence"));
            }
        }
    }
    let dir = fixtures().display().to_string();
    let text = serde_json::to_string(&report)
        .unwrap()
        .replace(&dir, "<fixtures>");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn every_fixture_matches_its_golden_report() {
    let bless = std::env::var_os("GWDOCTOR_BLESS").is_some();
    let mut mismatches = Vec::new();
    for (name, args) in CASES {
        let path = fixtures().join(name);
        let out = Command::cargo_bin("gwdoctor")
            .unwrap()
            .args(["logs", "--format", "json"])
            .args(*args)
            .arg(&path)
            .output()
            .unwrap();
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{name}: {e}: {}", String::from_utf8_lossy(&out.stderr)));
        let got = normalise(report);
        let golden = fixtures().join("golden").join(format!("{name}.json"));
        if bless {
            std::fs::write(&golden, serde_json::to_string_pretty(&got).unwrap() + "\n").unwrap();
            continue;
        }
        let want: Value = std::fs::read_to_string(&golden)
            .map_err(|e| format!("{}: {e} (GWDOCTOR_BLESS=1 writes it)", golden.display()))
            .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
            .unwrap();
        if got != want {
            mismatches.push(format!(
                "{name}: the report differs from {}; got:\n{}",
                golden.display(),
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n\n"));
}
