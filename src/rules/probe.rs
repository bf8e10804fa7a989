//! Findings from a probe: the outside view judged.
//!
//! The rules read a [`ProbeReport`] (facts only) and name causes of the catalog, each with the
//! probe step it rests on and a confidence that says how far the outside view can see:
//!
//! | what the probe saw | cause |
//! |---|---|
//! | every source says NXDOMAIN | `dns-nxdomain` |
//! | SERVFAIL / REFUSED / no answer | `dns-failure` |
//! | the system and a resolver (or two resolvers) give different addresses, or the system fails where a resolver answers | `client-dns-mismatch` |
//! | the site's own port refuses | `gateway-down` (the front hop is not listening) |
//! | the `--upstream` port refuses | `upstream-refused` |
//! | expired, not yet valid, wrong-name or untrusted certificate | `site-cert-invalid` |
//! | an edge's page that blames the origin (Cloudflare 52x, CloudFront) | `edge-origin-error` + the page's own causes (521 → `upstream-refused`) |
//! | an edge's own error page | `edge-error` |
//! | an error page of another product than the one the headers name | `upstream-5xx-passthrough` |
//! | some addresses fail, others do not (or some requests of one address) | `partial-backend-failure` |
//! | through the proxy it fails, directly it works | `client-proxy` |
//!
//! A gateway's own generic error page (nginx's 502) cannot say which of its causes it was: those
//! findings stay below 50 % and point at the gateway's error log.

use crate::collect::probe::dns::{AnswerSource, DnsAnswer};
use crate::collect::probe::fingerprint::{Fingerprint, PageMatch};
use crate::collect::probe::stats::Stats;
use crate::collect::probe::tls::{TlsReport, EXPIRY_WARNING_DAYS};
use crate::collect::probe::{
    Exchange, FailureKind, Phase, ProbeReport, RequestReport, UpstreamReport,
};
use crate::findings::{rank, Check, Evidence, Finding, Status};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Products whose pages are an edge's (a CDN or a cloud load balancer in front of the origin).
const EDGE_PRODUCTS: &[&str] = &["cloudflare", "aws-elb", "google", "varnish", "heroku"];

/// Products that log the real reason of their error page in an error log gwdoctor reads.
const LOGGING_GATEWAYS: &[&str] = &["nginx", "openresty", "apache"];

fn ev(location: impl Into<String>, detail: impl Into<String>) -> Evidence {
    Evidence::new("probe", location, detail)
}

fn round(ms: f64) -> u64 {
    ms.max(0.0).round() as u64
}

/// The findings and checks of a probe, findings ranked (most likely first).
pub fn findings(report: &ProbeReport) -> (Vec<Finding>, Vec<Check>) {
    let mut findings = Vec::new();
    let mut checks = Vec::new();
    if let Some(dns) = &report.dns {
        dns_rules(
            &report.host,
            &dns.answers,
            report,
            &mut findings,
            &mut checks,
        );
    }
    let through_proxy = report.proxy.is_some();
    request_checks(&report.requests, report, &mut checks);
    request_rules(&report.requests, through_proxy, report, &mut findings);
    if let Some(stats) = &report.stats {
        stats_rules(stats, &mut findings, &mut checks);
    }
    if let Some(proxy) = &report.proxy {
        proxy_rules(report, proxy, &mut findings, &mut checks);
    }
    if let Some(up) = &report.upstream {
        upstream_rules(report, up, &mut findings, &mut checks);
    }
    (rank(findings), checks)
}

// ─────────────────────────────────────────── DNS ───────────────────────────────────────────

