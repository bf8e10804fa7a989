//! The files of `contrib/` that Prometheus and Grafana load: every `gwdoctor_…` series they name
//! is one watch exposes (a renamed metric must not silently empty a rule or a panel), the
//! dashboard is valid JSON, and, when promtool is installed (Debian's `prometheus` package),
//! the rules pass `promtool check rules` and their unit tests
//! (`contrib/prometheus-rules.test.yml`).

use gwdoctor::watch::metrics::{Metrics, Source};
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;

fn contrib(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("contrib")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The `gwdoctor_…` names in `text`, without the suffixes a sample adds to its family's name.
fn series_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find("gwdoctor_") {
        // Part of a longer identifier (a recording rule `instance:gwdoctor_…`) is not a series.
        let before = rest[..i].chars().next_back();
        let name: String = rest[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        rest = &rest[i + name.len()..];
        if before.is_some_and(|c| c == ':' || c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let family = ["_total", "_bucket", "_count", "_sum"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(&name)
            .to_string();
        names.insert(family);
    }
    names
}

#[test]
fn rules_and_dashboard_name_only_exposed_series() {
    // A family is exposed once it has a series: give each one.
    let m = Metrics::new();
    m.probe_phase("t", "total", 0.01);
    m.response(Source::Probe, "t", 200);
    m.probe_failure("t", "refused");
    m.target_up("t", true);
    m.cert_expiry("t", 1_800_000_000);
    m.upstream_error("upstream-refused", "127.0.0.1:9000");
    m.log_lines("/l", 1);
    m.log_rotation("/l", "rename", 1);
    m.error_ratio(0.0);
    m.diagnosis(&[("upstream-refused".into(), 0.9)]);
    m.alert_firing(false);
    m.webhook("ok");
    let exposed: BTreeSet<String> = m
        .encode()
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect();
    assert!(exposed.contains("gwdoctor_cert_expiry_timestamp_seconds"));
    let dashboard: serde_json::Value =
        serde_json::from_str(&contrib("grafana-dashboard.json")).expect("dashboard is JSON");
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_string))
        .collect();
    assert!(
        exprs
            .iter()
            .any(|e| e.contains("gwdoctor_cert_expiry_timestamp_seconds")),
        "no certificate panel"
    );
    for (file, text) in [
        ("prometheus-rules.yml", contrib("prometheus-rules.yml")),
        ("grafana-dashboard.json", exprs.join("\n")),
    ] {
        let named = series_names(&text);
        assert!(!named.is_empty(), "{file}");
        let unknown: Vec<_> = named.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} names series watch does not expose: {unknown:?}"
        );
    }
}

#[test]
fn promtool_checks_and_unit_tests_the_rules() {
    let Ok(version) = Command::new("promtool").arg("--version").output() else {
        eprintln!("skipping: promtool is not installed (Debian package prometheus)");
        return;
    };
    assert!(version.status.success());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib");
    for args in [
        ["check", "rules", "prometheus-rules.yml"],
        ["test", "rules", "prometheus-rules.test.yml"],
    ] {
        let out = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "promtool {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
