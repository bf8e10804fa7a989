//! Findings from logs. A cause named as the most likely one by many recent lines ranks high; a
//! cause only named as an alternative is left to the other collectors to confirm; "no live
//! upstreams" is a consequence, so it ranks below the failures that caused it.

use crate::collect::logs::scan::ScanResult;
use crate::collect::logs::tally::LineRef;
use crate::findings::{Check, Evidence, Finding, Status};

/// Causes whose lines come from the upstream's side (PHP-FPM, app servers, the kernel): the
/// events that can explain a gateway's errors that follow them.
const UPSTREAM_SIDE: &[&str] = &[
    "protocol-mismatch",
    "upstream-request-header-too-big",
    "fpm-max-children",
    "fpm-execution-timeout",
    "app-worker-timeout",
    "upstream-crashed",
    "oom-killed",
    "listen-backlog-overflow",
    "host-disk-full",
    "fd-exhaustion",
    "conntrack-full",
];

/// How far back an upstream-side event may be to explain the start of the errors.
const CORRELATION_WINDOW: i64 = 600;

/// "The errors began at T, Δ seconds after E first appeared."
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// When the client-visible errors began, and the line that shows it.
    pub onset: i64,
    pub onset_line: LineRef,
    /// The upstream-side cause first seen just before.
    pub cause: &'static str,
    pub cause_time: i64,
    pub cause_line: LineRef,
}

/// What the rules make of a scan.
#[derive(Debug, Clone, Default)]
pub struct LogVerdict {
    pub findings: Vec<Finding>,
    pub checks: Vec<Check>,
    pub correlation: Option<Correlation>,
}

fn location(result: &ScanResult, line: &LineRef) -> String {
    let file = result.files.get(line.file).map_or("?", |f| f.path.as_str());
    format!("{file}:{}", line.line)
}

fn source_of(kinds: &[&str]) -> &'static str {
    match kinds.first().copied() {
        Some("nginx-error") | Some("apache-error") => "error-log",
        Some("php-fpm") => "fpm-log",
        Some("gunicorn") | Some("uwsgi") => "app-log",
        Some("system") => "kernel-log",
        _ => "log",
    }
}

