//! `gwdoctor probe URL`: DNS → TCP → TLS → HTTP from the user's side, with phase timings (a
//! waterfall line per phase, as httpstat draws it), who produced the response, and the findings.
//!
//! Exit status: 0 when every request got a complete 2xx/3xx answer and nothing was found, 1
//! when there are findings or a request failed, 2 for bad usage (a bad URL, an unreadable
//! `--ca-file`), 3 when the tool itself failed.

use super::{Common, Failure};
use gwdoctor::collect::probe::fingerprint::Fingerprint;
use gwdoctor::collect::probe::stats::Stats;
use gwdoctor::collect::probe::{
    self, Exchange, ProbeOptions, ProbeReport, ProbeTarget, ProxySettings, RequestReport,
    ResolveOverride,
};
use gwdoctor::findings::{Check, Finding};
use gwdoctor::i18n::Lang;
use gwdoctor::redact::redact;
use gwdoctor::report::findings::{check_json, checks_text, finding_json, finding_text};
use gwdoctor::report::text::{styled, BOLD, CAUSE, DIM, PRODUCT};
use gwdoctor::report::Format;
use gwdoctor::rules::probe::{address_list, address_ttl};
use serde_json::{json, Value};
use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct ProbeArgs {
    /// The URL to probe (`https://example.com/path`; a bare host means http://).
    #[arg(value_name = "URL")]
    url: String,
    /// Connect to ADDRESS for HOST:PORT instead of resolving it (as curl's --resolve); several
    /// addresses separated by commas.
    #[arg(long, value_name = "HOST:PORT:ADDRESS")]
    resolve: Vec<String>,
    /// Ask this DNS server, side by side with the system's resolver (repeatable); IP or IP:PORT.
    /// Default: the servers of /etc/resolv.conf.
    #[arg(long, value_name = "IP[:PORT]")]
    resolver: Vec<String>,
    /// Do not ask the system's resolver (getaddrinfo): only the --resolver servers.
    #[arg(long)]
    no_system_dns: bool,
    /// Requests in all (for intermittent failures). With 1, every address of the name is
    /// probed once.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=probe::MAX_COUNT as i64))]
    count: u32,
    /// Requests in flight at once.
    #[arg(long, value_name = "C", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=probe::MAX_CONCURRENCY as i64))]
    concurrency: u32,
    /// Pause between the starts of two requests (`200ms`, `1s`, `1m`).
    #[arg(long, value_name = "DURATION", default_value = "0s", value_parser = parse_duration)]
    interval: Duration,
    /// Probe the origin or app directly too (HOST:PORT or a URL), with the same path and
    /// Host header, to tell which side fails.
    #[arg(long, value_name = "HOST:PORT")]
    upstream: Option<String>,
    /// Deadline of one request, all phases and redirects included (`10s`, `500ms`).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Redirects followed at most (0: none).
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(0..=probe::MAX_REDIRECTS as i64))]
    max_redirects: u32,
    /// Go on past a certificate that does not verify (the problem is still reported).
    #[arg(long, short = 'k')]
    insecure: bool,
    /// Trust the CA certificates in this PEM file too (repeatable).
    #[arg(long, value_name = "PATH")]
    ca_file: Vec<PathBuf>,
    /// Offer only HTTP/1.1 (no HTTP/2) in TLS' ALPN.
    #[arg(long)]
    http1: bool,
}

/// Parses `500ms`, `10s`, `2m`, `1.5s`; a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration (e.g. 500ms, 10s, 2m)"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => return Err(format!("{text:?}: unknown unit {other:?} (ms, s, m, h)")),
    };
    if !seconds.is_finite() || !(0.0..=86_400.0).contains(&seconds) {
        return Err(format!("{text:?} is out of range (0 to 24 h)"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_resolver(text: &str) -> Result<SocketAddr, String> {
    let t = text.trim();
    if let Ok(ip) = t
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, 53));
    }
    t.parse::<SocketAddr>()
        .map_err(|_| format!("--resolver {text:?}: expected an IP address or IP:PORT"))
}

