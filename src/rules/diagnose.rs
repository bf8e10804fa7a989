//! Rules across sources: the correlations no single collector can make, and the ranking of the
//! whole diagnosis.

use super::config::{line_evidence, setting_evidence};
use super::logs::Correlation;
use crate::collect::config::live::{Connect, LiveResult};
use crate::collect::config::model::UpstreamGroup;
use crate::collect::config::{Address, Dest, Facts};
use crate::collect::logs::scan::ScanResult;
use crate::collect::logs::tally::Histogram;
use crate::diagnose::Diagnosis;
use crate::findings::{rank, Evidence, Finding};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

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
///
/// `findings` come from the logs, the probe, the host and the timed requests; `config` from
/// the configuration's rules (static and live). A cause both name is one finding with the
/// evidence of both, and counts more than either alone; a static configuration risk the logs
/// do not show, while they show other causes, counts less; a cause the live checks disprove
/// now is ranked down and says so.
pub fn correlate(
    mut findings: Vec<Finding>,
    config: Vec<Finding>,
    diagnosis: &Diagnosis,
    facts: &[Facts],
) -> Vec<Finding> {
    if let Some(result) = &diagnosis.logs {
        findings.extend(refused_explained(result, diagnosis));
        findings.extend(was_up_then_refused(result));
        if diagnosis.error_log_read {
            findings.extend(passthrough(result));
        }
        findings.extend(loopback_unreachable(result));
        findings.extend(timeouts_near_the_limit(result, facts));
        for f in &mut findings {
            if f.cause == "no-live-upstreams" {
                underneath_of_the_group(f, result, facts);
            }
        }
    }
    let logs_name_causes = diagnosis
        .logs
        .as_ref()
        .is_some_and(|r| r.tally.causes.values().any(|c| c.primary > 0));
    let mut ranked = rank(findings);
    for mut c in rank(config) {
        match ranked.iter_mut().find(|f| f.cause == c.cause) {
            Some(f) => {
                // Two independent witnesses (the logs' history and the configuration or what
                // answers now): surer than either, evidence of both in one finding.
                f.confidence = (f.confidence.max(c.confidence) + CORROBORATED).min(0.97);
                for e in c.evidence {
                    if !f.evidence.contains(&e) {
                        f.evidence.push(e);
                    }
                }
                for how in c.confirm {
                    if !f.confirm.contains(&how) {
                        f.confirm.push(how);
                    }
                }
            }
            None => {
                let static_only = c.evidence.iter().all(|e| e.source == "config");
                if static_only && logs_name_causes {
                    // A risk in the configuration that the logs, which name other causes, do
                    // not show: worth fixing, not the likeliest cause of these errors.
                    c.confidence *= 0.8;
                }
                ranked.push(c);
            }
        }
    }
    if let Some(result) = &diagnosis.logs {
        disproved_now(&mut ranked, result, facts);
    }
    explanations_first(&mut ranked);
    rank(ranked)
}

/// What a second, independent source adds to a cause's confidence.
const CORROBORATED: f64 = 0.05;

/// A specific cause and the general symptom it explains: when both are found, the symptom is
/// what the user sees and the explanation is why, so the explanation ranks first.
const EXPLAINS: &[(&str, &str)] = &[
    ("upstream-crashed", "upstream-refused"),
    ("upstream-port-mismatch", "upstream-refused"),
    ("upstream-listens-localhost", "upstream-refused"),
    ("container-loopback", "upstream-refused"),
    ("upstream-address-family", "upstream-refused"),
    ("firewall-blocked", "upstream-unreachable"),
    ("proxy-timeout-too-short", "upstream-read-timeout"),
];

/// An explanation at least this sure ranks above the symptom it explains.
const SOLID: f64 = 0.7;

fn explanations_first(findings: &mut [Finding]) {
    for (why, what) in EXPLAINS {
        let Some(explanation) = findings
            .iter()
            .find(|f| f.cause == *why)
            .map(|f| f.confidence)
            .filter(|c| *c >= SOLID)
        else {
            continue;
        };
        for f in findings.iter_mut().filter(|f| f.cause == *what) {
            f.confidence = f.confidence.min(explanation - 0.01);
        }
    }
}

/// Connection-level causes a successful connect now contradicts.
const DISPROVED_BY_A_CONNECT: &[&str] = &[
    "upstream-refused",
    "upstream-connect-timeout",
    "upstream-unreachable",
    "unix-socket-missing",
];

