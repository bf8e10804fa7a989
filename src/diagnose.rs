//! `diagnose`: every kind of evidence that applies, collected concurrently within a time budget,
//! then correlated into ranked root causes (`rules::diagnose`).
//!
//! Each source is a step with its own check in the report, so the user sees the whole walk:
//! what was looked at, what passed, what failed, what was skipped and why.

use crate::collect::host::{self, HostOptions, HostSnapshot};
use crate::collect::logs::formats::access::LogFormat;
use crate::collect::logs::scan::{scan, ScanOptions, ScanResult};
use crate::collect::logs::source;
use crate::findings::{Check, Evidence, Finding, Status};
use crate::rules;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// What to diagnose.
#[derive(Debug, Clone, Default)]
pub struct DiagnoseOptions {
    /// The site, as a user reaches it.
    pub url: Option<String>,
    pub nginx_configs: Vec<PathBuf>,
    pub error_logs: Vec<PathBuf>,
    pub access_logs: Vec<PathBuf>,
    /// Upstream-side logs (PHP-FPM, gunicorn, uWSGI, kernel) given explicitly.
    pub other_logs: Vec<PathBuf>,
    /// Access-log formats in nginx syntax, besides those the config names.
    pub log_formats: Vec<String>,
    /// The whole run's budget.
    pub budget: Duration,
    /// Skip the host's limits and listeners (they describe this machine only).
    pub no_host: bool,
}

/// The outcome of the walk: findings most likely first, and every check.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub target: Option<String>,
    pub findings: Vec<Finding>,
    pub checks: Vec<Check>,
    pub elapsed: Duration,
    /// The log scan, when logs were read (for reports that show the timeline).
    pub logs: Option<ScanResult>,
    /// Whether a gateway error log was read (so its silence means something).
    pub error_log_read: bool,
    /// The host snapshot, when the host was read.
    pub host: Option<HostSnapshot>,
}