/// The options of a command line, or a usage error.
pub fn options(args: &ProbeArgs) -> Result<(ProbeTarget, ProbeOptions), Failure> {
    let target =
        ProbeTarget::parse(&args.url).map_err(|e| Failure::Usage(format!("probe: {e}")))?;
    let resolve = args
        .resolve
        .iter()
        .map(|r| ResolveOverride::parse(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(format!("probe: {e}")))?;
    let resolvers = args
        .resolver
        .iter()
        .map(|r| parse_resolver(r))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| Failure::Usage(format!("probe: {e}")))?;
    if args.no_system_dns && resolvers.is_empty() {
        return Err(Failure::Usage(
            "probe: --no-system-dns needs at least one --resolver".into(),
        ));
    }
    if args.timeout.is_zero() {
        return Err(Failure::Usage(
            "probe: --timeout must be more than 0".into(),
        ));
    }
    let mut extra_roots = Vec::new();
    for path in &args.ca_file {
        extra_roots.extend(
            probe::tls::read_ca_file(path)
                .map_err(|e| Failure::Usage(format!("probe: --ca-file {e}")))?,
        );
    }
    let options = ProbeOptions {
        timeout: args.timeout,
        resolve,
        resolvers,
        system_dns: !args.no_system_dns,
        count: args.count,
        concurrency: args.concurrency,
        interval: args.interval,
        upstream: args.upstream.clone(),
        max_redirects: args.max_redirects,
        insecure: args.insecure,
        extra_roots,
        http1_only: args.http1,
        proxy: ProxySettings::from_env(),
        ..ProbeOptions::default()
    };
    Ok((target, options))
}

pub fn run(common: &Common, args: ProbeArgs) -> Result<u8, Failure> {
    if matches!(
        common.format,
        Format::Markdown | Format::Html | Format::Crossplane
    ) {
        return Err(Failure::Usage("probe: --format takes text or json".into()));
    }
    let (target, options) = options(&args)?;
    let report =
        probe::probe_blocking(&target, &options).map_err(|e| Failure::Internal(e.into()))?;
    let (findings, checks) = gwdoctor::rules::probe::findings(&report);
    let lang = common.lang();
    let rendered = match common.format {
        Format::Json => {
            let mut s =
                serde_json::to_string_pretty(&json_report(&report, &findings, &checks, lang))
                    .map_err(|e| Failure::Internal(e.into()))?;
            s.push('\n');
            s
        }
        _ => text(&report, &findings, &checks, &options, lang),
    };
    common.print(&rendered)?;
    Ok(if report.healthy() && findings.is_empty() {
        0
    } else {
        1
    })
}

/// The JSON of `shared/interface.md` (`target`, `healthy`, `findings`, `checks`) plus the
/// probe's facts under `probe`; every string goes through the redactor.
pub fn json_report(
    report: &ProbeReport,
    findings: &[Finding],
    checks: &[Check],
    lang: Lang,
) -> Value {
    let mut facts = serde_json::to_value(report).unwrap_or(Value::Null);
    redact_strings(&mut facts);
    json!({
        "target": report.target,
        "healthy": report.healthy() && findings.is_empty(),
        "findings": findings.iter().map(|f| finding_json(f, lang)).collect::<Vec<_>>(),
        "checks": checks.iter().map(check_json).collect::<Vec<_>>(),
        "probe": facts,
    })
}

fn redact_strings(value: &mut Value) {
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(r) = redact(s) {
                *s = r;
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact_strings),
        Value::Object(map) => map.values_mut().for_each(redact_strings),
        _ => {}
    }
}