/// The logs name a connection-level failure of some upstreams, and the live checks connected
/// to every one of them just now: the failure is over (the upstream was restarted, the socket
/// is back) or it is not where the logs say. The finding stays, ranked down, saying so.
fn disproved_now(findings: &mut [Finding], result: &ScanResult, facts: &[Facts]) {
    let results: Vec<&LiveResult> = facts.iter().flat_map(|f| f.live.iter().flatten()).collect();
    if results.is_empty() {
        return;
    }
    for f in findings.iter_mut() {
        if !DISPROVED_BY_A_CONNECT.contains(&f.cause.as_str()) {
            continue;
        }
        let Some(logged) = result.tally.causes.get(f.cause.as_str()) else {
            continue;
        };
        if logged.upstreams.is_empty() {
            continue;
        }
        let mut evidence = Vec::new();
        let every_one_connects = logged.upstreams.keys().all(|addr| {
            let attempt = results.iter().find_map(|r| {
                r.attempts.iter().find(|a| same_addr(&a.addr, addr))
            });
            match attempt {
                Some(a) if a.connect == Connect::Ok => {
                    evidence.push(Evidence::new(
                        "live-check",
                        format!("connect {}", a.addr),
                        format!(
                            "connected in {} ms just now: the logged failure is not happening any more (restarted, or back)",
                            a.connect_ms
                        ),
                    ));
                    true
                }
                _ => false,
            }
        });
        // A failure the live checks saw themselves stands, whatever else answers.
        let confirmed = f
            .evidence
            .iter()
            .any(|e| e.source == "live-check" && e.location.starts_with("connect "));
        if every_one_connects && !confirmed {
            f.confidence *= 0.5;
            f.evidence.extend(evidence);
            f.confirm.push("the live checks connect now: look for what changed between the last logged failure and now (a restart, a deploy), and whether it recurs".into());
        }
    }
}

/// Whether two `host:port` strings name the same place (`[::1]:80` and `::1:80` alike).
fn same_addr(a: &str, b: &str) -> bool {
    let norm = |s: &str| s.replace(['[', ']'], "");
    norm(a) == norm(b)
}

/// The addresses a group's servers stand for, as nginx logs them (`127.0.0.1:8000`,
/// `[::1]:8000`, `unix:/run/app.sock`): a name's addresses as the live checks resolved them,
/// `localhost` as both loopbacks.
fn group_addresses(facts: &Facts, group: &UpstreamGroup) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for s in &group.servers {
        let Some(a) = &s.address else { continue };
        match a {
            Address::Unix { .. } => {
                out.insert(a.to_string());
            }
            Address::Tcp { host, port } => {
                let port = port.unwrap_or(80);
                if a.host_is_ip() {
                    out.insert(
                        Address::Tcp {
                            host: host.clone(),
                            port: Some(port),
                        }
                        .to_string(),
                    );
                    continue;
                }
                if host == "localhost" {
                    out.insert(format!("127.0.0.1:{port}"));
                    out.insert(format!("[::1]:{port}"));
                }
                for r in facts.live.iter().flatten() {
                    if let Address::Tcp { host: h, .. } = &r.endpoint.address {
                        if h == host {
                            out.extend(r.attempts.iter().map(|x| x.addr.clone()));
                        }
                    }
                }
            }
        }
    }
    out
}