/// The rules over one scan.
pub fn judge(result: &ScanResult) -> LogVerdict {
    let tally = &result.tally;
    let mut verdict = LogVerdict::default();
    let total_primary: u64 = tally.causes.values().map(|c| c.primary).sum();
    let last_time = tally.last_time;
    let mut findings = Vec::new();
    for (&id, c) in &tally.causes {
        if c.primary == 0 {
            continue;
        }
        let share = c.primary as f64 / total_primary.max(1) as f64;
        let mut confidence = 0.45 + 0.45 * share;
        // Seen by two different logs (nginx's and PHP-FPM's, say): independent witnesses.
        if c.kinds.len() > 1 {
            confidence += 0.1;
        }
        // The upstream's own account (PHP-FPM, an app server, the kernel) is closer to the cause
        // than the gateway's view of its effect.
        if c.kinds
            .iter()
            .any(|k| !matches!(*k, "nginx-error" | "apache-error"))
        {
            confidence += 0.15;
        }
        // Symptoms that a signature can name but that need the counts to prove.
        if matches!(id, "partial-backend-failure" | "overload") {
            confidence *= 0.7;
        }
        // Old news counts less: a cause whose last line is an hour before the newest line.
        if let (Some(last), Some(newest)) = (c.last, last_time) {
            if newest - last > 3600 {
                confidence -= 0.2;
            }
        }
        let mut evidence = Vec::new();
        if let Some(example) = &c.example {
            evidence.push(Evidence::new(
                source_of(&c.kinds),
                location(result, example),
                example.text.clone(),
            ));
        }
        let mut summary = lines(c.primary);
        if c.mentions > c.primary {
            // The time range covers every line that names the cause, also as a second guess.
            summary.push_str(&format!(" ({} naming it in all)", c.mentions));
        }
        if let (Some(first), Some(last)) = (c.first, c.last) {
            summary.push_str(&format!(
                ", from {} to {}",
                crate::collect::logs::time::format(first),
                crate::collect::logs::time::format(last)
            ));
        }
        let mut upstreams: Vec<(&String, &u64)> = c.upstreams.iter().collect();
        upstreams.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        if !upstreams.is_empty() {
            let list: Vec<String> = upstreams
                .iter()
                .take(3)
                .map(|(u, n)| format!("{u} ({n})"))
                .collect();
            summary.push_str(&format!("; upstreams {}", list.join(", ")));
        }
        evidence.push(Evidence::new(source_of(&c.kinds), "count", summary));
        let mut finding = Finding::new(id, confidence.min(0.95), evidence);
        if id == "no-live-upstreams" {
            // What the clients got is certain; why the servers were marked down is what the
            // failures before it say, named beside it.
            let mut failures: Vec<(&str, u64)> = tally
                .causes
                .iter()
                .filter(|(other, o)| {
                    **other != id
                        && o.primary > 0
                        && o.kinds.contains(&"nginx-error")
                        // Only what came before the last "no live upstreams" can explain it.
                        && match (o.first, c.last) {
                            (Some(f), Some(l)) => f <= l,
                            _ => true,
                        }
                })
                .map(|(other, o)| (*other, o.primary))
                .collect();
            failures.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            let underneath: Vec<String> = failures
                .iter()
                .map(|(other, n)| format!("{other} ({})", lines(*n)))
                .collect();
            if !underneath.is_empty() {
                finding.confidence = 0.95;
                finding.evidence.push(Evidence::new(
                    "error-log",
                    "underneath",
                    // Without the configuration the log does not say which servers form
                    // the group: every earlier failure is listed, and `diagnose` narrows it.
                    format!(
                        "failures logged before it, among them those of the group's servers: {} (gwdoctor diagnose --nginx-config tells which servers are in the group)",
                        underneath.join(", ")
                    ),
                ));
            }
            finding = finding.confirm("nginx marks servers down after max_fails failures: the failures before the first 'no live upstreams' line are why");
        }
        findings.push(finding);
    }
    if let Some(partial) = partial_backend(result) {
        findings.push(partial);
    }
    let a = &tally.access;
    if a.same_server_retries > 0 {
        findings.push(Finding::new(
            "keepalive-race",
            0.92,
            vec![Evidence::new(
                "access-log",
                "upstream_status",
                format!(
                    "{} requests failed on a server and were answered by the same server on retry (stale keep-alive connections); non-idempotent requests (POST) are not retried and get 502",
                    a.same_server_retries
                ),
            )],
        ));
    }
    verdict.findings = crate::findings::rank(findings);
    verdict.correlation = correlate(result);
    verdict.checks = checks(result);
    verdict
}

/// One upstream address carrying most of the failed attempts while others succeed.
fn partial_backend(result: &ScanResult) -> Option<Finding> {
    let upstreams = &result.tally.access.upstreams;
    if upstreams.len() < 2 {
        return None;
    }
    let total_errors: u64 = upstreams.values().map(|u| u.errors).sum();
    let (addr, worst) = upstreams.iter().max_by_key(|(_, u)| u.errors)?;
    let worst_rate = worst.errors as f64 / worst.attempts.max(1) as f64;
    let others: (u64, u64) = upstreams
        .iter()
        .filter(|(a, _)| *a != addr)
        .fold((0, 0), |acc, (_, u)| (acc.0 + u.errors, acc.1 + u.attempts));
    let others_rate = others.0 as f64 / others.1.max(1) as f64;
    // nginx takes a failing server out for fail_timeout after max_fails, so even one failure
    // against several answers from the others counts.
    let others_answered = others.1 - others.0;
    if total_errors == 0
        || worst_rate < 0.2
        || worst_rate < others_rate * 5.0
        || others_answered < 2
    {
        return None;
    }
    // [::1]:P failing while IPv4 on the same port answers is the address-family problem.
    let port = |a: &str| a.rsplit(':').next().map(str::to_string);
    if addr.starts_with("[::1]:") && upstreams.keys().any(|k| k != addr && port(k) == port(addr)) {
        return None;
    }
    // Errors on one server while the others answer: the pool's problem is that server, whatever
    // its failure is (which the error log names).
    Some(Finding::new(
        "partial-backend-failure",
        0.93,
        vec![Evidence::new(
            "access-log",
            format!("upstream {addr}"),
            format!(
                "{} of {} attempts failed ({:.0}%) against {:.1}% on the other {} servers",
                worst.errors,
                worst.attempts,
                worst_rate * 100.0,
                others_rate * 100.0,
                upstreams.len() - 1
            ),
        )],
    ))
}