/// The interface's own words, in both languages.
fn t(lang: Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// The text report: DNS, then each shown request with its waterfall, the counts of a
/// repeated run, the proxy and upstream comparisons, the findings and the checks.
pub fn text(
    report: &ProbeReport,
    findings: &[Finding],
    checks: &[Check],
    options: &ProbeOptions,
    lang: Lang,
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        styled(BOLD, "gwdoctor probe"),
        redact(&report.target)
    );
    for note in &report.notes {
        let _ = writeln!(out, "  {}", styled(DIM, &redact(note)));
    }
    if let Some(dns) = &report.dns {
        let _ = writeln!(out, "\n{}  {}", styled(BOLD, "DNS"), dns.host);
        for a in &dns.answers {
            let result = match (&a.failure, a.addresses.is_empty()) {
                (Some(f), true) => styled(CAUSE, &f.detail),
                _ => {
                    let mut s = address_list(&a.addresses);
                    if a.cname_chain.len() > 1 {
                        s = format!("{} → {s}", a.cname_chain[1..].join(" → "));
                    }
                    if let Some(ttl) = address_ttl(a) {
                        s.push_str(&format!("  TTL {ttl}s"));
                    }
                    s
                }
            };
            let _ = writeln!(
                out,
                "  {:<30} {result}  {}",
                a.label,
                styled(DIM, &format!("{:.1} ms", a.ms))
            );
        }
    } else if !report.addresses.is_empty() {
        let _ = writeln!(
            out,
            "\n{}  {} ({})",
            styled(BOLD, t(lang, "Address", "地址")),
            report
                .addresses
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", "),
            report.addresses_from
        );
    }
    for r in shown_requests(&report.requests) {
        request_text(&mut out, r, lang);
    }
    if let Some(stats) = &report.stats {
        stats_text(&mut out, stats, options, lang);
    }
    if let Some(proxy) = &report.proxy {
        let _ = writeln!(
            out,
            "\n{}  {}",
            styled(BOLD, t(lang, "Proxy", "代理")),
            redact(&proxy.proxy)
        );
        if let Some(direct) = &proxy.direct {
            let _ = writeln!(
                out,
                "  {}: {}",
                t(lang, "direct, without the proxy", "不经代理直连"),
                outcome_text(direct)
            );
        }
    }
    if let Some(up) = &report.upstream {
        let _ = writeln!(
            out,
            "\n{}  {}",
            styled(BOLD, t(lang, "Upstream, directly", "直连上游")),
            redact(&up.url)
        );
        if let Some(e) = &up.error {
            let _ = writeln!(out, "  {}", styled(CAUSE, e));
        }
        if let Some(f) = up.dns.as_ref().and_then(|d| d.failure()) {
            let _ = writeln!(out, "  {}", styled(CAUSE, &f.detail));
        }
        for r in &up.requests {
            request_text(&mut out, r, lang);
        }
    }
    let _ = writeln!(out);
    if findings.is_empty() {
        let verdict = if report.healthy() {
            t(lang, "No problem found.", "未发现问题。")
        } else {
            t(
                lang,
                "The request failed, but the probe alone cannot name a cause; see the checks.",
                "请求失败，但仅凭探测无法确定原因；请查看下面的检查结果。",
            )
        };
        let _ = writeln!(out, "{}", styled(BOLD, verdict));
    } else {
        let _ = writeln!(out, "{}", styled(BOLD, t(lang, "Findings", "发现")));
        for f in findings {
            finding_text(&mut out, f, lang);
        }
    }
    let _ = writeln!(out, "\n{}", styled(BOLD, t(lang, "Checks", "检查")));
    checks_text(&mut out, checks);
    out
}

/// The requests worth a detailed block: the first to each address, then the first of each
/// other outcome (at most 5 more).
fn shown_requests(requests: &[RequestReport]) -> Vec<&RequestReport> {
    let mut shown: Vec<&RequestReport> = Vec::new();
    let mut addresses = Vec::new();
    let mut outcomes = Vec::new();
    for r in requests {
        if !addresses.contains(&r.address) {
            addresses.push(r.address);
            outcomes.push(r.outcome_label());
            shown.push(r);
        }
    }
    let mut more = 0;
    for r in requests {
        let label = r.outcome_label();
        if more < 5 && !outcomes.contains(&label) {
            outcomes.push(label);
            shown.push(r);
            more += 1;
        }
    }
    shown.sort_by_key(|r| r.seq);
    shown
}

/// `502 Bad Gateway from nginx/1.22.1`, or the failure.
fn outcome_text(r: &RequestReport) -> String {
    let Some(hop) = r.last() else {
        return "-".into();
    };
    let http = hop.http.as_ref().map(|h| {
        let by = producer_text(&h.fingerprint);
        format!("{} {} {}{by}", h.version, h.status, h.reason)
    });
    match (&hop.failure, http) {
        (Some(f), Some(h)) => format!("{h}, then {} ({})", styled(CAUSE, f.kind.name()), f.detail),
        (Some(f), None) => format!("{} ({})", styled(CAUSE, f.kind.name()), f.detail),
        (None, Some(h)) => h,
        (None, None) => "-".into(),
    }
}

