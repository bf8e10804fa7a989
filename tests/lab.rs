//! Every lab scenario reproduces its failure for real: a real nginx in front of a misbehaving
//! upstream (PHP-FPM, gunicorn, uWSGI where the failure is theirs) gives the expected status to
//! the client and the expected signature in the logs, and leaves no process, port or file behind.
//!
//! A scenario whose needs this machine lacks (no root for namespaces, no php-fpm) says so and is
//! skipped; `.ci/run` installs everything, so CI runs them all.

mod common;

use gwdoctor::lab::runner::{self, RunReport};
use gwdoctor::lab::scenarios;
use std::net::TcpStream;
use std::time::Duration;

fn check(name: &str) {
    let scenario = scenarios::find(name).unwrap_or_else(|| panic!("no scenario {name}"));
    if let Some(why) = runner::skip_reason(&scenario) {
        eprintln!("skipped {name}: {why}");
        if std::env::var_os("CI").is_some() {
            panic!("{name} cannot run in CI: {why}");
        }
        return;
    }
    let report = runner::run(&scenario).unwrap_or_else(|e| panic!("{name}: {e:#}"));
    assert!(
        report.passed(),
        "{name} did not reproduce {}:\n{}",
        scenario.cause,
        describe(&report)
    );
    assert_cleaned_up(&report);
}

fn describe(report: &RunReport) -> String {
    let mut out = String::new();
    for e in &report.exchanges {
        out.push_str(&format!("  {} → {}\n", e.request, e.outcome.label()));
    }
    for l in &report.log_lines {
        out.push_str(&format!(
            "  {}:{}: {} {:?}\n",
            l.file.display(),
            l.number,
            l.text,
            l.causes
        ));
    }
    for p in &report.problems {
        out.push_str(&format!("  ! {p}\n"));
    }
    out
}

fn assert_cleaned_up(report: &RunReport) {
    // SAFETY: kill(pid, 0) only asks whether the process exists.
    let alive = unsafe { libc::kill(report.nginx_pid as libc::pid_t, 0) } == 0;
    assert!(
        !alive,
        "{}: nginx (pid {}) is still running",
        report.scenario, report.nginx_pid
    );
    // A gateway inside a namespace is gone with the namespace; one on the host must be closed.
    if matches!(report.gateway.ip(), std::net::IpAddr::V4(ip) if ip.octets()[1] == 77) {
        assert!(
            TcpStream::connect_timeout(&report.gateway, Duration::from_millis(500)).is_err(),
            "{}: {} still accepts connections",
            report.scenario,
            report.gateway
        );
    }
    assert!(
        !report.dir.exists(),
        "{}: {} was left behind",
        report.scenario,
        report.dir.display()
    );
}

macro_rules! scenario_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $( #[test] fn $test() { check($name); } )*

        #[test]
        fn every_scenario_has_a_test_and_there_are_at_least_25() {
            let tested = [$($name),*];
            let all: Vec<&str> = scenarios::all().iter().map(|s| s.name).collect();
            for name in &all {
                assert!(tested.contains(name), "scenario {name} has no test");
            }
            assert!(all.len() >= 25, "only {} scenarios", all.len());
        }
    };
}

with_scenarios!(scenario_tests);

#[test]
fn lab_list_and_run_work_from_the_command_line() {
    use assert_cmd::Command;
    let list = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["lab", "list", "--format", "json"])
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert!(v["scenarios"].as_array().unwrap().len() >= 25);
    assert!(v["not_reproducible"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["cause"] == "selinux-denied"));
    Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["lab", "run", "no-such-scenario"])
        .assert()
        .code(2);
    if runner::skip_reason(&scenarios::find("refused").unwrap()).is_none() {
        let out = Command::cargo_bin("gwdoctor")
            .unwrap()
            .args(["lab", "run", "refused"])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{text}");
        assert!(
            text.contains("→ 502") && text.contains("(111: Connection refused)"),
            "{text}"
        );
    }
}
