//! `diagnose`'s correlations that need the gateway's configuration and the live checks, each on
//! a real nginx of the lab in front of real upstreams (or on files, where nothing is dialled):
//!
//! - "no live upstreams" names underneath only the failures of that group's own servers;
//! - a failure the logs show but the live checks disprove now is ranked down and says so;
//! - a cause both the configuration and the logs show is one finding with both evidences;
//! - without named logs, the logs the configuration names are read;
//! - upstream_response_time close to the configured timeout → proxy-timeout-too-short.

mod common;

use gwdoctor::diagnose::{diagnose, DiagnoseOptions, Diagnosis};
use gwdoctor::findings::Status;
use gwdoctor::lab::bench::Bench;
use gwdoctor::lab::client::LabRequest;
use gwdoctor::lab::nginx::NginxParts;
use gwdoctor::lab::runner::{self, Started};
use gwdoctor::lab::scenario::{Expect, Plan, Scenario, Step};
use gwdoctor::lab::scenarios;
use gwdoctor::lab::upstream::Behaviour;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

/// Starts a scenario and sends its requests; `None` (with a note) when this machine cannot run
/// it (never in CI).
fn start(scenario: &Scenario) -> Option<Started> {
    if let Some(why) = runner::skip_reason(scenario) {
        assert!(
            std::env::var_os("CI").is_none(),
            "{} cannot run in CI: {why}",
            scenario.name
        );
        eprintln!("skipped {}: {why}", scenario.name);
        return None;
    }
    let mut started = runner::start(scenario).unwrap();
    runner::exercise(&mut started).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    Some(started)
}

fn stop(started: Started) {
    let Started { bench, nginx, .. } = started;
    nginx.stop();
    bench.shutdown();
}

fn summary(d: &Diagnosis) -> Vec<String> {
    d.findings
        .iter()
        .map(|f| format!("{} {:.2}", f.cause, f.confidence))
        .collect()
}

/// The ports of the group's two servers and of the other upstream, chosen by the setup below.
static GROUP_PORTS: [AtomicU16; 2] = [AtomicU16::new(0), AtomicU16::new(0)];
static OTHER_PORT: AtomicU16 = AtomicU16::new(0);

/// A group of two servers where nothing listens (marked down after one failure each), and
/// beside it a location proxying to a third port where nothing listens either: its refusals
/// are in the same error log, but they are not why the group's servers were marked down.
fn group_and_other(b: &mut Bench) -> anyhow::Result<Plan> {
    let (one, two, other) = (
        b.free_port(b.ip)?,
        b.free_port(Ipv4Addr::LOCALHOST)?,
        b.free_port(b.ip)?,
    );
    GROUP_PORTS[0].store(one, Ordering::SeqCst);
    GROUP_PORTS[1].store(two, Ordering::SeqCst);
    OTHER_PORT.store(other, Ordering::SeqCst);
    let nginx = NginxParts {
        http: format!(
            "  upstream app {{\n    server {ip}:{one} max_fails=1 fail_timeout=30s;\n    server 127.0.0.1:{two} max_fails=1 fail_timeout=30s;\n  }}\n",
            ip = b.ip
        ),
        server: format!(
            "    location / {{\n      proxy_pass http://app;\n    }}\n    location /other {{\n      proxy_pass http://{ip}:{other};\n    }}\n",
            ip = b.ip
        ),
        ..Default::default()
    };
    Ok(Plan {
        nginx,
        steps: vec![Step::Sequential(vec![
            LabRequest::get("/other"),
            LabRequest::get("/other"),
            LabRequest::get("/"),
            LabRequest::get("/"),
            LabRequest::get("/"),
        ])],
        expect: Expect {
            outcomes: vec!["502"],
            ..Default::default()
        },
        ..Default::default()
    })
}

#[test]
fn no_live_upstreams_names_only_its_own_servers_underneath() {
    let scenario = Scenario {
        name: "group-and-other",
        cause: "no-live-upstreams",
        summary: "a group whose servers refuse, beside another refusing upstream",
        needs: &[],
        setup: group_and_other,
    };
    let Some(started) = start(&scenario) else {
        return;
    };
    let ip = started.bench.ip;
    let d = diagnose(&started.diagnose_options()).unwrap();
    stop(started);
    let found = summary(&d);
    let first = d.findings.first().unwrap_or_else(|| panic!("{found:?}"));
    assert_eq!(first.cause, "no-live-upstreams", "{found:?}");
    let underneath = first
        .evidence
        .iter()
        .find(|e| e.location == "underneath")
        .unwrap_or_else(|| panic!("no underneath evidence: {:#?}", first.evidence));
    let one = format!("{ip}:{}", GROUP_PORTS[0].load(Ordering::SeqCst));
    let other = format!("{ip}:{}", OTHER_PORT.load(Ordering::SeqCst));
    assert!(
        underneath.detail.contains("upstream-refused") && underneath.detail.contains(&one),
        "{underneath:?}"
    );
    assert!(
        !underneath.detail.contains(&other),
        "the other location's refusals are not the group's: {underneath:?}"
    );
    // The group's definition and what its servers do now are shown with it.
    common::assert_evidence(first, |e| {
        e.source == "config" && e.detail.contains("upstream \"app\"")
    });
    common::assert_evidence(first, |e| {
        e.source == "live-check" && e.detail.contains("refused")
    });
}