impl Diagnosis {
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why diagnose cannot run at all (a named file that cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DiagnoseError(pub String);

/// Runs the walk.
pub fn diagnose(options: &DiagnoseOptions) -> Result<Diagnosis, DiagnoseError> {
    let started = Instant::now();
    let mut diagnosis = Diagnosis {
        target: options.url.clone(),
        ..Default::default()
    };
    let mut findings: Vec<Finding> = Vec::new();

    // The host is read on its own thread while the logs are scanned.
    let host_thread = (!options.no_host).then(|| {
        std::thread::spawn(|| {
            let step = Instant::now();
            let snapshot = host::collect(&HostOptions::default());
            (snapshot, step.elapsed().as_millis() as u64)
        })
    });

    // The probe of the URL runs on its own thread too, within the budget.
    let probe_thread = match &options.url {
        Some(url) => {
            let target = crate::collect::probe::ProbeTarget::parse(url)
                .map_err(|e| DiagnoseError(format!("{url}: {e}")))?;
            let probe_options = crate::collect::probe::ProbeOptions {
                timeout: options.budget.mul_f64(0.8),
                ..Default::default()
            };
            Some(std::thread::spawn(move || {
                crate::collect::probe::probe_blocking(&target, &probe_options)
            }))
        }
        None => None,
    };

    // Logs: the ones named, and the ones the configuration names.
    let mut log_paths: Vec<String> = Vec::new();
    for p in options
        .error_logs
        .iter()
        .chain(&options.access_logs)
        .chain(&options.other_logs)
    {
        log_paths.push(p.display().to_string());
    }
    let mut formats = Vec::new();
    for config in &options.nginx_configs {
        let text = std::fs::read_to_string(config)
            .map_err(|e| DiagnoseError(format!("{}: cannot read: {e}", config.display())))?;
        for (name, format) in log_formats_in(&text) {
            formats.push(
                LogFormat::compile(&name, &format)
                    .map_err(|e| DiagnoseError(format!("{}: {e}", config.display())))?,
            );
        }
    }
    for (i, f) in options.log_formats.iter().enumerate() {
        formats.push(
            LogFormat::compile(&format!("format {}", i + 1), f)
                .map_err(|e| DiagnoseError(e.to_string()))?,
        );
    }
    if log_paths.is_empty() {
        diagnosis.checks.push(Check::new(
            "logs",
            Status::Skip,
            "no log given or found; pass --error-log / --access-log",
            0,
        ));
    } else {
        let step = Instant::now();
        let files = source::expand(&log_paths).map_err(|e| DiagnoseError(e.to_string()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let scan_options = ScanOptions {
            formats,
            since: None,
            until: None,
            reference_year: crate::collect::logs::time::civil_from_unix(now).0,
        };
        let result =
            scan(&files, &scan_options, &|_| {}).map_err(|e| DiagnoseError(e.to_string()))?;
        let verdict = rules::logs::judge(&result);
        let ms = step.elapsed().as_millis() as u64;
        let mut checks = verdict.checks;
        for c in &mut checks {
            c.ms = ms;
        }
        diagnosis.checks.extend(checks);
        findings.extend(verdict.findings);
        if let Some(c) = verdict.correlation {
            findings.push(rules::diagnose::from_correlation(&result, &c));
        }
        let remaining = options.budget.saturating_sub(started.elapsed());
        let (timing_findings, timing_checks) = time_slow_upstreams(&result, remaining);
        findings.extend(timing_findings);
        diagnosis.checks.extend(timing_checks);
        diagnosis.error_log_read =
            !options.error_logs.is_empty() || result.files.iter().any(|f| f.kind == "nginx-error");
        diagnosis.logs = Some(result);
    }

    match probe_thread.map(|t| t.join()) {
        Some(Ok(Ok(report))) => {
            let (probe_findings, probe_checks) = rules::probe::findings(&report);
            // With logs at hand, the page's guesses yield to what the logs prove.
            let logs_named = diagnosis
                .logs
                .as_ref()
                .is_some_and(|r| r.tally.causes.values().any(|c| c.primary > 0));
            findings.extend(probe_findings.into_iter().map(|mut f| {
                if logs_named {
                    f.confidence *= 0.7;
                }
                f
            }));
            diagnosis.checks.extend(probe_checks);
        }
        Some(Ok(Err(e))) => diagnosis.checks.push(Check::new(
            "probe",
            Status::Fail,
            format!("the probe could not run: {e}"),
            0,
        )),
        Some(Err(_)) => {
            diagnosis
                .checks
                .push(Check::new("probe", Status::Fail, "the probe failed", 0))
        }
        None => diagnosis
            .checks
            .push(Check::new("probe", Status::Skip, "no URL given", 0)),
    }

    match host_thread.map(|t| t.join()) {
        Some(Ok((snapshot, ms))) => {
            let (host_findings, host_checks) = rules::host::findings(&snapshot);
            findings.extend(rules::diagnose::weigh_host(
                host_findings,
                diagnosis.logs.as_ref(),
            ));
            diagnosis
                .checks
                .extend(host_checks.into_iter().map(|mut c| {
                    c.ms = c.ms.max(ms);
                    c
                }));
            diagnosis.host = Some(snapshot);
        }
        Some(Err(_)) => diagnosis.checks.push(Check::new(
            "host",
            Status::Fail,
            "the host collector failed",
            0,
        )),
        None => diagnosis
            .checks
            .push(Check::new("host", Status::Skip, "skipped (--no-host)", 0)),
    }

    diagnosis.findings = rules::diagnose::correlate(findings, &diagnosis);
    diagnosis.elapsed = started.elapsed();
    Ok(diagnosis)
}

/// For each upstream that timed out, how long does it really take? One direct request, with a
/// deadline of three times the gateway's timeout (as the access log shows it): an answer after
/// the timeout means the timeout is too short for this upstream; no answer means the upstream
/// is stuck.
fn time_slow_upstreams(result: &ScanResult, budget: Duration) -> (Vec<Finding>, Vec<Check>) {
    use crate::lab::client::{send, LabRequest, Outcome};
    let mut findings = Vec::new();
    let mut checks = Vec::new();
    let Some(slow) = result.tally.causes.get("upstream-read-timeout") else {
        return (findings, checks);
    };
    for addr in slow.upstreams.keys().take(3) {
        let Some(timeout) = result
            .tally
            .access
            .upstreams
            .get(addr)
            .map(|u| u.timeout_seconds)
            .filter(|t| *t > 0.0)
        else {
            continue;
        };
        let Ok(socket) = addr.parse::<std::net::SocketAddr>() else {
            continue;
        };
        let deadline = Duration::from_secs_f64(timeout * 3.0 + 1.0).min(budget);
        if deadline < Duration::from_secs_f64(timeout) {
            checks.push(Check::new(
                format!("time {addr}"),
                Status::Skip,
                "not enough time left in the budget",
                0,
            ));
            continue;
        }
        let step = Instant::now();
        let outcome = send(socket, &LabRequest::get("/"), deadline, None);
        let took = step.elapsed().as_secs_f64();
        let ms = step.elapsed().as_millis() as u64;
        match outcome {
            Outcome::Status { code, .. } if took > timeout => {
                checks.push(Check::new(format!("time {addr}"), Status::Fail, format!("answered {code} after {took:.2} s; the gateway gives up after {timeout:.2} s"), ms));
                findings.push(Finding::new(
                    "proxy-timeout-too-short",
                    0.93,
                    vec![Evidence::new("live-check", format!("GET http://{addr}/"), format!("answered after {took:.2} s, the gateway's timeout is {timeout:.2} s (504s in the access log)"))],
                ));
            }
            Outcome::TimedOut | Outcome::Empty => {
                checks.push(Check::new(
                    format!("time {addr}"),
                    Status::Fail,
                    format!("no answer within {:.1} s", deadline.as_secs_f64()),
                    ms,
                ));
                findings.push(Finding::new(
                    "upstream-read-timeout",
                    0.93,
                    vec![Evidence::new(
                        "live-check",
                        format!("GET http://{addr}/"),
                        format!(
                            "no answer within {:.1} s (the gateway's timeout: {timeout:.2} s)",
                            deadline.as_secs_f64()
                        ),
                    )],
                ));
            }
            other => checks.push(Check::new(
                format!("time {addr}"),
                Status::Pass,
                format!(
                    "{} after {took:.2} s: within the timeout now",
                    other.label()
                ),
                ms,
            )),
        }
    }
    (findings, checks)
}

/// The `log_format NAME 'part' 'part' …;` directives of an nginx configuration file, with their
/// quoted parts joined as nginx joins them. Only this file: includes are the config parser's job.
pub fn log_formats_in(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("log_format") {
        let before_ok = rest[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == ';' || c == '{');
        rest = &rest[at + "log_format".len()..];
        if !before_ok || !rest.starts_with(char::is_whitespace) {
            continue;
        }
        let Some(end) = rest.find(';') else { break };
        let statement = &rest[..end];
        rest = &rest[end + 1..];
        let mut words = statement.split_whitespace();
        let Some(name) = words.next() else { continue };
        let mut format = String::new();
        let mut quote: Option<char> = None;
        let mut after_name =
            statement[statement.find(name).map_or(0, |i| i + name.len())..].trim_start();
        // `escape=json|default|none` stands between the name and the format.
        if after_name.starts_with("escape=") {
            after_name = after_name
                .split_once(char::is_whitespace)
                .map_or("", |(_, rest)| rest);
        }
        for c in after_name.chars() {
            match (quote, c) {
                (None, '\'' | '"') => quote = Some(c),
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => format.push(c),
                (None, c) if !c.is_whitespace() => format.push(c),
                _ => {}
            }
        }
        if !format.is_empty() && !name.starts_with("escape=") {
            out.push((name.to_string(), format));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::log_formats_in;

    #[test]
    fn log_formats_are_read_from_a_config_file() {
        let conf = "http {\n  log_format main '$remote_addr - $remote_user [$time_local] \"$request\" '\n                  '$status $body_bytes_sent';\n  # access_log_format is not one\n  log_format json escape=json '{\"s\":\"$status\"}';\n}\n";
        let formats = log_formats_in(conf);
        assert_eq!(formats[0].0, "main");
        assert_eq!(
            formats[0].1,
            "$remote_addr - $remote_user [$time_local] \"$request\" $status $body_bytes_sent"
        );
        assert_eq!(formats.len(), 2);
        assert_eq!(
            formats[1],
            ("json".to_string(), "{\"s\":\"$status\"}".to_string())
        );
    }
}