/// "no live upstreams" is what nginx says once every server of a group is marked failed; why
/// they were is what those servers' own failures say. With the configuration at hand, only the
/// failures of that group's servers are named underneath (not every failure in the logs), and
/// what the live checks see of them now.
fn underneath_of_the_group(finding: &mut Finding, result: &ScanResult, facts: &[Facts]) {
    let Some(nlu) = result.tally.causes.get("no-live-upstreams") else {
        return;
    };
    let mut groups: Vec<(&Facts, &UpstreamGroup)> = Vec::new();
    for name in nlu.upstreams.keys() {
        for f in facts {
            if let Some(g) = f.model.upstreams.iter().find(|g| &g.name == name) {
                groups.push((f, g));
            }
        }
    }
    if groups.is_empty() {
        return;
    }
    let mut underneath: Vec<String> = Vec::new();
    let mut now: Vec<Evidence> = Vec::new();
    for (f, g) in &groups {
        let servers = group_addresses(f, g);
        let mut causes: Vec<(&str, u64, Vec<&str>)> = Vec::new();
        for (&cause, c) in &result.tally.causes {
            if cause == "no-live-upstreams" {
                continue;
            }
            let mine: Vec<(&str, u64)> = c
                .upstreams
                .iter()
                .filter(|(addr, _)| servers.iter().any(|s| same_addr(s, addr)))
                .map(|(a, n)| (a.as_str(), *n))
                .collect();
            if !mine.is_empty() {
                causes.push((
                    cause,
                    mine.iter().map(|(_, n)| n).sum(),
                    mine.iter().map(|(a, _)| *a).collect(),
                ));
            }
        }
        causes.sort();
        for (cause, n, addrs) in causes {
            underneath.push(format!(
                "{cause} ({n} {}: {})",
                if n == 1 { "line" } else { "lines" },
                addrs.join(", ")
            ));
        }
        for r in f.live.iter().flatten() {
            for a in &r.attempts {
                if servers.iter().any(|s| same_addr(s, &a.addr)) {
                    now.push(Evidence::new(
                        "live-check",
                        format!("connect {}", a.addr),
                        format!(
                            "upstream \"{}\": {} now",
                            g.name,
                            match &a.connect {
                                Connect::Ok => format!("connected in {} ms", a.connect_ms),
                                other => other.label(),
                            }
                        ),
                    ));
                }
            }
        }
        finding.evidence.push(line_evidence(
            f,
            g.loc,
            &format!(
                "upstream \"{}\": {}",
                g.name,
                servers.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    finding.evidence.retain(|e| e.location != "underneath");
    if underneath.is_empty() {
        // Nothing in the logs says why these servers were marked down: not enough evidence to
        // name what lies beneath, say so.
        finding.confidence = finding.confidence.min(0.75);
        finding.evidence.push(Evidence::new(
            "error-log",
            "underneath",
            "no earlier failure of this group's own servers in the logs read (older logs, or another log file?)",
        ));
    } else {
        finding.confidence = finding.confidence.max(0.95);
        finding.evidence.push(Evidence::new(
            "error-log",
            "underneath",
            format!(
                "the group's servers were marked down after: {}",
                underneath.join("; ")
            ),
        ));
    }
    finding.evidence.extend(now);
}

/// How many recorded times are below `limit` seconds.
fn count_below(h: &Histogram, limit: f64) -> u64 {
    let n = h.count();
    // The k-th smallest time grows with k: find the first k whose time reaches the limit.
    let (mut lo, mut hi) = (0u64, n);
    while lo < hi {
        let k = (lo + hi) / 2 + 1;
        let kth = h.quantile((k as f64 - 0.5) / n as f64).unwrap_or(f64::MAX);
        if kth < limit {
            lo = k;
        } else {
            hi = k - 1;
        }
    }
    lo
}

/// Read timeouts whose upstream answers the other requests in nearly as long: its normal
/// latency is close to the configured timeout, so the slow tail of its answers crosses it.
/// The timeout is the configuration's (with its file and line) when the configuration says
/// which targets reach the address, else what the access log's 504s show.
fn timeouts_near_the_limit(result: &ScanResult, facts: &[Facts]) -> Vec<Finding> {
    let mut out = Vec::new();
    let Some(timeouts) = result.tally.causes.get("upstream-read-timeout") else {
        return out;
    };
    for addr in timeouts.upstreams.keys() {
        let Some(u) = result.tally.access.upstreams.get(addr) else {
            continue;
        };
        let configured = configured_read_timeout(facts, addr);
        let limit = match &configured {
            Some((ms, _)) => *ms as f64 / 1000.0,
            None if u.timeout_seconds > 0.0 => u.timeout_seconds,
            None => continue,
        };
        let near = count_below(&u.times, limit * 0.95) - count_below(&u.times, limit * 0.7);
        let at_limit = u.times.count() - count_below(&u.times, limit * 0.95);
        if near == 0 || at_limit == 0 {
            continue;
        }
        let mut evidence = vec![Evidence::new(
            "access-log",
            format!("upstream {addr}"),
            format!(
                "{near} of {} attempts took 70–95 % of the {limit:.1} s timeout and {at_limit} reached it: the upstream's ordinary answers come close to the limit",
                u.times.count()
            ),
        )];
        if let Some((_, e)) = configured {
            evidence.push(e);
        }
        out.push(
            Finding::new("proxy-timeout-too-short", 0.8, evidence)
                .confirm(format!("time the upstream directly: `curl -o /dev/null -s -w '%{{time_total}}\\n' http://{addr}/`")),
        );
    }
    out
}

/// The read timeout of the targets that reach `addr`, in ms, and the evidence of where it is
/// set.
fn configured_read_timeout(facts: &[Facts], addr: &str) -> Option<(u64, Evidence)> {
    for f in facts {
        for t in &f.model.targets {
            let reaches = match &t.dest {
                Dest::Address { address } => same_addr(&with_port(address), addr),
                Dest::Group { index, .. } => group_addresses(f, &f.model.upstreams[*index])
                    .iter()
                    .any(|s| same_addr(s, addr)),
                Dest::Variable { .. } => false,
            };
            if !reaches {
                continue;
            }
            let Some(ms) = t.settings.read_timeout().ms() else {
                continue;
            };
            let evidence = setting_evidence(
                f,
                &format!(
                    "{}_read_timeout",
                    t.kind.directive().trim_end_matches("_pass")
                ),
                t.settings.read_timeout(),
                &format!("the gateway waits {:.1} s for {addr}", ms as f64 / 1000.0),
            );
            return Some((ms, evidence));
        }
    }
    None
}

/// An address with nginx's default port 80 when it has none, as the logs show it.
fn with_port(a: &Address) -> String {
    match a {
        Address::Tcp { host, port: None } => Address::Tcp {
            host: host.clone(),
            port: Some(80),
        }
        .to_string(),
        other => other.to_string(),
    }
}

/// The logs a configuration names, with why each is one: nginx's `error_log`s (and the running
/// master's `-e`) and `access_log`s, PHP-FPM's `error_log` and its pools' `slowlog` and
/// `php_admin_value[error_log]`. Relative paths are taken from nginx's prefix (the running
/// master's `-p`, else the build's). Special targets (`stderr`, `syslog:`, `memory:`, `off`)
/// and paths with variables are left out.
pub fn log_paths(facts: &Facts) -> Vec<(PathBuf, String)> {
    let prefix: PathBuf = facts
        .running
        .as_ref()
        .and_then(|r| r.prefix.clone())
        .or_else(|| {
            facts
                .build
                .as_ref()
                .and_then(|b| b.prefix.clone())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| facts.config.prefix.clone());
    use crate::collect::config::names_a_file;
    let resolve = |p: &str| {
        let path = Path::new(p);
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            prefix.join(path)
        }
    };
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    let mut add = |path: PathBuf, why: String| {
        if !out.iter().any(|(p, _)| *p == path) {
            out.push((path, why));
        }
    };
    if let Some(r) = &facts.running {
        let words: Vec<&str> = r.cmdline.split_whitespace().collect();
        if let Some(i) = words.iter().position(|w| *w == "-e") {
            if let Some(p) = words.get(i + 1).filter(|p| names_a_file(p)) {
                add(
                    resolve(p),
                    format!("the error log of nginx (pid {}), its -e", r.pid),
                );
            }
        }
    }
    for file in &facts.config.files {
        for stmt in file.all_stmts().filter(|s| s.name() == "error_log") {
            if let Some(p) = stmt.arg(0).filter(|p| names_a_file(p)) {
                add(
                    resolve(p),
                    format!("error_log at {}:{}", file.path.display(), stmt.line()),
                );
            }
        }
    }
    for l in &facts.model.access_logs {
        if names_a_file(&l.path) {
            add(
                resolve(&l.path),
                format!(
                    "access_log at {}:{} (format {})",
                    facts.config.files[l.loc.file].path.display(),
                    l.loc.line,
                    l.format_name
                ),
            );
        }
    }
    for c in &facts.fpm {
        let file = |at: crate::collect::config::fpm::FpmLoc| {
            format!("{}:{}", c.files[at.file].path.display(), at.line)
        };
        if let Some(v) = c.global.get("error_log") {
            if names_a_file(&v.value) && Path::new(&v.value).is_absolute() {
                add(
                    PathBuf::from(&v.value),
                    format!("PHP-FPM's error_log at {}", file(v.at)),
                );
            }
        }
        for pool in &c.pools {
            for key in [
                "slowlog",
                "php_admin_value[error_log]",
                "php_value[error_log]",
            ] {
                if let Some(v) = pool.get(key) {
                    if names_a_file(&v.value) && Path::new(&v.value).is_absolute() {
                        add(
                            PathBuf::from(&v.value),
                            format!("pool [{}] {key} at {}", pool.name, file(v.at)),
                        );
                    }
                }
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::{count_below, same_addr};
    use crate::collect::logs::tally::Histogram;

    #[test]
    fn counts_the_times_below_a_limit() {
        let mut h = Histogram::default();
        for s in [0.05, 1.2, 1.7, 1.8, 2.0, 2.0] {
            h.record(s);
        }
        assert_eq!(count_below(&h, 0.01), 0);
        assert_eq!(count_below(&h, 1.4), 2);
        assert_eq!(count_below(&h, 1.9), 4);
        assert_eq!(count_below(&h, 5.0), 6);
        assert_eq!(count_below(&Histogram::default(), 1.0), 0);
    }

    #[test]
    fn addresses_compare_with_or_without_brackets() {
        assert!(same_addr("[::1]:3000", "::1:3000"));
        assert!(!same_addr("127.0.0.1:3000", "127.0.0.1:30000"));
    }
}