static LATE_PORT: AtomicU16 = AtomicU16::new(0);

/// proxy_pass to a port where nothing listens yet.
fn refused_for_now(b: &mut Bench) -> anyhow::Result<Plan> {
    let port = b.free_port(b.ip)?;
    LATE_PORT.store(port, Ordering::SeqCst);
    Ok(Plan {
        nginx: NginxParts {
            server: format!(
                "    location / {{\n      proxy_pass http://{}:{port};\n    }}\n",
                b.ip
            ),
            ..Default::default()
        },
        steps: vec![Step::Sequential(vec![
            LabRequest::get("/"),
            LabRequest::get("/"),
        ])],
        expect: Expect {
            outcomes: vec!["502"],
            ..Default::default()
        },
        ..Default::default()
    })
}

#[test]
fn a_refusal_the_live_checks_disprove_is_ranked_down() {
    let scenario = Scenario {
        name: "refused-then-up",
        cause: "upstream-refused",
        summary: "refused while the requests were sent; the app listens by the time of diagnose",
        needs: &[],
        setup: refused_for_now,
    };
    let Some(mut started) = start(&scenario) else {
        return;
    };
    // The application comes up after the failures were logged.
    let ip = started.bench.ip;
    let port = LATE_PORT.load(Ordering::SeqCst);
    started
        .bench
        .upstream_at(ip, port, Behaviour::Ok)
        .expect("the port was free");
    let mut options = started.diagnose_options();
    // The URL answers 200 now; leave the probe out to look at the logs against the live checks.
    options.url = None;
    let d = diagnose(&options).unwrap();
    stop(started);
    let found = summary(&d);
    let refused = d
        .findings
        .iter()
        .find(|f| f.cause == "upstream-refused")
        .unwrap_or_else(|| panic!("the logged refusals are still reported: {found:?}"));
    assert!(refused.confidence <= 0.5, "{found:?}");
    common::assert_evidence(refused, |e| {
        e.source == "live-check"
            && e.location == format!("connect {ip}:{port}")
            && e.detail.contains("just now")
    });
    common::assert_check(&d, |c| {
        c.name.starts_with("live ") && c.detail.contains("connected")
    });
}

#[test]
fn the_same_cause_from_the_config_and_the_logs_is_one_finding() {
    let scenario = scenarios::find("no-resolver").unwrap();
    let Some(started) = start(&scenario) else {
        return;
    };
    let d = diagnose(&started.diagnose_options()).unwrap();
    stop(started);
    let found = summary(&d);
    let all: Vec<_> = d
        .findings
        .iter()
        .filter(|f| f.cause == "no-resolver")
        .collect();
    assert_eq!(all.len(), 1, "{found:?}");
    assert_eq!(d.findings[0].cause, "no-resolver", "{found:?}");
    let sources: Vec<&str> = all[0].evidence.iter().map(|e| e.source.as_str()).collect();
    assert!(
        sources.contains(&"config") && sources.contains(&"error-log"),
        "{:#?}",
        all[0].evidence
    );
    // Two witnesses: surer than the logs alone (0.9 for a cause that is every line's).
    assert!(d.findings[0].confidence > 0.9, "{found:?}");
}

#[test]
fn without_named_logs_the_configurations_logs_are_read() {
    let scenario = scenarios::find("refused").unwrap();
    let Some(started) = start(&scenario) else {
        return;
    };
    let options = DiagnoseOptions {
        url: None,
        nginx_configs: vec![started.nginx.conf.clone()],
        budget: Duration::from_secs(10),
        ..Default::default()
    };
    let error_log = started.nginx.error_log.display().to_string();
    let access_log = started.nginx.access_log.display().to_string();
    let d = diagnose(&options).unwrap();
    stop(started);
    let found = summary(&d);
    assert_eq!(
        d.findings.first().map(|f| f.cause.as_str()),
        Some("upstream-refused"),
        "{found:?}"
    );
    for log in [&error_log, &access_log] {
        // Found through the configuration, not given.
        common::assert_check(&d, |c| {
            c.name == format!("log {log}") && c.status == Status::Pass
        });
    }
    // The access log was read in the configuration's own log_format.
    common::assert_check(&d, |c| {
        c.name == format!("read {access_log}") && c.detail.contains("format lab")
    });
    assert!(d
        .findings
        .iter()
        .find(|f| f.cause == "upstream-refused")
        .unwrap()
        .evidence
        .iter()
        .any(|e| e.location.starts_with(&error_log)));
}

#[test]
fn no_live_connects_to_nothing() {
    let scenario = scenarios::find("refused").unwrap();
    let Some(started) = start(&scenario) else {
        return;
    };
    let mut options = started.diagnose_options();
    options.no_live = true;
    let d = diagnose(&options).unwrap();
    stop(started);
    let found = summary(&d);
    assert_eq!(d.findings[0].cause, "upstream-refused", "{found:?}");
    common::assert_check(&d, |c| {
        c.name == "live checks" && c.detail.contains("--no-live")
    });
    assert!(
        !d.findings
            .iter()
            .flat_map(|f| &f.evidence)
            .any(|e| e.source == "live-check"),
        "{:#?}",
        d.findings
    );
}
