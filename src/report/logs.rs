//! Renders a log scan and its verdict: text (80 columns, a 5xx chart), Markdown for a ticket, and
//! JSON (`{"files": […], "lines": N, "causes": {"<id>": count, …}, …}` per interface.md).

use super::findings::{check_json, checks_text, finding_json, finding_text};
use super::text::{styled, wrapped, BOLD, CAUSE, DIM};
use crate::catalog::catalog;
use crate::collect::logs::scan::ScanResult;
use crate::collect::logs::tally::{LineRef, PhpCulprit, Tally, UpstreamTally};
use crate::collect::logs::time;
use crate::i18n::{label, Lang};
use crate::redact::redact;
use crate::rules::logs::{Correlation, LogVerdict};
use serde_json::{json, Value};
use std::fmt::Write;

/// What the report needs besides the scan.
pub struct LogsView<'a> {
    pub result: &'a ScanResult,
    pub verdict: &'a LogVerdict,
    pub top: usize,
    pub lang: Lang,
    pub elapsed_ms: u64,
}

/// A time bucket of the 5xx timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    pub start: i64,
    pub requests: u64,
    pub errors: u64,
}

/// Buckets chosen from the span so that there are at most `max` of them.
pub fn timeline(tally: &Tally, max: usize) -> (i64, Vec<Bucket>) {
    let (Some((&first, _)), Some((&last, _))) = (
        tally.access.minutes.first_key_value(),
        tally.access.minutes.last_key_value(),
    ) else {
        return (60, Vec::new());
    };
    let span_minutes = last - first + 1;
    let width = [1i64, 5, 15, 30, 60, 180, 360, 720, 1440, 10080]
        .into_iter()
        .find(|w| span_minutes / w < max as i64)
        .unwrap_or(10080);
    let start = first - first.rem_euclid(width);
    let count = ((last - start) / width + 1) as usize;
    let mut buckets: Vec<Bucket> = (0..count)
        .map(|i| Bucket {
            start: (start + i as i64 * width) * 60,
            requests: 0,
            errors: 0,
        })
        .collect();
    for (&minute, &(requests, errors)) in &tally.access.minutes {
        let b = &mut buckets[((minute - start) / width) as usize];
        b.requests += requests;
        b.errors += errors;
    }
    (width * 60, buckets)
}

fn location(result: &ScanResult, line: &LineRef) -> String {
    format!(
        "{}:{}",
        result.files.get(line.file).map_or("?", |f| f.path.as_str()),
        line.line
    )
}

fn correlation_sentence(c: &Correlation, lang: Lang, result: &ScanResult) -> String {
    let gap = c.onset - c.cause_time;
    let title = catalog()
        .get(c.cause)
        .map(|x| x.title.get(lang).to_string())
        .unwrap_or_default();
    match lang {
        Lang::En => format!(
            "The errors began at {}, {gap} s after the first sign of {} ({}) at {}.",
            time::format(c.onset),
            c.cause,
            title,
            location(result, &c.cause_line)
        ),
        Lang::Zh => format!(
            "错误从 {} 开始，在此之前 {gap} 秒首次出现 {}（{}），见 {}。",
            time::format(c.onset),
            c.cause,
            title,
            location(result, &c.cause_line)
        ),
    }
}

/// The access log's upstreams, busiest first (ties by address, so reports are stable).
fn upstreams_by_attempts(t: &Tally) -> Vec<(&String, &UpstreamTally)> {
    let mut ups: Vec<_> = t.access.upstreams.iter().collect();
    ups.sort_by(|a, b| b.1.attempts.cmp(&a.1.attempts).then(a.0.cmp(b.0)));
    ups
}

/// PHP culprits, most fatal errors first.
fn php_by_severity(t: &Tally) -> Vec<(&String, &PhpCulprit)> {
    let mut php: Vec<_> = t.php.iter().collect();
    php.sort_by(|a, b| {
        (b.1.fatal, b.1.count)
            .cmp(&(a.1.fatal, a.1.count))
            .then(a.0.cmp(b.0))
    });
    php
}

