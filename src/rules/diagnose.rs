//! Rules across sources: the correlations no single collector can make, and the ranking of the
//! whole diagnosis.

use super::logs::Correlation;
use crate::collect::logs::scan::ScanResult;
use crate::diagnose::Diagnosis;
use crate::findings::{rank, Evidence, Finding};

/// The upstream-side event that came just before the errors: it is the likely cause, so its
/// finding gains confidence.
pub fn from_correlation(result: &ScanResult, c: &Correlation) -> Finding {
    let file = |i: usize| {
        result
            .files
            .get(i)
            .map_or("?".to_string(), |f| f.path.clone())
    };
    Finding::new(
        c.cause,
        0.9,
        vec![
            Evidence::new(
                "log",
                format!("{}:{}", file(c.cause_line.file), c.cause_line.line),
                c.cause_line.text.clone(),
            ),
            Evidence::new(
                "log",
                format!("{}:{}", file(c.onset_line.file), c.onset_line.line),
                format!(
                    "errors began {} s later: {}",
                    c.onset - c.cause_time,
                    c.onset_line.text
                ),
            ),
        ],
    )
}

/// Merges the findings of every source, adds what only their combination shows, and ranks.
pub fn correlate(mut findings: Vec<Finding>, diagnosis: &Diagnosis) -> Vec<Finding> {
    if let Some(result) = &diagnosis.logs {
        findings.extend(refused_explained(result, diagnosis));
        findings.extend(was_up_then_refused(result));
        if diagnosis.error_log_read {
            findings.extend(passthrough(result));
        }
    }
    if let Some(result) = &diagnosis.logs {
        findings.extend(loopback_unreachable(result));
    }
    rank(findings)
}

/// "No route to host" to a loopback address: routes to 127.0.0.0/8 always exist, so a packet
/// filter answered (REJECT with an ICMP admin-prohibited or host-unreachable).
fn loopback_unreachable(result: &ScanResult) -> Option<Finding> {
    let unreachable = result.tally.causes.get("upstream-unreachable")?;
    let loopback: Vec<&String> = unreachable
        .upstreams
        .keys()
        .filter(|a| a.starts_with("127.") || a.starts_with("[::1]"))
        .collect();
    if loopback.is_empty() {
        return None;
    }
    Some(
        Finding::new(
            "firewall-blocked",
            0.92,
            vec![Evidence::new(
                "error-log",
                format!("upstream {}", loopback[0]),
                format!("{} lines: no route to a loopback address, which always has a route: a firewall rule rejected it", unreachable.primary),
            )],
        )
        .confirm("iptables -L -n -v | grep -i reject; nft list ruleset | grep -i reject"),
    )
}

/// The host's findings describe the whole machine. When the logs name causes of their own, a
/// host finding that does not concern one of the upstreams the logs name (its evidence does
/// not mention their address or port) is a contributing factor at most.
pub fn weigh_host(findings: Vec<Finding>, logs: Option<&ScanResult>) -> Vec<Finding> {
    let Some(result) = logs else { return findings };
    let named = result.tally.causes.values().any(|c| c.primary > 0)
        || result
            .tally
            .access
            .statuses
            .range(500..600)
            .next()
            .is_some();
    if !named {
        return findings;
    }
    let mut marks: Vec<String> = Vec::new();
    for c in result.tally.causes.values() {
        for addr in c.upstreams.keys() {
            marks.push(addr.clone());
            if let Some((_, port)) = host_port(addr) {
                marks.push(format!(":{port}"));
            }
        }
    }
    findings
        .into_iter()
        .map(|mut f| {
            let related = f.evidence.iter().any(|e| {
                marks
                    .iter()
                    .any(|m| e.detail.contains(m.as_str()) || e.location.contains(m.as_str()))
            });
            // Kernel OOM kills and the like name processes, not addresses: keep them whole.
            let direct = f.evidence.iter().any(|e| e.source == "kernel-log");
            if !related && !direct {
                f.confidence *= 0.6;
            }
            f
        })
        .collect()
}

/// Splits `host:port` (`127.0.0.1:8000`, `[::1]:3000`).
fn host_port(addr: &str) -> Option<(&str, u16)> {
    let (host, port) = addr.rsplit_once(':')?;
    Some((
        host.trim_start_matches('[').trim_end_matches(']'),
        port.parse().ok()?,
    ))
}