fn producer_text(fp: &Fingerprint) -> String {
    match (&fp.page, &fp.front) {
        (Some(page), Some(front)) if fp.passed_through() => format!(
            " — {} {}, {} {}",
            styled(PRODUCT, &page.label()),
            "page",
            "passed on by",
            styled(PRODUCT, &front.label())
        ),
        (Some(page), _) => format!(" — from {}", styled(PRODUCT, &page.label())),
        (None, Some(front)) => format!(" — from {}", styled(PRODUCT, &front.label())),
        (None, None) => String::new(),
    }
}

/// The width of the waterfall's bars.
const BAR: usize = 40;

fn request_text(out: &mut String, r: &RequestReport, lang: Lang) {
    let address = r
        .address
        .map(|a| a.to_string())
        .unwrap_or_else(|| t(lang, "(through the proxy)", "（经代理）").to_string());
    let _ = writeln!(
        out,
        "\n{} #{}  {}  {}",
        styled(BOLD, t(lang, "Request", "请求")),
        r.seq + 1,
        address,
        outcome_text(r)
    );
    for (i, hop) in r.hops.iter().enumerate() {
        if r.hops.len() > 1 {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                t(lang, "hop", "跳转"),
                i + 1,
                redact(&hop.url)
            );
        }
        waterfall(out, hop);
        if let Some(tls) = &hop.tls {
            let mut parts: Vec<String> = [
                tls.version.clone(),
                tls.cipher.clone(),
                tls.alpn.as_ref().map(|a| format!("ALPN {a}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            if let Some(leaf) = tls.chain.first() {
                parts.push(format!(
                    "{} [{}], {} {}, {} {} ({} {})",
                    leaf.subject,
                    leaf.names.join(", "),
                    t(lang, "issuer", "签发者"),
                    leaf.issuer,
                    t(lang, "expires", "到期"),
                    leaf.not_after,
                    leaf.days_left,
                    t(lang, "days", "天")
                ));
            }
            let verdict = if tls.verified {
                styled(DIM, t(lang, "verified", "验证通过"))
            } else {
                styled(
                    CAUSE,
                    &format!(
                        "{} ({})",
                        t(lang, "NOT verified", "验证失败"),
                        tls.verify_kind.map(|k| k.name()).unwrap_or("?")
                    ),
                )
            };
            let _ = writeln!(out, "  TLS   {}; {verdict}", parts.join(", "));
        }
        if let Some(h) = &hop.http {
            let interesting = [
                "server",
                "via",
                "location",
                "content-type",
                "content-length",
                "x-cache",
                "cf-ray",
                "x-served-by",
            ];
            let headers: Vec<String> = h
                .headers
                .iter()
                .filter(|(k, _)| interesting.contains(&k.to_ascii_lowercase().as_str()))
                .map(|(k, v)| format!("{k}: {}", redact(v)))
                .collect();
            let _ = writeln!(
                out,
                "  HTTP  {} {} {}; {}; {} {}{}",
                h.version,
                h.status,
                h.reason,
                headers.join("; "),
                h.body_bytes,
                t(lang, "body bytes", "字节正文"),
                if h.body_capped {
                    t(lang, " (stopped at the bound)", "（达到上限后停止读取）")
                } else {
                    ""
                }
            );
            if let Some(page) = h.fingerprint.page_match() {
                let _ = writeln!(
                    out,
                    "  {}  {} ({}{})",
                    t(lang, "page", "页面"),
                    styled(
                        PRODUCT,
                        &h.fingerprint
                            .page
                            .as_ref()
                            .map(|p| p.label())
                            .unwrap_or_default()
                    ),
                    page.signature,
                    if page.causes.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", page.causes.join(", "))
                    }
                );
            }
        }
    }
}