fn dns_rules(
    host: &str,
    answers: &[DnsAnswer],
    report: &ProbeReport,
    findings: &mut Vec<Finding>,
    checks: &mut Vec<Check>,
) {
    for a in answers {
        let (status, detail) = match &a.failure {
            None => {
                let mut d = address_list(&a.addresses);
                if a.cname_chain.len() > 1 {
                    d = format!("{} → {d}", a.cname_chain.join(" → "));
                }
                if let Some(ttl) = address_ttl(a) {
                    d.push_str(&format!(" (TTL {ttl} s)"));
                }
                (Status::Pass, d)
            }
            Some(f) if f.kind == FailureKind::DnsNoAddress && !a.addresses.is_empty() => {
                (Status::Pass, f.detail.clone())
            }
            Some(f) => (Status::Fail, f.detail.clone()),
        };
        checks.push(Check::new(
            format!("dns {}", a.label),
            status,
            detail,
            round(a.ms),
        ));
    }
    let location = |a: &DnsAnswer| format!("probe dns {}", a.label);
    let resolved: Vec<&DnsAnswer> = answers.iter().filter(|a| !a.addresses.is_empty()).collect();
    let failed: Vec<&DnsAnswer> = answers
        .iter()
        .filter(|a| a.addresses.is_empty() && a.failure.is_some())
        .collect();
    let kind_of = |a: &DnsAnswer| a.failure.as_ref().map(|f| f.kind);

    // Nobody can resolve it.
    if resolved.is_empty() && !failed.is_empty() {
        let nx: Vec<&&DnsAnswer> = failed
            .iter()
            .filter(|a| kind_of(a) == Some(FailureKind::DnsNxdomain))
            .collect();
        let evidence: Vec<Evidence> = failed
            .iter()
            .map(|a| {
                ev(
                    location(a),
                    a.failure
                        .as_ref()
                        .map(|f| f.detail.clone())
                        .unwrap_or_default(),
                )
            })
            .collect();
        if !nx.is_empty() {
            let confidence = if nx.len() == failed.len() { 0.95 } else { 0.75 };
            findings.push(
                Finding::new("dns-nxdomain", confidence, evidence.clone()).confirm(format!(
                    "dig +short {host} @1.1.1.1; dig NS {}",
                    parent_domain(host)
                )),
            );
        }
        if nx.len() < failed.len() {
            findings.push(
                Finding::new(
                    "dns-failure",
                    if nx.is_empty() { 0.9 } else { 0.6 },
                    evidence,
                )
                .confirm(format!("dig {host} +trace")),
            );
        }
        return;
    }

    // Some sources resolve it and some fail.
    for a in &failed {
        let Some(f) = &a.failure else { continue };
        match (a.source, f.kind) {
            // The client's own resolver says "no such name" while DNS has it.
            (AnswerSource::System, FailureKind::DnsNxdomain) => findings.push(
                Finding::new(
                    "client-dns-mismatch",
                    0.75,
                    vec![
                        ev(location(a), f.detail.clone()),
                        ev(
                            location(resolved[0]),
                            format!(
                                "{} resolves {host} to {}",
                                resolved[0].label,
                                address_list(&resolved[0].addresses)
                            ),
                        ),
                    ],
                )
                .confirm(format!("getent ahosts {host}; grep -i {host} /etc/hosts")),
            ),
            (_, FailureKind::DnsServfail | FailureKind::DnsTimeout | FailureKind::DnsOther) => {
                findings.push(
                    Finding::new("dns-failure", 0.5, vec![ev(location(a), f.detail.clone())])
                        .confirm(format!(
                            "dig {host} @{}",
                            a.server.as_deref().unwrap_or("RESOLVER")
                        )),
                )
            }
            _ => {}
        }
    }

    // Sources that disagree about the addresses.
    let requests_fail = !report.requests.is_empty() && report.requests.iter().all(|r| !r.healthy());
    for (i, a) in resolved.iter().enumerate() {
        for b in resolved.iter().skip(i + 1) {
            let sa: BTreeSet<IpAddr> = a.addresses.iter().copied().collect();
            let sb: BTreeSet<IpAddr> = b.addresses.iter().copied().collect();
            if sa == sb {
                continue;
            }
            let disjoint = sa.is_disjoint(&sb);
            let mut confidence: f64 = if disjoint { 0.6 } else { 0.3 };
            if a.source == AnswerSource::System || b.source == AnswerSource::System {
                confidence += 0.1;
            }
            if disjoint && requests_fail {
                confidence += 0.15;
            }
            findings.push(
                Finding::new(
                    "client-dns-mismatch",
                    confidence,
                    vec![
                        ev(
                            location(a),
                            format!(
                                "{} resolves {host} to {}",
                                a.label,
                                address_list(&a.addresses)
                            ),
                        ),
                        ev(
                            location(b),
                            format!(
                                "{} resolves {host} to {}",
                                b.label,
                                address_list(&b.addresses)
                            ),
                        ),
                    ],
                )
                .confirm(format!("getent ahosts {host}; dig +short {host} @1.1.1.1")),
            );
        }
    }
}