/// The upstream-side event first seen closest before the client-visible errors began.
fn correlate(result: &ScanResult) -> Option<Correlation> {
    let tally = &result.tally;
    // The onset: the first 5xx in an access log, else the first gateway error line.
    let (onset, onset_line) = tally
        .access
        .first_5xx
        .clone()
        .or_else(|| tally.gateway_first.clone())?;
    tally
        .causes
        .iter()
        .filter(|(id, _)| UPSTREAM_SIDE.contains(id))
        .filter_map(|(&id, c)| Some((id, c.upstream_first.clone()?)))
        .filter(|(_, (t, _))| *t <= onset + 5 && onset - *t <= CORRELATION_WINDOW)
        .max_by_key(|(_, (t, _))| *t)
        .map(|(cause, (cause_time, cause_line))| Correlation {
            onset,
            onset_line,
            cause,
            cause_time,
            cause_line,
        })
}

fn checks(result: &ScanResult) -> Vec<Check> {
    let t = &result.tally;
    let mut checks = Vec::new();
    for f in &result.files {
        let status = if f.warning.is_some() {
            Status::Warn
        } else {
            Status::Pass
        };
        let detail = match &f.warning {
            Some(w) => format!("{} lines as {}; {w}", f.lines, f.kind),
            None => format!(
                "{} lines as {}{}",
                f.lines,
                f.kind,
                f.format
                    .as_ref()
                    .map(|n| format!(" (format {n})"))
                    .unwrap_or_default()
            ),
        };
        checks.push(Check::new(format!("read {}", f.path), status, detail, 0));
    }
    if t.access.requests > 0 {
        let errors: u64 = t.access.statuses.range(500..).map(|(_, n)| n).sum();
        let share = errors as f64 / t.access.requests as f64 * 100.0;
        let status = if errors == 0 {
            Status::Pass
        } else {
            Status::Fail
        };
        checks.push(Check::new(
            "5xx in access logs",
            status,
            format!("{errors} of {} requests ({share:.2}%)", t.access.requests),
            0,
        ));
        if t.access.hidden_retries > 0 {
            checks.push(Check::new(
                "retried upstream failures",
                Status::Warn,
                format!(
                    "{} requests failed on one upstream and were answered by another (upstream_status such as \"502, 200\"): their error-log lines are not failures the client saw",
                    t.access.hidden_retries
                ),
                0,
            ));
        }
        if t.access.http09 > 0 {
            checks.push(Check::new(
                "HTTP/0.9 answers",
                Status::Fail,
                format!("{} requests logged with status 009: an upstream answered without a status line (protocol mismatch)", t.access.http09),
                0,
            ));
        }
    }
    if t.unknown > 0 {
        checks.push(Check::new(
            "lines not understood",
            Status::Warn,
            format!("{} of {} lines", t.unknown, t.lines),
            0,
        ));
    }
    if t.long_lines > 0 {
        checks.push(Check::new(
            "over-long lines",
            Status::Warn,
            format!(
                "{} lines longer than 1 MiB were read on their first MiB",
                t.long_lines
            ),
            0,
        ));
    }
    checks
}

/// "1 line", "12 lines".
fn lines(n: u64) -> String {
    if n == 1 {
        "1 line".to_string()
    } else {
        format!("{n} lines")
    }
}
