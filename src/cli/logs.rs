//! `gwdoctor logs PATH…`: classify gateway and app-server logs.

use super::{Common, Failure};
use gwdoctor::collect::logs::formats::access::LogFormat;
use gwdoctor::collect::logs::scan::{scan, ScanOptions};
use gwdoctor::collect::logs::{source, time};
use gwdoctor::report::logs::{json, markdown, text, LogsView};
use gwdoctor::report::Format;
use gwdoctor::rules::logs::judge;
use std::io::IsTerminal;
use std::time::Instant;

/// Inputs over this size get a progress bar (on a terminal).
const PROGRESS_OVER: u64 = 100 * 1000 * 1000;

#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// Files, globs or directories (`/var/log/nginx`); `-` reads standard input. Rotated series
    /// are read oldest first; .gz and .zst are read as they are.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<String>,
    /// An access-log format in nginx syntax (`$remote_addr … $upstream_status …`), tried before
    /// combined and common. Repeatable.
    #[arg(long, value_name = "FORMAT")]
    log_format: Vec<String>,
    /// Only lines from this time on: `2024-05-02 14:00`, `2024-05-02T14:00:00Z`, or an age
    /// such as `2h`, `30m`, `1d`.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// Only lines before this time (same forms as --since).
    #[arg(long, value_name = "WHEN")]
    until: Option<String>,
    /// How many upstreams, paths and PHP culprits to list.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

/// `2024-05-02 14:00[:ss]`, ISO 8601, or an age (`90s`, `30m`, `2h`, `1d`) before now.
pub fn parse_when(text: &str, now: i64) -> Option<i64> {
    let text = text.trim();
    if let Some(unit) = text.chars().last() {
        if let Ok(n) = text[..text.len() - unit.len_utf8()].parse::<i64>() {
            let seconds = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return None,
            };
            return Some(now - n * seconds);
        }
    }
    let padded = if text.len() == 16 {
        format!("{text}:00")
    } else {
        text.to_string()
    };
    time::iso8601(padded.as_bytes())
}

pub fn run(common: &Common, args: LogsArgs) -> Result<u8, Failure> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let when = |flag: &str, v: &Option<String>| -> Result<Option<i64>, Failure> {
        v.as_ref()
            .map(|s| parse_when(s, now).ok_or_else(|| Failure::Usage(format!("logs: {flag} {s:?}: expected a time such as 2024-05-02 14:00 or an age such as 2h"))))
            .transpose()
    };
    let mut formats = Vec::new();
    for (i, f) in args.log_format.iter().enumerate() {
        formats.push(
            LogFormat::compile(&format!("--log-format {}", i + 1), f)
                .map_err(|e| Failure::Usage(format!("logs: {e}")))?,
        );
    }
    let options = ScanOptions {
        formats,
        since: when("--since", &args.since)?,
        until: when("--until", &args.until)?,
        reference_year: time::civil_from_unix(now).0,
    };
    let files = source::expand(&args.paths).map_err(|e| Failure::Usage(e.to_string()))?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let bar = (total > PROGRESS_OVER && std::io::stderr().is_terminal()).then(|| {
        let bar = indicatif::ProgressBar::new(total);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let progress = |n: u64| {
        if let Some(bar) = &bar {
            bar.inc(n);
        }
    };
    let result = scan(&files, &options, &progress).map_err(|e| Failure::Usage(e.to_string()))?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let verdict = judge(&result);
    let view = LogsView {
        result: &result,
        verdict: &verdict,
        top: args.top,
        lang: common.lang(),
        elapsed_ms: started.elapsed().as_millis() as u64,
    };
    let rendered = match common.format {
        Format::Json => format!("{:#}\n", json(&view)),
        Format::Markdown => markdown(&view),
        Format::Text => text(&view),
        Format::Html | Format::Crossplane => {
            return Err(Failure::Usage(
                "logs: --format takes text, json or markdown".into(),
            ))
        }
    };
    common.print(&rendered)?;
    Ok(if verdict.findings.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::parse_when;

    #[test]
    fn times_and_ages() {
        assert_eq!(parse_when("2h", 10_000), Some(10_000 - 7200));
        assert_eq!(parse_when("2024-05-02 14:02", 0), Some(1_714_658_520));
        assert_eq!(parse_when("2024-05-02T14:02:11Z", 0), Some(1_714_658_531));
        assert_eq!(parse_when("yesterday", 0), None);
    }
}