/// A refused upstream, explained by who listens where on this host: the app on a neighbouring
/// port (port mismatch), on 127.0.0.1 only while the gateway dials another address
/// (listens-localhost), or on the very address the gateway dialled while the gateway was refused
/// (the gateway is in another network namespace: a container).
fn refused_explained(result: &ScanResult, diagnosis: &Diagnosis) -> Vec<Finding> {
    let Some(host) = &diagnosis.host else {
        return Vec::new();
    };
    let Some(refused) = result.tally.causes.get("upstream-refused") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (addr, count) in &refused.upstreams {
        let Some((ip, port)) = host_port(addr) else {
            continue;
        };
        let tcp: Vec<_> = host.listeners.iter().filter(|l| l.port.is_some()).collect();
        let same_port = tcp.iter().find(|l| l.port == Some(port));
        let evidence_line = Evidence::new(
            "error-log",
            format!("upstream {addr}"),
            format!("{count} connections refused"),
        );
        if let Some(l) = same_port {
            let (lhost, _) = host_port(&l.addr).unwrap_or(("", 0));
            let who = format!(
                "{} (pid {})",
                l.process_name.as_deref().unwrap_or("?"),
                l.pid.map_or("?".into(), |p| p.to_string())
            );
            let listener = Evidence::new(
                "host",
                format!("listener {}", l.addr),
                format!("{who} listens on {}", l.addr),
            );
            if lhost == ip {
                // The address the gateway was refused on is listened on here: its gateway lives
                // in another network namespace.
                out.push(
                    Finding::new("container-loopback", 0.95, vec![evidence_line, listener])
                        .confirm("compare `readlink /proc/NGINX_PID/ns/net` with `readlink /proc/APP_PID/ns/net`"),
                );
            } else if l.is_loopback_only() && !ip.starts_with("127.0.0.1") {
                out.push(Finding::new(
                    "upstream-listens-localhost",
                    0.93,
                    vec![evidence_line, listener],
                ));
            }
            continue;
        }
        // Nothing on the port: a listener of a non-gateway process on a neighbouring port of
        // the same address is the app the configuration meant.
        let neighbour = tcp
            .iter()
            .filter(|l| l.process_name.as_deref() != Some("nginx"))
            .find(|l| {
                let Some((lhost, lport)) = host_port(&l.addr) else {
                    return false;
                };
                let same_host = lhost == ip || lhost == "0.0.0.0" || lhost == "::";
                same_host && lport != port && lport.abs_diff(port) <= 10
            });
        if let Some(l) = neighbour {
            out.push(Finding::new(
                "upstream-port-mismatch",
                0.93,
                vec![
                    evidence_line,
                    Evidence::new(
                        "host",
                        format!("listener {}", l.addr),
                        format!(
                            "{} (pid {}) listens on {}, next to the refused port {port}",
                            l.process_name.as_deref().unwrap_or("?"),
                            l.pid.map_or("?".into(), |p| p.to_string()),
                            l.addr
                        ),
                    ),
                ],
            ));
        }
    }
    out
}

/// An upstream that answered earlier in the access log and refuses connections now: its process
/// stopped (crashed, killed, restarting), it was not always absent.
fn was_up_then_refused(result: &ScanResult) -> Option<Finding> {
    let refused = result.tally.causes.get("upstream-refused")?;
    for addr in refused.upstreams.keys() {
        let u = result.tally.access.upstreams.get(addr)?;
        if u.attempts > u.errors {
            return Some(Finding::new(
                "upstream-crashed",
                0.92,
                vec![Evidence::new(
                    "access-log",
                    format!("upstream {addr}"),
                    format!(
                        "{} of {} attempts answered before the connections were refused",
                        u.attempts - u.errors,
                        u.attempts
                    ),
                )],
            ));
        }
    }
    None
}

/// 5xx answers in the access log while the gateway's error log (which was read) names no
/// failure: the error pages came from further behind (the upstream is itself a proxy).
fn passthrough(result: &ScanResult) -> Option<Finding> {
    let errors: u64 = result
        .tally
        .access
        .statuses
        .range(500..600)
        .map(|(_, n)| n)
        .sum();
    if errors == 0 || result.tally.gateway_first.is_some() {
        return None;
    }
    let (_, line) = result.tally.access.first_5xx.clone()?;
    let file = result
        .files
        .get(line.file)
        .map_or("?".to_string(), |f| f.path.clone());
    Some(
        Finding::new(
            "upstream-5xx-passthrough",
            0.85,
            vec![Evidence::new("access-log", format!("{file}:{}", line.line), format!("{errors} 5xx answers and no gateway error line: {}", line.text))],
        )
        .confirm("probe the upstream directly (`gwdoctor probe --upstream HOST:PORT URL`) and see who produced the page"),
    )
}