/// One line per phase, each bar starting where the previous one ended (as httpstat draws it).
fn waterfall(out: &mut String, hop: &Exchange) {
    let t = &hop.timings;
    let phases = [
        ("dns", t.dns_ms),
        ("connect", t.connect_ms),
        ("proxy", t.proxy_ms),
        ("tls", t.tls_ms),
        ("wait", t.wait_ms),
        ("transfer", t.transfer_ms),
    ];
    let total = phases
        .iter()
        .filter_map(|(_, v)| *v)
        .sum::<f64>()
        .max(t.total_ms)
        .max(0.001);
    let mut at = 0.0;
    for (name, value) in phases {
        let Some(v) = value else { continue };
        let start = ((at / total) * BAR as f64).round() as usize;
        let width = (((v / total) * BAR as f64).round() as usize)
            .max(1)
            .min(BAR - start.min(BAR - 1));
        let start = start.min(BAR - width);
        let bar = format!(
            "{}{}{}",
            " ".repeat(start),
            "█".repeat(width),
            " ".repeat(BAR - start - width)
        );
        let _ = writeln!(out, "  {name:<9}│{}│ {:>9.1} ms", styled(DIM, &bar), v);
        at += v;
    }
    let _ = writeln!(
        out,
        "  {:<9} {} {:>9.1} ms",
        "total",
        " ".repeat(BAR),
        t.total_ms
    );
}

fn stats_text(out: &mut String, s: &Stats, options: &ProbeOptions, lang: Lang) {
    let _ = writeln!(
        out,
        "\n{}  {} {} ({} {}), {:.0} ms, {}/s",
        styled(BOLD, t(lang, "Repeated", "重复请求")),
        s.requests,
        t(lang, "requests", "个请求"),
        options.concurrency,
        t(lang, "at once", "并发"),
        s.wall_ms,
        s.rate_per_s
    );
    let counts = |m: Vec<(String, usize)>| {
        m.into_iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join("   ")
    };
    if !s.statuses.is_empty() {
        let _ = writeln!(
            out,
            "  {:<12}{}",
            t(lang, "statuses", "状态码"),
            counts(
                s.statuses
                    .iter()
                    .map(|(k, v)| (k.to_string(), *v))
                    .collect()
            )
        );
    }
    if !s.failures.is_empty() {
        let _ = writeln!(
            out,
            "  {:<12}{}",
            t(lang, "failures", "失败"),
            styled(
                CAUSE,
                &counts(s.failures.iter().map(|(k, v)| (k.clone(), *v)).collect())
            )
        );
    }
    if let Some(l) = &s.latency {
        let _ = writeln!(
            out,
            "  {:<12}p50 {:.1} ms   p95 {:.1} ms   p99 {:.1} ms   (min {:.1}, max {:.1}, mean {:.1})",
            t(lang, "latency", "延迟"),
            l.p50_ms,
            l.p95_ms,
            l.p99_ms,
            l.min_ms,
            l.max_ms,
            l.mean_ms
        );
        let most = s
            .histogram
            .iter()
            .map(|b| b.count)
            .max()
            .unwrap_or(1)
            .max(1);
        for b in s.histogram.iter().filter(|b| b.count > 0) {
            let label = match b.up_to_ms {
                Some(ms) => format!("≤ {ms} ms"),
                None => format!(
                    "> {} ms",
                    gwdoctor::collect::probe::stats::BUCKETS_MS
                        .last()
                        .copied()
                        .unwrap_or(0.0)
                ),
            };
            let bar = "█".repeat((b.count * 30).div_ceil(most));
            let _ = writeln!(out, "    {label:>12} {} {}", styled(DIM, &bar), b.count);
        }
    }
    for a in &s.addresses {
        let outcomes = a
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            out,
            "  {:<12}{}  {}/{} {}  ({outcomes})",
            t(lang, "address", "地址"),
            a.address,
            a.healthy,
            a.requests,
            t(lang, "healthy", "正常")
        );
    }
    if let Some(o) = &s.overhead {
        let _ = writeln!(
            out,
            "  {:<12}{} {:.0} ms ({:.0} µs {}), {} {:.1} MiB",
            t(lang, "overhead", "自身开销"),
            t(lang, "CPU", "CPU"),
            o.cpu_ms,
            o.cpu_per_request_us,
            t(lang, "per request", "每请求"),
            t(lang, "peak memory", "内存峰值"),
            o.max_rss_kib as f64 / 1024.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("3 weeks").is_err());
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("99999h").is_err());
    }

    #[test]
    fn resolvers() {
        assert_eq!(
            parse_resolver("127.0.0.53").unwrap().to_string(),
            "127.0.0.53:53"
        );
        assert_eq!(parse_resolver("127.0.0.1:5353").unwrap().port(), 5353);
        assert_eq!(parse_resolver("::1").unwrap().to_string(), "[::1]:53");
        assert!(parse_resolver("dns.example").is_err());
    }
}