/// The shortest TTL of an answer's address records (A, AAAA), in seconds: how long a cache
/// may keep the addresses.
pub fn address_ttl(answer: &DnsAnswer) -> Option<u32> {
    answer
        .records
        .iter()
        .filter(|r| r.rtype == "A" || r.rtype == "AAAA")
        .map(|r| r.ttl)
        .min()
}

/// Addresses as the reports list them: `192.0.2.1, 2001:db8::1`.
pub fn address_list(addrs: &[IpAddr]) -> String {
    addrs
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parent_domain(host: &str) -> &str {
    let parts: Vec<&str> = host.trim_end_matches('.').rsplitn(3, '.').collect();
    if parts.len() >= 2 {
        let keep = parts[0].len() + parts[1].len() + 1;
        &host[host.len() - keep..]
    } else {
        host
    }
}

// ─────────────────────────────────────────── requests ───────────────────────────────────────────

/// Checks for the first request to each address (the others are summed up by the stats).
fn request_checks(requests: &[RequestReport], report: &ProbeReport, checks: &mut Vec<Check>) {
    let mut seen = BTreeSet::new();
    for r in requests {
        if !seen.insert(r.address.map(|a| a.to_string()).unwrap_or_default()) {
            continue;
        }
        for hop in &r.hops {
            exchange_checks(hop, "", checks);
        }
    }
    let _ = report;
}

fn exchange_checks(hop: &Exchange, prefix: &str, checks: &mut Vec<Check>) {
    let t = &hop.timings;
    if let Some(connect) = &hop.connect {
        checks.push(Check::new(
            format!("{prefix}tcp {}", connect.address),
            Status::Pass,
            format!("connected in {:.1} ms", t.connect_ms.unwrap_or(0.0)),
            round(t.connect_ms.unwrap_or(0.0)),
        ));
    }
    if let Some(tls) = &hop.tls {
        let (status, detail) = tls_summary(tls);
        let status = match &hop.failure {
            Some(f) if f.phase == Phase::Tls => Status::Fail,
            _ => status,
        };
        let detail = match &hop.failure {
            Some(f) if f.phase == Phase::Tls => f.detail.clone(),
            _ => detail,
        };
        checks.push(Check::new(
            format!("{prefix}tls {}", tls.server_name),
            status,
            detail,
            round(t.tls_ms.unwrap_or(0.0)),
        ));
    }
    match (&hop.failure, &hop.http) {
        (Some(f), _) if f.phase == Phase::Tls => {}
        (Some(f), http) => {
            let name = match f.phase {
                Phase::Dns => format!("{prefix}dns"),
                Phase::Connect => format!(
                    "{prefix}tcp {}",
                    hop.address.map(|a| a.to_string()).unwrap_or_default()
                ),
                Phase::Proxy => format!("{prefix}proxy"),
                _ => format!("{prefix}http {}", hop.url),
            };
            let status_part = http
                .as_ref()
                .map(|h| format!("{} {}, then ", h.status, h.reason))
                .unwrap_or_default();
            checks.push(Check::new(
                name,
                Status::Fail,
                format!("{status_part}{}: {}", f.kind.name(), f.detail),
                round(t.total_ms),
            ));
        }
        (None, Some(h)) => {
            let status = match h.status {
                200..=399 => Status::Pass,
                400..=499 => Status::Warn,
                _ => Status::Fail,
            };
            let by = h
                .fingerprint
                .producer()
                .map(|p| format!(" from {}", p.label()))
                .unwrap_or_default();
            checks.push(Check::new(
                format!("{prefix}http {}", hop.url),
                status,
                format!(
                    "{} {} {}{by}, first byte after {:.1} ms, {} body bytes",
                    h.version,
                    h.status,
                    h.reason,
                    t.wait_ms.unwrap_or(0.0),
                    h.body_bytes
                ),
                round(t.total_ms),
            ));
        }
        (None, None) => {}
    }
}

fn tls_summary(tls: &TlsReport) -> (Status, String) {
    let mut parts = Vec::new();
    if let Some(v) = &tls.version {
        parts.push(v.clone());
    }
    if let Some(c) = &tls.cipher {
        parts.push(c.clone());
    }
    if let Some(a) = &tls.alpn {
        parts.push(format!("ALPN {a}"));
    }
    let days = tls.leaf_days_left();
    if let Some(d) = days {
        parts.push(format!("certificate expires in {d} days"));
    }
    let status = if !tls.verified {
        parts.push(format!(
            "NOT VERIFIED: {}",
            tls.verify_error
                .clone()
                .unwrap_or_else(|| "no certificate".into())
        ));
        Status::Fail
    } else if days.is_some_and(|d| d < EXPIRY_WARNING_DAYS) {
        Status::Warn
    } else {
        Status::Pass
    };
    (status, parts.join(", "))
}

/// The probe step of an exchange, as evidence location.
fn step(hop: &Exchange, phase: Phase) -> String {
    match phase {
        Phase::Dns => "probe dns".to_string(),
        Phase::Connect => format!(
            "probe tcp {}",
            hop.address.map(|a| a.to_string()).unwrap_or_default()
        ),
        Phase::Proxy => format!("probe proxy {}", hop.proxy.clone().unwrap_or_default()),
        Phase::Tls => format!(
            "probe tls {}",
            hop.tls
                .as_ref()
                .map(|t| t.server_name.clone())
                .unwrap_or_default()
        ),
        _ => format!("probe http {}", hop.url),
    }
}

/// "3 of 20 requests" when there were several.
fn share(count: usize, total: usize) -> String {
    if total > 1 {
        format!(" ({count} of {total} requests)")
    } else {
        String::new()
    }
}

fn request_rules(
    requests: &[RequestReport],
    through_proxy: bool,
    report: &ProbeReport,
    findings: &mut Vec<Finding>,
) {
    let total = requests.len();
    let host = &report.host;
    let port = report.port;

    // Certificates: from every TLS report (under --insecure the handshake went on).
    let mut cert_seen = BTreeSet::new();
    for r in requests {
        for hop in &r.hops {
            if let Some(tls) = &hop.tls {
                if let Some(kind) = tls.verify_kind {
                    if cert_seen.insert((tls.server_name.clone(), kind)) {
                        let detail = match &hop.failure {
                            Some(f) if f.kind.is_certificate() => f.detail.clone(),
                            _ => tls.verify_error.clone().unwrap_or_default(),
                        };
                        let confidence = if kind == FailureKind::CertOther {
                            0.7
                        } else {
                            0.95
                        };
                        let mut evidence = vec![ev(
                            format!("probe tls {}", tls.server_name),
                            format!("{}: {detail}", kind.name()),
                        )];
                        if let Some(leaf) = tls.chain.first() {
                            evidence.push(ev(
                                format!("probe tls {}", tls.server_name),
                                format!(
                                    "leaf: subject {}, issuer {}, names [{}], valid {} .. {}",
                                    leaf.subject,
                                    leaf.issuer,
                                    leaf.names.join(", "),
                                    leaf.not_before,
                                    leaf.not_after
                                ),
                            ));
                        }
                        findings.push(Finding::new("site-cert-invalid", confidence, evidence).confirm(format!(
                            "openssl s_client -connect {}:{port} -servername {} </dev/null | openssl x509 -noout -subject -issuer -dates -ext subjectAltName",
                            tls.server_name, tls.server_name
                        )));
                    }
                }
            }
        }
    }

    // Failures, grouped by kind: one finding per kind, the first occurrence as its evidence.
    let mut kinds: Vec<FailureKind> = Vec::new();
    for r in requests {
        if let Some(f) = r.failure() {
            if !kinds.contains(&f.kind) {
                kinds.push(f.kind);
            }
        }
    }
    for kind in kinds {
        let failing: Vec<&RequestReport> = requests
            .iter()
            .filter(|r| r.failure().map(|f| f.kind) == Some(kind))
            .collect();
        let first = failing[0];
        let hop = first.last().expect("a failure has a hop");
        let f = hop.failure.as_ref().expect("filtered on it");
        let evidence = vec![ev(
            step(hop, f.phase),
            format!(
                "{}: {}{}",
                kind.name(),
                f.detail,
                share(failing.len(), total)
            ),
        )];
        // Through a proxy, a connect or tunnel failure is the proxy's.
        if through_proxy && matches!(f.phase, Phase::Connect | Phase::Proxy) {
            continue; // judged with the direct attempt in proxy_rules
        }
        let (cause, confidence, confirm): (&str, f64, String) = match kind {
            FailureKind::Refused => (
                "gateway-down",
                0.85,
                format!("ss -ltnp 'sport = :{port}'   # on {host}: does the gateway listen?"),
            ),
            FailureKind::ConnectTimeout => (
                "firewall-blocked",
                0.5,
                format!(
                    "ping -c 3 {host}; nc -vz -w 3 {host} {port}   # from another network, too"
                ),
            ),
            FailureKind::Unreachable => (
                "upstream-unreachable",
                0.6,
                format!(
                    "ip route get {}",
                    hop.address
                        .map(|a| a.ip().to_string())
                        .unwrap_or_else(|| host.clone())
                ),
            ),
            FailureKind::NoResponse | FailureKind::Trickle | FailureKind::Stalled => (
                "upstream-read-timeout",
                if kind == FailureKind::NoResponse {
                    0.5
                } else {
                    0.35
                },
                format!(
                    "gwdoctor probe {} --timeout 120s   # wait for the gateway's own 504",
                    report.target
                ),
            ),
            FailureKind::Reset => (
                "upstream-reset",
                0.4,
                "gwdoctor logs /var/log/nginx/error.log".to_string(),
            ),
            FailureKind::EmptyReply | FailureKind::Truncated => (
                "upstream-premature-close",
                0.4,
                "gwdoctor logs /var/log/nginx/error.log".to_string(),
            ),
            FailureKind::NotHttp
            | FailureKind::InvalidResponse
            | FailureKind::InvalidChunked
            | FailureKind::NeverCloses => (
                "upstream-invalid-response",
                if kind == FailureKind::NeverCloses {
                    0.4
                } else {
                    0.55
                },
                format!("curl -sv --http1.1 {} -o /dev/null", report.target),
            ),
            FailureKind::HeadTooBig | FailureKind::TooManyHeaders => (
                "upstream-header-too-big",
                0.5,
                format!("curl -sI {} | wc -c", report.target),
            ),
            FailureKind::ProtocolMismatch => (
                "protocol-mismatch",
                0.5,
                format!("curl -sv {} -o /dev/null", report.target),
            ),
            _ => continue, // certificate kinds above; the rest stay as failed checks
        };
        findings.push(Finding::new(cause, confidence, evidence).confirm(confirm));
    }

    // Error statuses: who produced them, and what their pages say.
    let mut pages_seen = BTreeSet::new();
    for r in requests {
        let Some(hop) = r.last() else { continue };
        let Some(http) = &hop.http else { continue };
        if http.status < 500
            || !pages_seen.insert((
                http.status,
                http.fingerprint.page.as_ref().map(|p| p.signature.clone()),
            ))
        {
            continue;
        }
        let count = requests
            .iter()
            .filter(|o| o.final_status() == Some(http.status))
            .count();
        let location = format!("probe http {}", hop.url);
        let said = format!("{} {}{}", http.status, http.reason, share(count, total));
        page_findings(
            &http.fingerprint,
            &location,
            &said,
            http.body_bytes,
            report,
            findings,
        );
    }
}

/// What an error page says: the edge's own failure or the origin's, the hop that produced it,
/// and the causes its signature names.
fn page_findings(
    fp: &Fingerprint,
    location: &str,
    said: &str,
    body_bytes: u64,
    report: &ProbeReport,
    findings: &mut Vec<Finding>,
) {
    let front = fp.front.as_ref().map(|h| h.label());
    let Some(page) = fp.page_match() else {
        // No page recognised: a known front hop whose own page this is not.
        if let (Some(front), true) = (&front, body_bytes > 0) {
            let product = fp.front.as_ref().map(|h| h.product.as_str()).unwrap_or("");
            if LOGGING_GATEWAYS.contains(&product) {
                findings.push(
                    Finding::new(
                        "upstream-5xx-passthrough",
                        0.45,
                        vec![ev(location, format!("{said}: the headers name {front}, but the body is not {product}'s own error page"))],
                    )
                    .confirm(format!("gwdoctor probe {} --upstream HOST:PORT   # the app, directly", report.target)),
                );
            }
        }
        return;
    };
    let producer = fp
        .producer()
        .map(|h| h.label())
        .unwrap_or_else(|| page.product.clone());
    let seen = format!("{said} from {producer} (signature {})", page.signature);
    let mut evidence = vec![ev(location, seen.clone())];
    if let Some(front) = &front {
        if fp.passed_through() {
            evidence.push(ev(
                location,
                format!("the response headers name {front}: the page came from behind it"),
            ));
        }
    }
    let is_edge = EDGE_PRODUCTS.contains(&page.product.as_str());
    let mut causes: Vec<&str> = page.causes.iter().map(String::as_str).collect();
    if fp.passed_through() && !causes.contains(&"upstream-5xx-passthrough") {
        findings.push(
            Finding::new("upstream-5xx-passthrough", 0.8, evidence.clone()).confirm(format!(
                "gwdoctor probe {} --upstream HOST:PORT   # the hop behind, directly",
                report.target
            )),
        );
    }
    // The edge's verdict about itself or the origin is what the page states: high confidence.
    for edge_cause in ["edge-origin-error", "edge-error"] {
        if is_edge && causes.contains(&edge_cause) {
            findings.push(
                Finding::new(edge_cause, 0.85, evidence.clone()).confirm(format!(
                    "gwdoctor probe {} --upstream ORIGIN:443   # the origin, bypassing the edge",
                    report.target
                )),
            );
            causes.retain(|c| *c != edge_cause);
        }
    }
    // The page's own causes: a specific page pins its first cause; a generic one only hints.
    let (first, rest) = match page.priority {
        p if p >= 30 => (0.7, 0.4),
        p if p >= 20 => (0.4, 0.25),
        _ => (0.3, 0.2),
    };
    let confirm = page_confirm(page, report);
    for (i, cause) in causes.iter().take(3).enumerate() {
        let confidence = if i == 0 { first } else { rest };
        let mut f = Finding::new(cause, confidence, evidence.clone());
        if let Some(c) = &confirm {
            f = f.confirm(c.clone());
        }
        findings.push(f);
    }
}

fn page_confirm(page: &PageMatch, report: &ProbeReport) -> Option<String> {
    match page.product.as_str() {
        "nginx" | "openresty" => Some("gwdoctor logs /var/log/nginx/error.log   # the line of the same second names the cause".into()),
        "apache" => Some("gwdoctor logs /var/log/apache2/error.log".into()),
        p if EDGE_PRODUCTS.contains(&p) => Some(format!("gwdoctor probe {} --upstream ORIGIN:443", report.target)),
        _ => None,
    }
}

// ─────────────────────────────────────────── repetition ───────────────────────────────────────────

fn stats_rules(stats: &Stats, findings: &mut Vec<Finding>, checks: &mut Vec<Check>) {
    let failed = stats.requests - stats.healthy;
    let latency = stats
        .latency
        .as_ref()
        .map(|l| {
            format!(
                "; p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms",
                l.p50_ms, l.p95_ms, l.p99_ms
            )
        })
        .unwrap_or_default();
    let status = if failed == 0 {
        Status::Pass
    } else if stats.healthy > 0 {
        Status::Warn
    } else {
        Status::Fail
    };
    checks.push(Check::new(
        "requests",
        status,
        format!("{} of {} healthy{latency}", stats.healthy, stats.requests),
        round(stats.wall_ms),
    ));
    if failed == 0 || stats.healthy == 0 {
        return;
    }
    let location = "probe stats";
    let failing: Vec<_> = stats
        .addresses
        .iter()
        .filter(|a| a.failed() * 2 >= a.requests)
        .collect();
    let working: Vec<_> = stats
        .addresses
        .iter()
        .filter(|a| a.healthy * 10 >= a.requests * 9)
        .collect();
    // "127.0.0.2:80: 5 of 10 failed (empty-reply×5)": an address's failures, with their kinds.
    let failures_of = |a: &crate::collect::probe::stats::AddressStats| {
        let outcomes = a
            .outcomes
            .iter()
            .map(|(k, v)| format!("{k}×{v}"))
            .collect::<Vec<_>>()
            .join(", ");
        ev(
            location,
            format!(
                "{}: {} of {} failed ({outcomes})",
                a.address,
                a.failed(),
                a.requests
            ),
        )
    };
    if stats.addresses.len() > 1 && !failing.is_empty() && !working.is_empty() {
        let mut evidence: Vec<Evidence> = failing.iter().copied().map(failures_of).collect();
        evidence.extend(working.iter().map(|a| {
            ev(
                location,
                format!("{}: {} of {} healthy", a.address, a.healthy, a.requests),
            )
        }));
        findings.push(Finding::new("partial-backend-failure", 0.8, evidence));
    } else if stats.requests >= 4 {
        // One address, some requests fail: one server of the pool behind it, most likely.
        let evidence = stats
            .addresses
            .iter()
            .filter(|a| a.failed() > 0)
            .map(failures_of)
            .collect();
        findings.push(
            Finding::new("partial-backend-failure", 0.45, evidence)
                .confirm("gwdoctor logs /var/log/nginx/access.log   # errors per upstream address"),
        );
    }
}

// ─────────────────────────────────────────── proxy ───────────────────────────────────────────

fn proxy_rules(
    report: &ProbeReport,
    proxy: &crate::collect::probe::proxy::ProxyReport,
    findings: &mut Vec<Finding>,
    checks: &mut Vec<Check>,
) {
    let proxied_ok = report.healthy();
    let proxied = report.requests.first();
    let direct_ok = proxy.direct.as_ref().is_some_and(RequestReport::healthy);
    let describe = |r: Option<&RequestReport>| {
        r.map(|r| match (r.failure(), r.final_status()) {
            (Some(f), _) => format!("{}: {}", f.kind.name(), f.detail),
            (None, Some(s)) => {
                let by = r
                    .last()
                    .and_then(|h| h.http.as_ref())
                    .and_then(|h| {
                        h.fingerprint
                            .producer()
                            .map(|p| format!(" from {}", p.label()))
                    })
                    .unwrap_or_default();
                format!("{s}{by}")
            }
            (None, None) => "no answer".into(),
        })
        .unwrap_or_else(|| "not tried (no address)".into())
    };
    let direct_text = describe(proxy.direct.as_ref());
    checks.push(Check::new(
        "direct (no proxy)",
        if direct_ok {
            Status::Pass
        } else {
            Status::Fail
        },
        direct_text.clone(),
        proxy
            .direct
            .as_ref()
            .map(|r| round(r.total_ms()))
            .unwrap_or(0),
    ));
    if !proxied_ok && direct_ok {
        findings.push(
            Finding::new(
                "client-proxy",
                0.85,
                vec![
                    ev(
                        format!("probe proxy {}", proxy.proxy),
                        format!("through the proxy: {}", describe(proxied)),
                    ),
                    ev("probe direct", format!("directly: {direct_text}")),
                ],
            )
            .confirm("env | grep -i _proxy"),
        );
    } else if !proxied_ok && !direct_ok {
        // Both fail: if the proxy itself could not be reached, say so; the site's own failure
        // is judged from the direct attempt.
        if let Some(f) = proxied
            .and_then(RequestReport::failure)
            .filter(|f| matches!(f.phase, Phase::Connect | Phase::Proxy))
        {
            findings.push(
                Finding::new(
                    "client-proxy",
                    0.5,
                    vec![ev(
                        format!("probe proxy {}", proxy.proxy),
                        format!("{}: {}", f.kind.name(), f.detail),
                    )],
                )
                .confirm("env | grep -i _proxy"),
            );
        }
        if let Some(direct) = &proxy.direct {
            request_rules(std::slice::from_ref(direct), false, report, findings);
        }
    }
}

// ─────────────────────────────────────────── upstream ───────────────────────────────────────────

fn upstream_rules(
    report: &ProbeReport,
    up: &UpstreamReport,
    findings: &mut Vec<Finding>,
    checks: &mut Vec<Check>,
) {
    if let Some(e) = &up.error {
        checks.push(Check::new("upstream", Status::Skip, e.clone(), 0));
        return;
    }
    let site_failing = !report.healthy();
    let site_status = report.requests.iter().find_map(RequestReport::final_status);
    if up.requests.is_empty() {
        if let Some(f) = up.dns.as_ref().and_then(|d| d.failure()) {
            checks.push(Check::new(
                format!("upstream {}", up.target),
                Status::Fail,
                f.detail.clone(),
                0,
            ));
            findings.push(Finding::new(
                "upstream-dns-unresolvable",
                0.6,
                vec![ev(format!("probe upstream dns {}", up.target), f.detail)],
            ));
        }
        return;
    }
    for r in &up.requests {
        for hop in &r.hops {
            exchange_checks(hop, "upstream ", checks);
        }
    }
    let Some(r) = up.requests.first() else { return };
    let Some(hop) = r.last() else { return };
    let location = |phase: Phase| format!("probe upstream {} ({})", up.target, phase.name());
    let weight = if site_failing { 1.0 } else { 0.5 };
    if let Some(f) = &hop.failure {
        let cause = match f.kind {
            FailureKind::Refused => Some(("upstream-refused", 0.9)),
            FailureKind::ConnectTimeout => Some(("upstream-connect-timeout", 0.8)),
            FailureKind::Unreachable => Some(("upstream-unreachable", 0.8)),
            FailureKind::Reset => Some(("upstream-reset", 0.8)),
            FailureKind::EmptyReply | FailureKind::Truncated => {
                Some(("upstream-premature-close", 0.8))
            }
            FailureKind::NoResponse | FailureKind::Trickle | FailureKind::Stalled => {
                Some(("upstream-read-timeout", 0.75))
            }
            FailureKind::NotHttp
            | FailureKind::InvalidResponse
            | FailureKind::InvalidChunked
            | FailureKind::NeverCloses => Some(("upstream-invalid-response", 0.8)),
            FailureKind::ProtocolMismatch => Some(("protocol-mismatch", 0.8)),
            FailureKind::HeadTooBig | FailureKind::TooManyHeaders => {
                Some(("upstream-header-too-big", 0.8))
            }
            FailureKind::TlsAlert | FailureKind::TlsIncompatible | FailureKind::TlsOther => {
                Some(("upstream-tls-handshake", 0.75))
            }
            k if k.is_certificate() => Some(("upstream-tls-verify", 0.75)),
            _ => None,
        };
        if let Some((cause, confidence)) = cause {
            let mut evidence = vec![ev(
                location(f.phase),
                format!("{}: {}", f.kind.name(), f.detail),
            )];
            if let Some(s) = site_status {
                evidence.push(ev(
                    format!("probe http {}", report.target),
                    format!("the site answered {s}"),
                ));
            }
            findings.push(Finding::new(cause, confidence * weight, evidence));
        }
        return;
    }
    let Some(http) = &hop.http else { return };
    if http.status >= 500 {
        let mut evidence = vec![ev(
            location(Phase::Head),
            format!(
                "the upstream itself answers {} {}",
                http.status, http.reason
            ),
        )];
        if let Some(s) = site_status {
            evidence.push(ev(
                format!("probe http {}", report.target),
                format!("the site answered {s}"),
            ));
        }
        if site_status.is_some_and(|s| s >= 500) {
            findings.push(Finding::new("upstream-5xx-passthrough", 0.8, evidence));
        }
        let said = format!("{} {} (upstream)", http.status, http.reason);
        page_findings(
            &http.fingerprint,
            &location(Phase::Head),
            &said,
            http.body_bytes,
            report,
            findings,
        );
    } else if site_failing {
        // nginx's default proxy_buffer_size is one memory page (4 KiB or 8 KiB).
        if http.head_bytes > 4096 && site_status == Some(502) {
            findings.push(Finding::new(
                "upstream-header-too-big",
                0.7,
                vec![
                    ev(
                        location(Phase::Head),
                        format!("the upstream's response head is {} bytes", http.head_bytes),
                    ),
                    ev(
                        format!("probe http {}", report.target),
                        "the site answered 502".to_string(),
                    ),
                ],
            ));
        }
        checks.push(Check::new(
            "upstream verdict",
            Status::Warn,
            format!(
                "the upstream answers {} directly while the site fails: the fault is between the gateway and the upstream (address, port, protocol); run `gwdoctor config`",
                http.status
            ),
            0,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parent_domains() {
        assert_eq!(parent_domain("www.example.com"), "example.com");
        assert_eq!(parent_domain("example.com"), "example.com");
        assert_eq!(parent_domain("localhost"), "localhost");
    }
}