fn sorted<'a, K: Ord + Clone + 'a, V: Ord + Copy + 'a>(
    map: impl Iterator<Item = (&'a K, &'a V)>,
    top: usize,
) -> Vec<(K, V)> {
    let mut v: Vec<(K, V)> = map.map(|(k, v)| (k.clone(), *v)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(top);
    v
}

/// The text report.
pub fn text(view: &LogsView) -> String {
    let (r, t, lang) = (view.result, &view.result.tally, view.lang);
    let mut out = String::new();
    let heading = |out: &mut String, en: &str, zh: &str| {
        let _ = writeln!(
            out,
            "\n{}",
            styled(BOLD, if lang == Lang::Zh { zh } else { en })
        );
    };
    let _ = writeln!(
        out,
        "{} {} files, {} lines, {:.1} MB in {} ms",
        styled(BOLD, "gwdoctor logs:"),
        r.files.len(),
        t.lines,
        t.bytes as f64 / 1e6,
        view.elapsed_ms
    );
    if let (Some(a), Some(b)) = (t.first_time, t.last_time) {
        let _ = writeln!(out, "  {} → {}", time::format(a), time::format(b));
    }
    if let Some(c) = &view.verdict.correlation {
        let _ = writeln!(out);
        wrapped(&mut out, 0, &correlation_sentence(c, lang, r));
    }
    if !view.verdict.findings.is_empty() {
        heading(
            &mut out,
            "Causes, most likely first",
            "原因（按可能性排序）",
        );
        for f in &view.verdict.findings {
            finding_text(&mut out, f, lang);
        }
    }
    let mut alternatives: Vec<(&str, u64)> = t
        .causes
        .iter()
        .filter(|(_, c)| c.primary == 0)
        .map(|(k, c)| (*k, c.mentions))
        .collect();
    alternatives.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    if !alternatives.is_empty() {
        heading(&mut out, "Also named as alternatives", "作为备选被提及");
        let list: Vec<String> = alternatives
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect();
        wrapped(&mut out, 2, &list.join(", "));
    }
    if t.access.requests > 0 {
        heading(&mut out, "Statuses", "状态码");
        let list: Vec<String> = t
            .access
            .statuses
            .iter()
            .map(|(s, n)| format!("{s:03}×{n}"))
            .collect();
        wrapped(&mut out, 2, &list.join("  "));
        let (width, buckets) = timeline(t, 60);
        if buckets.iter().any(|b| b.errors > 0) {
            heading(
                &mut out,
                &format!("5xx over time ({} min per column)", width / 60),
                &format!("5xx 随时间变化（每列 {} 分钟）", width / 60),
            );
            let max = buckets.iter().map(|b| b.errors).max().unwrap_or(1).max(1);
            let bars: String = buckets
                .iter()
                .map(|b| {
                    if b.errors == 0 {
                        ' '
                    } else {
                        ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'][((b.errors * 7) / max) as usize]
                    }
                })
                .collect();
            let _ = writeln!(out, "  {}", styled(CAUSE, &bars));
            let _ = writeln!(
                out,
                "  {}  … {}  (max {max} per column)",
                time::format(buckets[0].start),
                time::format(buckets[buckets.len() - 1].start)
            );
        }
        if !t.access.upstreams.is_empty() {
            heading(&mut out, "Upstreams", "上游");
            let _ = writeln!(
                out,
                "  {:<28} {:>9} {:>6} {:>8} {:>8} {:>8}",
                "address", "attempts", "5xx%", "p50", "p95", "p99"
            );
            for (addr, u) in upstreams_by_attempts(t).into_iter().take(view.top) {
                let q = |p: f64| {
                    u.times
                        .quantile(p)
                        .map_or("-".to_string(), |s| format!("{s:.3}s"))
                };
                let _ = writeln!(
                    out,
                    "  {:<28} {:>9} {:>5.1}% {:>8} {:>8} {:>8}",
                    addr,
                    u.attempts,
                    u.errors as f64 * 100.0 / u.attempts.max(1) as f64,
                    q(0.5),
                    q(0.95),
                    q(0.99)
                );
            }
        }
        if !t.access.paths_5xx.is_empty() {
            heading(&mut out, "Top paths by 5xx", "5xx 最多的路径");
            for (path, n) in sorted(t.access.paths_5xx.iter(), view.top) {
                let _ = writeln!(out, "  {n:>8}  {}", redact(&path));
            }
        }
    }
    if !t.php.is_empty() {
        heading(
            &mut out,
            "PHP errors by code (plugin, theme, file)",
            "PHP 错误按代码归类（插件、主题、文件）",
        );
        for (culprit, p) in php_by_severity(t).into_iter().take(view.top) {
            let _ = writeln!(
                out,
                "  {:>6} ({} fatal)  {}",
                p.count,
                p.fatal,
                styled(BOLD, culprit)
            );
            if let Some(e) = &p.example {
                let _ = writeln!(out, "          {}", styled(DIM, &location(r, e)));
            }
        }
    }
    if t.unknown > 0 {
        heading(&mut out, "Lines not understood", "无法识别的行");
        let _ = writeln!(
            out,
            "  {} ({} routine lines not counted)",
            t.unknown, t.routine
        );
        for e in &t.unknown_examples {
            let text: String = redact(&e.text).chars().take(160).collect();
            let _ = writeln!(
                out,
                "  {} {}",
                styled(DIM, &format!("{}:", location(r, e))),
                text
            );
        }
    }
    heading(&mut out, "Checks", label(lang, "check"));
    checks_text(&mut out, &view.verdict.checks);
    out
}

/// The Markdown report (for a ticket).
pub fn markdown(view: &LogsView) -> String {
    let (r, t, lang) = (view.result, &view.result.tally, view.lang);
    let mut out = String::from("# gwdoctor logs\n\n");
    let _ = writeln!(out, "{} files, {} lines.\n", r.files.len(), t.lines);
    if let Some(c) = &view.verdict.correlation {
        let _ = writeln!(out, "**{}**\n", correlation_sentence(c, lang, r));
    }
    out.push_str("## Causes\n\n| cause | confidence | evidence |\n|---|---|---|\n");
    for f in &view.verdict.findings {
        let evidence: Vec<String> = f
            .evidence
            .iter()
            .map(|e| format!("`{}` {}", e.location, redact(&e.detail).replace('|', "\\|")))
            .collect();
        let _ = writeln!(
            out,
            "| {} | {:.0}% | {} |",
            f.cause,
            f.confidence * 100.0,
            evidence.join("<br>")
        );
    }
    if t.access.requests > 0 {
        out.push_str("\n## Statuses\n\n| status | count |\n|---|---|\n");
        for (s, n) in &t.access.statuses {
            let _ = writeln!(out, "| {s:03} | {n} |");
        }
        if !t.access.paths_5xx.is_empty() {
            out.push_str("\n## Top paths by 5xx\n\n| path | 5xx |\n|---|---|\n");
            for (p, n) in sorted(t.access.paths_5xx.iter(), view.top) {
                let _ = writeln!(out, "| `{}` | {n} |", redact(&p).replace('|', "\\|"));
            }
        }
    }
    out.push_str("\n## Checks\n\n");
    for c in &view.verdict.checks {
        let _ = writeln!(
            out,
            "- **{}** ({:?}): {}",
            c.name,
            c.status,
            redact(&c.detail)
        );
    }
    out
}

/// The JSON report.
pub fn json(view: &LogsView) -> Value {
    let (r, t, lang) = (view.result, &view.result.tally, view.lang);
    let line = |l: &LineRef| json!({"location": location(r, l), "text": redact(&l.text)});
    let causes: serde_json::Map<String, Value> = t
        .causes
        .iter()
        .filter(|(_, c)| c.primary > 0)
        .map(|(k, c)| (k.to_string(), json!(c.primary)))
        .collect();
    let mut by_count: Vec<_> = t.causes.iter().collect();
    by_count.sort_by(|a, b| {
        (b.1.primary, b.1.mentions)
            .cmp(&(a.1.primary, a.1.mentions))
            .then(a.0.cmp(b.0))
    });
    let details: Vec<Value> = by_count
        .into_iter()
        .map(|(k, c)| {
            json!({
                "cause": k, "count": c.primary, "mentions": c.mentions,
                "first_seen": c.first.map(time::format), "last_seen": c.last.map(time::format),
                "upstreams": c.upstreams, "example": c.example.as_ref().map(line), "logs": c.kinds,
            })
        })
        .collect();
    let (width, buckets) = timeline(t, 60);
    json!({
        "files": r.files.iter().map(|f| json!({"path": f.path, "kind": f.kind, "format": f.format, "lines": f.lines, "bytes": f.bytes, "warning": f.warning})).collect::<Vec<_>>(),
        "lines": t.lines,
        "elapsed_ms": view.elapsed_ms,
        "first_time": t.first_time.map(time::format),
        "last_time": t.last_time.map(time::format),
        "causes": causes,
        "cause_details": details,
        "signatures": t.signatures,
        "statuses": t.access.statuses.iter().map(|(s, n)| (format!("{s:03}"), json!(n))).collect::<serde_json::Map<_, _>>(),
        "requests": t.access.requests,
        "hidden_retries": t.access.hidden_retries,
        "timeline": {"bucket_seconds": width, "buckets": buckets.iter().map(|b| json!({"start": time::format(b.start), "requests": b.requests, "errors": b.errors})).collect::<Vec<_>>()},
        "upstreams": upstreams_by_attempts(t).into_iter().map(|(a, u)| json!({
            "address": a, "attempts": u.attempts, "errors": u.errors,
            "p50": u.times.quantile(0.5), "p95": u.times.quantile(0.95), "p99": u.times.quantile(0.99),
        })).collect::<Vec<_>>(),
        "top_paths_5xx": sorted(t.access.paths_5xx.iter(), view.top).into_iter().map(|(p, n)| json!({"path": redact(&p), "count": n})).collect::<Vec<_>>(),
        "php": php_by_severity(t).into_iter().map(|(k, p)| json!({"culprit": k, "count": p.count, "fatal": p.fatal, "example": p.example.as_ref().map(line)})).collect::<Vec<_>>(),
        "correlation": view.verdict.correlation.as_ref().map(|c| json!({
            "onset": time::format(c.onset), "onset_line": line(&c.onset_line), "cause": c.cause,
            "cause_time": time::format(c.cause_time), "cause_line": line(&c.cause_line),
            "text": correlation_sentence(c, lang, r),
        })),
        "unknown": {"count": t.unknown, "routine": t.routine, "examples": t.unknown_examples.iter().map(line).collect::<Vec<_>>()},
        "long_lines": t.long_lines,
        "findings": view.verdict.findings.iter().map(|f| finding_json(f, lang)).collect::<Vec<_>>(),
        "checks": view.verdict.checks.iter().map(check_json).collect::<Vec<_>>(),
    })
}
