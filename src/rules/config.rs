//! Rules over the configuration collector's facts: what in the configuration (and in what
//! answers at its targets) leads to a 502/503/504, as findings named by cause ids, plus the
//! checks that were made.
//!
//! Static rules read only the files (with PHP-FPM's and the access log when given); live rules
//! read what [`crate::collect::config::live`] found. Every finding carries the file and line it
//! rests on, with the source line itself, and a confidence that says how much the evidence
//! alone proves.

use crate::collect::config::access::AccessStats;
use crate::collect::config::discover::Identity;
use crate::collect::config::fpm::{FpmConfig, Pool};
use crate::collect::config::live::{Answer, Connect, Expect, LiveResult};
use crate::collect::config::model::{Loc, Setting, Target};
use crate::collect::config::{expect_of, Address, Dest, Facts, PassKind, SocketFact};
use crate::findings::{rank, Check, Evidence, Finding, Status};
use std::net::IpAddr;

/// How much later than nginx's (re)load a file must have changed to count as not applied.
const CLOCK_SLACK: std::time::Duration = std::time::Duration::from_secs(2);

/// Ports that speak TLS by convention.
const TLS_PORTS: &[u16] = &[443, 8443, 9443, 4443];
/// Ports that speak plain HTTP by convention.
const PLAIN_PORTS: &[u16] = &[80, 8080, 8000, 3000, 5000, 8888];
/// PHP-FPM's customary port.
const FASTCGI_PORT: u16 = 9000;

/// Judges the facts: findings (ranked) and the checks made.
pub fn judge(facts: &Facts) -> (Vec<Finding>, Vec<Check>) {
    let mut j = Judge {
        facts,
        findings: Vec::new(),
        checks: Vec::new(),
    };
    j.parse_check();
    j.directives();
    j.nginx_test();
    j.applied();
    j.fpm_check();
    j.keepalive();
    j.resolver();
    j.protocols();
    j.tls();
    j.sockets();
    j.fastcgi_timeouts();
    j.access_logs();
    j.single_servers();
    j.limits();
    j.container();
    j.live();
    (rank(merge(j.findings)), j.checks)
}

/// The most evidence one finding shows; the rest is counted.
const MAX_EVIDENCE: usize = 40;

/// Merges findings of one cause (as [`rank`] does, in linear time for configurations with
/// thousands of targets) and caps each one's evidence at [`MAX_EVIDENCE`] items.
fn merge(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<Finding> = Vec::new();
    let mut seen: std::collections::HashSet<(String, String, String)> =
        std::collections::HashSet::new();
    let mut extra: Vec<usize> = Vec::new();
    for f in findings {
        let i = match merged.iter().position(|m| m.cause == f.cause) {
            Some(i) => {
                merged[i].confidence = merged[i].confidence.max(f.confidence);
                for c in f.confirm {
                    if !merged[i].confirm.contains(&c) {
                        merged[i].confirm.push(c);
                    }
                }
                i
            }
            None => {
                merged.push(Finding {
                    evidence: Vec::new(),
                    ..f.clone()
                });
                extra.push(0);
                merged.len() - 1
            }
        };
        for e in f.evidence {
            if !seen.insert((
                merged[i].cause.clone(),
                e.location.clone(),
                e.detail.clone(),
            )) {
                continue;
            }
            if merged[i].evidence.len() < MAX_EVIDENCE {
                merged[i].evidence.push(e);
            } else {
                extra[i] += 1;
            }
        }
    }
    for (f, n) in merged.iter_mut().zip(extra) {
        if n > 0 {
            f.evidence.push(Evidence::new("config", "…", format!("and {n} more pieces of evidence like these (see --format json of a narrower configuration)")));
        }
    }
    merged
}

struct Judge<'f> {
    facts: &'f Facts,
    findings: Vec<Finding>,
    checks: Vec<Check>,
}

/// Adds a way to confirm to a finding already recorded.
trait ConfirmWith {
    fn confirm_with(self, how: impl Into<String>);
}

impl ConfirmWith for &mut Finding {
    fn confirm_with(self, how: impl Into<String>) {
        self.confirm.push(how.into());
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// Evidence of a configuration line: where, the line itself, and what it means.
pub fn line_evidence(facts: &Facts, loc: Loc, why: &str) -> Evidence {
    let file = &facts.config.files[loc.file];
    let text = file.line_text(loc.line).trim();
    let detail = if why.is_empty() {
        text.to_string()
    } else {
        format!("{text}    ← {why}")
    };
    Evidence::new(
        "config",
        format!("{}:{}", file.path.display(), loc.line),
        detail,
    )
}

/// Evidence of a setting as it applies (its line, or nginx's default).
pub fn setting_evidence(facts: &Facts, name: &str, s: &Setting, why: &str) -> Evidence {
    match s.at {
        Some(loc) => line_evidence(facts, loc, why),
        None => Evidence::new(
            "config",
            "(default)",
            format!("{name} {}    ← nginx's default; {why}", s.value),
        ),
    }
}

impl<'f> Judge<'f> {
    fn path(&self, loc: Loc) -> String {
        format!(
            "{}:{}",
            self.facts.config.files[loc.file].path.display(),
            loc.line
        )
    }

    fn line(&self, loc: Loc, why: &str) -> Evidence {
        line_evidence(self.facts, loc, why)
    }

    fn setting(&self, name: &str, s: &Setting, why: &str) -> Evidence {
        setting_evidence(self.facts, name, s, why)
    }

    fn fpm_line(
        &self,
        config: &FpmConfig,
        at: crate::collect::config::fpm::FpmLoc,
        why: &str,
    ) -> Evidence {
        let file = &config.files[at.file];
        let text = file.line_text(at.line).trim();
        Evidence::new(
            "config",
            format!("{}:{}", file.path.display(), at.line),
            format!("{text}    ← {why}"),
        )
    }

    fn target_evidence(&self, t: &Target, why: &str) -> Evidence {
        let mut e = self.line(t.loc, why);
        if !t.via.is_empty() {
            let via: Vec<String> = t.via.iter().map(|l| self.path(*l)).collect();
            e.detail
                .push_str(&format!(" (included from {})", via.join(" → ")));
        }
        e
    }

    fn check(&mut self, name: &str, status: Status, detail: impl Into<String>) {
        self.checks.push(Check::new(name, status, detail, 0));
    }

    fn find(&mut self, cause: &str, confidence: f64, evidence: Vec<Evidence>) -> &mut Finding {
        self.findings
            .push(Finding::new(cause, confidence, evidence));
        self.findings.last_mut().expect("just pushed")
    }

    fn parse_check(&mut self) {
        let f = self.facts;
        let directives: usize = f.config.files.iter().map(|x| x.count()).sum();
        self.checks.push(Check::new(
            "parse",
            Status::Pass,
            format!(
                "{} ({}), {}, {}, {}, {} in {} ms",
                f.main.display(),
                f.found_by,
                plural(f.config.files.len(), "file", "files"),
                plural(directives, "directive", "directives"),
                plural(f.model.servers.len(), "server", "servers"),
                plural(f.model.targets.len(), "target", "targets"),
                f.parse_ms
            ),
            f.parse_ms,
        ));
    }

    /// Unknown directives, typos, directives out of place or with the wrong arguments.
    fn directives(&mut self) {
        let issues = &self.facts.model.issues;
        let nginx_passed = self.facts.nginx_test.as_ref().is_some_and(|t| t.ok);
        if issues.is_empty() && self.facts.model.odd_spaces.is_empty() {
            self.check(
                "directives",
                Status::Pass,
                "every directive is known and in its place",
            );
            return;
        }
        let mut evidence: Vec<Evidence> = Vec::new();
        for i in issues {
            let mut e = self.line(i.loc, &i.message);
            if !i.via.is_empty() {
                let via: Vec<String> = i.via.iter().map(|l| self.path(*l)).collect();
                e.detail
                    .push_str(&format!(" (included from {})", via.join(" → ")));
            }
            evidence.push(e);
        }
        for loc in &self.facts.model.odd_spaces {
            evidence.push(self.line(
                *loc,
                "a no-break (Unicode) space: nginx reads it as part of a word, not as a space",
            ));
        }
        let n = evidence.len();
        if nginx_passed {
            // nginx itself accepts them: a module this table does not know, most likely.
            self.check(
                "directives",
                Status::Warn,
                format!(
                    "{} that gwdoctor does not know, but nginx -t accepts",
                    plural(n, "directive", "directives")
                ),
            );
            return;
        }
        self.check(
            "directives",
            Status::Fail,
            format!(
                "{} that nginx would refuse",
                plural(n, "problem", "problems")
            ),
        );
        let confidence = if self.facts.nginx_test.is_some() {
            0.9
        } else {
            0.65
        };
        self.find("config-not-applied", confidence, evidence)
            .confirm_with("run `nginx -t`: nginx refuses to load (or reload) a configuration with these lines, so the one running is older");
    }

    fn nginx_test(&mut self) {
        match (&self.facts.nginx_test, &self.facts.nginx_test_skipped) {
            (Some(t), _) if t.ok => {
                self.checks.push(Check::new(
                    "nginx -t",
                    Status::Pass,
                    t.command.clone(),
                    t.ms,
                ));
            }
            (Some(t), _) => {
                self.checks.push(Check::new(
                    "nginx -t",
                    Status::Fail,
                    t.output.lines().last().unwrap_or("").to_string(),
                    t.ms,
                ));
                let lines: Vec<Evidence> = t
                    .output
                    .lines()
                    .filter(|l| {
                        l.contains("[emerg]") || l.contains("[crit]") || l.contains("failed")
                    })
                    .take(5)
                    .map(|l| Evidence::new("config", t.command.clone(), l.to_string()))
                    .collect();
                let evidence = if lines.is_empty() {
                    vec![Evidence::new("config", t.command.clone(), t.output.clone())]
                } else {
                    lines
                };
                self.find("config-not-applied", 0.95, evidence);
            }
            (None, Some(why)) => self.check("nginx -t", Status::Skip, why.clone()),
            (None, None) => {}
        }
    }

    /// Files changed after the running nginx last loaded its configuration.
    fn applied(&mut self) {
        let f = self.facts;
        let Some(r) = &f.running else {
            self.check(
                "configuration applied",
                Status::Skip,
                "no running nginx master uses this file",
            );
            return;
        };
        let Some(loaded) = r.workers_started.or(r.master_started) else {
            self.check(
                "configuration applied",
                Status::Skip,
                format!("the start time of nginx (pid {}) is unknown", r.pid),
            );
            return;
        };
        let changed: Vec<(usize, std::time::SystemTime)> = f
            .config
            .files
            .iter()
            .enumerate()
            // /proc gives start times to the second at best (boot time is whole seconds): a
            // file written just before nginx started must not count as newer.
            .filter_map(|(i, file)| {
                file.modified
                    .filter(|m| *m > loaded + CLOCK_SLACK)
                    .map(|m| (i, m))
            })
            .collect();
        if changed.is_empty() {
            self.check(
                "configuration applied",
                Status::Pass,
                format!(
                    "no file changed since nginx (pid {}) last loaded its configuration",
                    r.pid
                ),
            );
            return;
        }
        self.check(
            "configuration applied",
            Status::Warn,
            format!(
                "{} changed since the last (re)load",
                plural(changed.len(), "file", "files")
            ),
        );
        let when = |t: std::time::SystemTime| humantime(t);
        let mut evidence: Vec<Evidence> = changed
            .iter()
            .take(10)
            .map(|(i, m)| {
                Evidence::new(
                    "config",
                    f.config.files[*i].path.display().to_string(),
                    format!("modified {}", when(*m)),
                )
            })
            .collect();
        evidence.push(Evidence::new(
            "host",
            format!("/proc/{}", r.pid),
            format!(
                "nginx master {} last loaded its configuration {} (its newest worker started then)",
                r.pid,
                when(loaded)
            ),
        ));
        let confidence = if f.nginx_test.as_ref().is_some_and(|t| !t.ok) {
            0.85
        } else {
            0.6
        };
        self.find("config-not-applied", confidence, evidence)
            .confirm_with("reload nginx (`nginx -t && nginx -s reload`) and check the error log for a failed reload");
    }

    fn fpm_check(&mut self) {
        let f = self.facts;
        for p in &f.fpm_problems {
            self.check("php-fpm", Status::Warn, p.clone());
        }
        if f.fpm.is_empty() {
            if f.model.targets.iter().any(|t| t.kind == PassKind::Fastcgi) {
                self.check("php-fpm", Status::Skip, "no PHP-FPM configuration read; give it with --fpm-config to tie pools to fastcgi_pass");
            }
            return;
        }
        let pools: Vec<String> = f
            .fpm
            .iter()
            .flat_map(|c| {
                c.pools.iter().map(|p| {
                    format!(
                        "[{}] {}",
                        p.name,
                        p.listen
                            .as_ref()
                            .map(|a| a.to_string())
                            .unwrap_or_else(|| "(no listen)".into())
                    )
                })
            })
            .collect();
        self.check(
            "php-fpm",
            Status::Pass,
            format!(
                "{}: {}",
                plural(pools.len(), "pool", "pools"),
                pools.join(", ")
            ),
        );
    }

    /// `keepalive` in an upstream whose users send `Connection: close` or speak HTTP/1.0.
    fn keepalive(&mut self) {
        let f = self.facts;
        let mut problems = 0;
        for g in &f.model.upstreams {
            let Some((n, kloc)) = g.keepalive else {
                continue;
            };
            for &ti in &g.used_by {
                let t = &f.model.targets[ti];
                let mut evidence = vec![self.line(
                    kloc,
                    &format!(
                        "upstream \"{}\" keeps {n} idle connections per worker",
                        g.name
                    ),
                )];
                match t.kind {
                    PassKind::Proxy => {
                        let version = t
                            .settings
                            .http_version()
                            .expect("proxy targets have a version");
                        let conn_ok = t.settings.connection_header().is_some_and(|c| {
                            c.value.is_empty() || c.value.eq_ignore_ascii_case("keep-alive")
                        });
                        if version.value == "1.1" && conn_ok {
                            continue;
                        }
                        evidence
                            .push(self.target_evidence(t, "proxies to the group with keepalive"));
                        if version.value != "1.1" {
                            evidence.push(self.setting(
                                "proxy_http_version",
                                version,
                                "HTTP/1.0 upstream: no connection is kept",
                            ));
                        }
                        if !conn_ok {
                            evidence.push(match t.settings.connection_header() {
                                Some(c) => self.setting("proxy_set_header Connection", c, "the Connection header closes each upstream connection"),
                                None => Evidence::new("config", "(default)", "proxy_set_header Connection is not set here    ← nginx sends \"Connection: close\" upstream"),
                            });
                        }
                    }
                    PassKind::Fastcgi => {
                        let keep = t
                            .settings
                            .keep_conn()
                            .expect("fastcgi targets have keep_conn");
                        if keep.is_on() {
                            continue;
                        }
                        evidence
                            .push(self.target_evidence(t, "passes to the group with keepalive"));
                        evidence.push(self.setting(
                            "fastcgi_keep_conn",
                            keep,
                            "PHP-FPM is asked to close each connection",
                        ));
                    }
                    _ => continue,
                }
                problems += 1;
                self.find("keepalive-race", 0.7, evidence)
                    .confirm_with("set `proxy_http_version 1.1;` and `proxy_set_header Connection \"\";` where the group is used, and keep the upstream's own keep-alive timeout longer than nginx's keepalive_timeout");
            }
        }
        if f.model.upstreams.iter().any(|g| g.keepalive.is_some()) {
            let status = if problems == 0 {
                Status::Pass
            } else {
                Status::Fail
            };
            self.check(
                "upstream keepalive",
                status,
                format!(
                    "{} where keepalive cannot work",
                    plural(problems, "target", "targets")
                ),
            );
        }
    }

    /// Variable targets without a resolver.
    fn resolver(&mut self) {
        let f = self.facts;
        let mut flagged = 0;
        let mut runtime = 0;
        for t in &f.model.targets {
            if !t.runtime || t.settings.resolver().is_some() {
                if t.runtime {
                    runtime += 1;
                }
                continue;
            }
            runtime += 1;
            let is_group = |h: &str| f.model.upstreams.iter().any(|g| g.name == h);
            let names: Vec<String> = match &t.dest {
                Dest::Group { .. } => continue,
                Dest::Address {
                    address: a @ Address::Tcp { host, .. },
                } if !a.host_is_ip() => vec![host.clone()],
                Dest::Address { .. } => continue,
                Dest::Variable { candidates, .. } => {
                    let names: Vec<String> = candidates
                        .iter()
                        .filter(|c| !is_group(c))
                        .filter(|c| {
                            Address::parse(c).is_some_and(|a| {
                                !a.host_is_ip() && matches!(a, Address::Tcp { .. })
                            })
                        })
                        .cloned()
                        .collect();
                    if !candidates.is_empty() && names.is_empty() {
                        continue;
                    }
                    names
                }
            };
            flagged += 1;
            let why = if names.is_empty() {
                "the host comes from a variable; a name in it needs a resolver".to_string()
            } else {
                format!(
                    "resolves {} per request, and no resolver is set",
                    names.join(", ")
                )
            };
            let confidence = if names.is_empty() { 0.6 } else { 0.9 };
            self.find("no-resolver", confidence, vec![self.target_evidence(t, &why)])
                .confirm_with("add `resolver 127.0.0.53 valid=30s;` (or your DNS server) in http{} and look for \"no resolver defined to resolve\" in the error log");
        }
        if runtime > 0 {
            let status = if flagged == 0 {
                Status::Pass
            } else {
                Status::Fail
            };
            self.check(
                "resolver",
                status,
                format!(
                    "{} with variables, {} without a resolver",
                    plural(runtime, "target", "targets"),
                    flagged
                ),
            );
        }
    }

    /// The pool listening where a target points, if any.
    fn pool_at(&self, address: &Address) -> Option<(&'f FpmConfig, &'f Pool)> {
        for c in &self.facts.fpm {
            for p in &c.pools {
                if let Some(l) = &p.listen {
                    if same_place(l, address) {
                        return Some((c, p));
                    }
                }
            }
        }
        None
    }

    /// The protocol nginx speaks does not fit the port.
    fn protocols(&mut self) {
        let f = self.facts;
        let mut flagged = 0;
        for t in &f.model.targets {
            let Dest::Address { address } = &t.dest else {
                continue;
            };
            let port = match address {
                Address::Tcp { port, .. } => *port,
                Address::Unix { .. } => None,
            };
            let pool = self.pool_at(address);
            let (why, confidence) = match (expect_of(t), port, pool) {
                (Expect::Http | Expect::Https, _, Some((_, p))) => (
                    format!(
                        "{} speaks HTTP to PHP-FPM pool [{}], which speaks FastCGI",
                        t.kind.directive(),
                        p.name
                    ),
                    0.9,
                ),
                (Expect::Http, Some(p), None) if TLS_PORTS.contains(&p) => {
                    (format!("plain http:// to port {p}, a TLS port"), 0.7)
                }
                (Expect::Https, Some(p), None) if PLAIN_PORTS.contains(&p) => {
                    (format!("https:// to port {p}, a plain-HTTP port"), 0.6)
                }
                (Expect::Http | Expect::Https, Some(FASTCGI_PORT), None) => (
                    "HTTP to port 9000, PHP-FPM's customary FastCGI port".to_string(),
                    0.5,
                ),
                (Expect::Fastcgi, Some(p), None)
                    if PLAIN_PORTS.contains(&p) || TLS_PORTS.contains(&p) =>
                {
                    (format!("FastCGI to port {p}, an HTTP port"), 0.5)
                }
                _ => continue,
            };
            flagged += 1;
            let mut evidence = vec![self.target_evidence(t, &why)];
            if let Some((c, p)) = pool {
                if let Some(v) = p.get("listen") {
                    evidence.push(self.fpm_line(
                        c,
                        v.at,
                        &format!("pool [{}] listens here", p.name),
                    ));
                }
            }
            self.find("protocol-mismatch", confidence, evidence);
        }
        if !f.model.targets.is_empty() {
            let status = if flagged == 0 {
                Status::Pass
            } else {
                Status::Fail
            };
            self.check(
                "protocols",
                status,
                format!(
                    "{} whose protocol does not fit the port",
                    plural(flagged, "target", "targets")
                ),
            );
        }
    }

    /// TLS upstreams: SNI and verification.
    fn tls(&mut self) {
        let f = self.facts;
        let mut tls_targets = 0;
        for t in &f.model.targets {
            if !t.tls {
                continue;
            }
            tls_targets += 1;
            let s = &t.settings;
            let by_name = match &t.dest {
                Dest::Address { address } => {
                    !address.host_is_ip() && matches!(address, Address::Tcp { .. })
                }
                Dest::Group { index, .. } => f.model.upstreams[*index]
                    .servers
                    .iter()
                    .any(|x| x.address.as_ref().is_some_and(|a| !a.host_is_ip())),
                Dest::Variable { .. } => true,
            };
            if by_name && !s.ssl_server_name().is_some_and(|x| x.is_on()) {
                let p = if t.kind == PassKind::Grpc {
                    "grpc"
                } else {
                    "proxy"
                };
                let mut evidence = vec![self.target_evidence(t, "TLS to a server by name")];
                if let Some(x) = s.ssl_server_name() {
                    evidence.push(self.setting(&format!("{p}_ssl_server_name"), x, "nginx sends no SNI: servers that host several names refuse the handshake or show another certificate"));
                }
                self.find("upstream-tls-handshake", 0.55, evidence)
                    .confirm_with(format!("set `{p}_ssl_server_name on;` (and `{p}_ssl_name` if the name differs); look for \"SSL_do_handshake() failed\" in the error log"));
            }
            if s.ssl_verify().is_some_and(|v| v.is_on()) && s.ssl_trusted_certificate().is_none() {
                let p = if t.kind == PassKind::Grpc {
                    "grpc"
                } else {
                    "proxy"
                };
                let mut evidence = vec![self.target_evidence(t, "TLS upstream")];
                if let Some(v) = s.ssl_verify() {
                    evidence.push(self.setting(&format!("{p}_ssl_verify"), v, &format!("verification on, but no {p}_ssl_trusted_certificate: nginx trusts no CA and every certificate fails")));
                }
                self.find("upstream-tls-verify", 0.85, evidence);
            }
        }
        if tls_targets > 0 {
            self.check(
                "upstream TLS",
                Status::Pass,
                format!("{} over TLS", plural(tls_targets, "target", "targets")),
            );
        }
    }

    /// Unix sockets: missing, no pool behind, or closed to nginx's workers.
    fn sockets(&mut self) {
        let f = self.facts;
        let worker = f.worker.as_ref();
        let mut problems = 0;
        let mut seen = std::collections::HashSet::new();
        for t in &f.model.targets {
            let Dest::Address {
                address: Address::Unix { path },
            } = &t.dest
            else {
                continue;
            };
            if !seen.insert(path.clone()) {
                continue;
            }
            let fact = f.sockets.iter().find(|s| &s.path == path);
            let pool = self.pool_at(&t.dest_address());
            if !f.fpm.is_empty() && pool.is_none() && t.kind == PassKind::Fastcgi {
                problems += 1;
                let mut evidence =
                    vec![self.target_evidence(t, "no PHP-FPM pool listens on this socket")];
                for c in &f.fpm {
                    for p in &c.pools {
                        if let Some(v) = p.get("listen") {
                            evidence.push(self.fpm_line(
                                c,
                                v.at,
                                &format!("pool [{}] listens here", p.name),
                            ));
                        }
                    }
                }
                let confidence = if fact.is_some_and(|s| s.exists) {
                    0.5
                } else {
                    0.9
                };
                self.find("unix-socket-missing", confidence, evidence);
                continue;
            }
            match fact {
                Some(s) if !s.exists => {
                    problems += 1;
                    let mut evidence = vec![self.target_evidence(t, "the socket does not exist")];
                    let dir = std::path::Path::new(path)
                        .parent()
                        .map(|d| d.display().to_string())
                        .unwrap_or_default();
                    evidence.push(Evidence::new("host", path.clone(), format!("no such file; the upstream is not running, or listens elsewhere (see `ls -l {dir}`)")));
                    if let Some((c, p)) = pool {
                        if let Some(v) = p.get("listen") {
                            evidence.push(self.fpm_line(
                                c,
                                v.at,
                                &format!("pool [{}] should create it: is PHP-FPM running?", p.name),
                            ));
                        }
                    }
                    self.find("unix-socket-missing", 0.85, evidence);
                }
                Some(s) => {
                    if let Some(w) = worker {
                        if let Some(denied) = socket_denied(w, s) {
                            problems += 1;
                            let confidence = if s.acl { 0.55 } else { 0.9 };
                            let mut evidence = vec![
                                self.target_evidence(t, "nginx's workers connect here"),
                                Evidence::new("host", path.clone(), denied),
                                Evidence::new(
                                    "host",
                                    "nginx workers",
                                    format!(
                                        "run as {} (uid {}, groups {:?}) — {}",
                                        w.user, w.uid, w.groups, w.source
                                    ),
                                ),
                            ];
                            if let Some((c, p)) = pool {
                                for key in ["listen.owner", "listen.group", "listen.mode"] {
                                    if let Some(v) = p.get(key) {
                                        evidence.push(self.fpm_line(
                                            c,
                                            v.at,
                                            &format!("pool [{}]", p.name),
                                        ));
                                    }
                                }
                            }
                            self.find("unix-socket-permission", confidence, evidence);
                        }
                    }
                }
                None => {}
            }
            // A pool whose socket does not exist yet: judge its settings.
            if fact.is_none_or(|s| !s.exists) {
                if let (Some(w), Some((c, p))) = (worker, pool) {
                    if let Some(why) = pool_denies(w, p) {
                        problems += 1;
                        let mut evidence =
                            vec![self.target_evidence(t, "nginx's workers connect here")];
                        for key in [
                            "listen.owner",
                            "listen.group",
                            "listen.mode",
                            "listen.acl_users",
                            "listen.acl_groups",
                        ] {
                            if let Some(v) = p.get(key) {
                                evidence.push(self.fpm_line(c, v.at, &why));
                            }
                        }
                        evidence.push(Evidence::new(
                            "host",
                            "nginx workers",
                            format!("run as {} (uid {}) — {}", w.user, w.uid, w.source),
                        ));
                        self.find("unix-socket-permission", 0.7, evidence);
                    }
                }
            }
        }
        if !seen.is_empty() {
            let status = if problems == 0 {
                Status::Pass
            } else {
                Status::Fail
            };
            self.check(
                "unix sockets",
                status,
                format!(
                    "{} checked, {}",
                    plural(seen.len(), "socket", "sockets"),
                    plural(problems, "problem", "problems")
                ),
            );
        }
    }

    /// fastcgi_read_timeout against the pool's request_terminate_timeout.
    fn fastcgi_timeouts(&mut self) {
        let f = self.facts;
        let mut seen = std::collections::HashSet::new();
        for t in &f.model.targets {
            if t.kind != PassKind::Fastcgi {
                continue;
            }
            let Some((c, p)) = self.pool_at(&t.dest_address()) else {
                continue;
            };
            let Some(term) = p.terminate_timeout_secs().filter(|s| *s > 0) else {
                continue;
            };
            let Some(read) = t.settings.read_timeout().ms() else {
                continue;
            };
            if !seen.insert((t.settings.read_timeout().at, p.name.clone())) {
                continue;
            }
            let term_ms = term * 1000;
            let rt = p
                .get("request_terminate_timeout")
                .expect("terminate_timeout_secs found it");
            if read < term_ms {
                let evidence = vec![
                    self.target_evidence(t, &format!("pool [{}]", p.name)),
                    self.setting(
                        "fastcgi_read_timeout",
                        t.settings.read_timeout(),
                        &format!("nginx gives up after {} s (504) …", read / 1000),
                    ),
                    self.fpm_line(
                        c,
                        rt.at,
                        &format!("… while PHP may run for {term} s; the work goes on for nobody"),
                    ),
                ];
                self.find("proxy-timeout-too-short", 0.5, evidence);
            } else if term_ms < read {
                let evidence = vec![
                    self.target_evidence(t, &format!("pool [{}]", p.name)),
                    self.fpm_line(c, rt.at, &format!("PHP-FPM kills a request after {term} s: nginx then gets a closed connection (502) …")),
                    self.setting("fastcgi_read_timeout", t.settings.read_timeout(), &format!("… before its own {} s timeout", read / 1000)),
                ];
                self.find("fpm-execution-timeout", 0.5, evidence);
            }
        }
    }

    /// Timeouts below what the access log shows the upstreams need.
    fn access_logs(&mut self) {
        let f = self.facts;
        for (path, result) in &f.access {
            let stats = match result {
                Ok(s) => s,
                Err(e) => {
                    self.check("access log", Status::Warn, e.clone());
                    continue;
                }
            };
            if !stats.has_upstream_times {
                self.check(
                    "access log",
                    Status::Skip,
                    format!(
                        "{}: its format logs no $upstream_addr and $upstream_response_time",
                        path.display()
                    ),
                );
                continue;
            }
            let before = self.findings.len();
            for u in &stats.upstreams {
                self.compare_times(stats, u);
            }
            let status = if self.findings.len() > before {
                Status::Fail
            } else {
                Status::Pass
            };
            self.check(
                "access log",
                status,
                format!(
                    "{}: {} lines, {} upstream addresses",
                    path.display(),
                    stats.lines,
                    stats.upstreams.len()
                ),
            );
        }
    }

    fn compare_times(
        &mut self,
        stats: &AccessStats,
        u: &crate::collect::config::access::UpstreamTimes,
    ) {
        let f = self.facts;
        let mut done = std::collections::HashSet::new();
        for t in &f.model.targets {
            if !target_addresses(f, t).iter().any(|a| a == &u.address) {
                continue;
            }
            let Some(limit) = t.settings.read_timeout().ms() else {
                continue;
            };
            if !done.insert(t.settings.read_timeout().at) {
                continue;
            }
            let near = limit * 9 / 10;
            if u.max_ms < near && u.p99_ms < limit * 8 / 10 {
                continue;
            }
            let confidence = if u.gateway_timeouts > 0 { 0.8 } else { 0.6 };
            let name = format!(
                "{}_read_timeout",
                if t.kind == PassKind::Stream {
                    "proxy"
                } else {
                    t.kind.directive().trim_end_matches("_pass")
                }
            );
            let evidence = vec![
                Evidence::new(
                    "access-log",
                    format!("{}:{}", stats.path.display(), u.slowest_line),
                    format!(
                        "{} requests to {}: slowest {:.3} s, p99 {:.3} s, {} answered 504",
                        u.requests,
                        u.address,
                        u.max_ms as f64 / 1000.0,
                        u.p99_ms as f64 / 1000.0,
                        u.gateway_timeouts
                    ),
                ),
                self.setting(
                    &name,
                    t.settings.read_timeout(),
                    &format!(
                        "nginx waits {:.1} s for this upstream",
                        limit as f64 / 1000.0
                    ),
                ),
            ];
            self.find("proxy-timeout-too-short", confidence, evidence);
        }
    }

    /// A group of one server with max_fails.
    fn single_servers(&mut self) {
        let f = self.facts;
        for g in &f.model.upstreams {
            // With a backup server, max_fails decides when the backup takes over: it matters.
            let active: Vec<_> = g.servers.iter().collect();
            if active.len() != 1 || !active[0].max_fails_set {
                continue;
            }
            let s = active[0];
            let by_name = s
                .address
                .as_ref()
                .is_some_and(|a| !a.host_is_ip() && matches!(a, Address::Tcp { .. }));
            if by_name {
                let why = "one server, but a name: each address it resolves to is a peer, and when max_fails marks them all failed nginx answers \"no live upstreams\"";
                self.find("no-live-upstreams", 0.3, vec![self.line(s.loc, why)])
                    .confirm_with("compare `getent ahosts NAME` with the error log's \"no live upstreams\" lines");
            } else {
                self.check(&format!("upstream {}", g.name), Status::Warn, format!("{}: max_fails has no effect with a single server (nginx never marks it failed)", self.path(s.loc)));
            }
        }
    }

    /// worker_connections against the file descriptor limit.
    fn limits(&mut self) {
        let m = &self.facts.model.main;
        let (Some(conns), Some(nofile)) = (&m.worker_connections, &m.worker_rlimit_nofile) else {
            return;
        };
        let (Ok(c), Ok(n)) = (conns.value.parse::<u64>(), nofile.value.parse::<u64>()) else {
            return;
        };
        // A proxied request holds two descriptors: the client's and the upstream's.
        if c * 2 > n {
            let evidence = vec![
                self.setting(
                    "worker_connections",
                    conns,
                    "each proxied request uses two file descriptors …",
                ),
                self.setting(
                    "worker_rlimit_nofile",
                    nofile,
                    &format!("… but a worker may open only {n}"),
                ),
            ];
            self.find("fd-exhaustion", 0.4, evidence);
        }
    }

    /// Running in a container changes what loopback means; the live checks use it.
    fn container(&mut self) {
        let f = self.facts;
        let loopback = f
            .model
            .targets
            .iter()
            .filter(|t| is_loopback_target(t))
            .count();
        if f.in_container && loopback > 0 {
            self.check(
                "container",
                Status::Warn,
                format!(
                    "running in a container: {} dial loopback, which is this container",
                    plural(loopback, "target", "targets")
                ),
            );
        }
    }

    /// What the live checks found.
    fn live(&mut self) {
        let f = self.facts;
        let Some(results) = &f.live else {
            self.check("live checks", Status::Skip, "--no-live");
            return;
        };
        for r in results {
            self.live_result(r);
        }
        self.live_groups(results);
    }

    /// Upstream groups where some servers answer and others do not (only some requests fail),
    /// or none does (nginx marks them all failed: "no live upstreams").
    fn live_groups(&mut self, results: &[LiveResult]) {
        let f = self.facts;
        for g in &f.model.upstreams {
            let Some(&first) = g.used_by.first() else {
                continue;
            };
            let mut up = Vec::new();
            let mut down = Vec::new();
            for s in g.servers.iter().filter(|s| !s.backup && !s.down) {
                let Some(address) = &s.address else { continue };
                let matches = |r: &&LiveResult| {
                    r.endpoint.targets.contains(&first)
                        && match (&r.endpoint.address, address) {
                            (
                                Address::Tcp { host: a, port: pa },
                                Address::Tcp { host: b, port: pb },
                            ) => a == b && (pa == pb || pb.is_none()),
                            (x, y) => x == y,
                        }
                };
                let Some(r) = results.iter().find(matches) else {
                    continue;
                };
                if r.attempts.iter().any(|a| a.connect == Connect::Ok) {
                    up.push(s);
                } else if !r.attempts.is_empty()
                    || r.resolution.as_ref().is_some_and(|x| x.error.is_some())
                {
                    down.push(s);
                }
            }
            if down.is_empty() {
                continue;
            }
            let mut evidence = vec![self.line(
                g.loc,
                &format!(
                    "upstream \"{}\": {} of {} servers do not accept connections",
                    g.name,
                    down.len(),
                    down.len() + up.len()
                ),
            )];
            for s in &down {
                evidence
                    .push(self.line(s.loc, "does not accept connections (see the live checks)"));
            }
            if up.is_empty() {
                self.find("no-live-upstreams", 0.6, evidence)
                    .confirm_with("after max_fails failures nginx marks each server failed for fail_timeout and answers \"no live upstreams\"; fix the servers underneath");
            } else {
                self.find("partial-backend-failure", 0.75, evidence)
                    .confirm_with("requests balanced to the failing servers get 502 (or are retried, per proxy_next_upstream); count them per upstream address in the access log");
            }
        }
    }

    fn live_result(&mut self, r: &LiveResult) {
        let f = self.facts;
        let e = &r.endpoint;
        let Some(&first) = e.targets.first() else {
            return;
        };
        let t = &f.model.targets[first];
        let name = format!("live {} ({:?})", e.address, e.expect).to_lowercase();
        let mut summary: Vec<String> = Vec::new();
        let mut status = Status::Pass;
        if let Some(res) = &r.resolution {
            match &res.error {
                Some(err) => {
                    summary.push(format!(
                        "{} did not resolve via {}: {err}",
                        res.name, res.via
                    ));
                    status = Status::Fail;
                    let evidence = vec![
                        self.target_evidence(t, &format!("names {}", res.name)),
                        Evidence::new(
                            "live-check",
                            format!("resolve {}", res.name),
                            format!("{} via {} after {} ms", err, res.via, res.ms),
                        ),
                    ];
                    self.find("upstream-dns-unresolvable", 0.9, evidence);
                }
                None => summary.push(format!(
                    "{} → {} ({})",
                    res.name,
                    res.addrs
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(", "),
                    res.via
                )),
            }
        }
        let ok: Vec<&crate::collect::config::live::Attempt> = r
            .attempts
            .iter()
            .filter(|a| a.connect == Connect::Ok)
            .collect();
        for a in &r.attempts {
            let step = format!("connect {}", a.addr);
            match &a.connect {
                Connect::Ok => summary.push(format!("{} connected in {} ms", a.addr, a.connect_ms)),
                c => {
                    status = Status::Fail;
                    summary.push(format!("{}: {}", a.addr, c.label()));
                    let partial = !ok.is_empty();
                    let ev = Evidence::new(
                        "live-check",
                        step,
                        format!("{} after {} ms", c.label(), a.connect_ms),
                    );
                    let mut evidence = vec![self.target_evidence(t, "nginx connects here"), ev];
                    let (cause, confidence) = match c {
                        Connect::Refused => ("upstream-refused", 0.9),
                        Connect::Timeout => ("upstream-connect-timeout", 0.8),
                        Connect::Missing => ("unix-socket-missing", 0.95),
                        Connect::Denied => ("unix-socket-permission", 0.9),
                        Connect::QueueFull => ("listen-backlog-overflow", 0.8),
                        Connect::Unreachable => ("upstream-unreachable", 0.9),
                        Connect::Other(_) => ("upstream-refused", 0.3),
                        Connect::Ok => unreachable!(),
                    };
                    if partial
                        && r.resolution
                            .as_ref()
                            .is_some_and(|res| has_both_families(&res.addrs))
                    {
                        evidence.push(Evidence::new(
                            "live-check",
                            "other addresses",
                            format!("{} of the name's addresses accept connections", ok.len()),
                        ));
                        self.find("upstream-address-family", 0.9, evidence.clone());
                    }
                    if *c == Connect::Refused && f.in_container && is_loopback_target(t) {
                        self.find("container-loopback", 0.45, evidence.clone())
                            .confirm_with("is the application in this same container? If not, point nginx at its service name");
                    }
                    if *c == Connect::Refused && !r.nearby.is_empty() {
                        self.nearby_findings(a, r, evidence.clone());
                        self.find(cause, 0.6, evidence);
                    } else {
                        self.find(cause, confidence, evidence);
                    }
                }
            }
            if let Some(answer) = &a.answer {
                summary.push(format!("answered: {}", answer.label()));
                if let Some((why, cause, confidence)) = mismatch(e.expect, answer) {
                    status = Status::Fail;
                    let evidence = vec![
                        self.target_evidence(
                            t,
                            &format!("nginx speaks {:?} here", e.expect).to_lowercase(),
                        ),
                        Evidence::new(
                            "live-check",
                            format!("sniff {}", a.addr),
                            format!("{} answered: {why}", a.addr),
                        ),
                    ];
                    self.find(cause, confidence, evidence);
                }
            }
            if let Some(tls) = &a.tls {
                if let (Some(Err(without)), Some(Ok(version))) = (&tls.as_configured, &tls.with_sni)
                {
                    status = Status::Fail;
                    let evidence = vec![
                        self.target_evidence(t, "nginx sends no SNI here"),
                        Evidence::new(
                            "live-check",
                            format!("tls {} without SNI", a.addr),
                            format!("handshake failed: {without}"),
                        ),
                        Evidence::new(
                            "live-check",
                            format!(
                                "tls {} with SNI {}",
                                a.addr,
                                e.sni_name.clone().unwrap_or_default()
                            ),
                            format!("handshake succeeded ({version})"),
                        ),
                    ];
                    self.find("upstream-tls-handshake", 0.95, evidence)
                        .confirm_with("set `proxy_ssl_server_name on;`");
                } else if let Some(Err(err)) = &tls.as_configured {
                    status = Status::Fail;
                    let evidence = vec![
                        self.target_evidence(t, "TLS upstream"),
                        Evidence::new(
                            "live-check",
                            format!("tls {}", a.addr),
                            format!("handshake failed: {err}"),
                        ),
                    ];
                    self.find("upstream-tls-handshake", 0.7, evidence);
                }
            }
        }
        if status == Status::Pass && r.attempts.is_empty() {
            status = Status::Skip;
        }
        self.checks
            .push(Check::new(name, status, summary.join("; "), r.ms));
    }

    /// A refused port with a listener nearby: the wrong port, or the right port on loopback only.
    fn nearby_findings(
        &mut self,
        a: &crate::collect::config::live::Attempt,
        r: &LiveResult,
        base: Vec<Evidence>,
    ) {
        let Ok(addr) = a.addr.parse::<std::net::SocketAddr>() else {
            return;
        };
        if let Some(l) = r.nearby.first() {
            let who = match (&l.process, l.pid) {
                (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
                _ => "a process".to_string(),
            };
            let mut evidence = base;
            if l.addr.port() == addr.port() {
                let family = |a: &std::net::SocketAddr| if a.is_ipv4() { 4 } else { 6 };
                if family(&l.addr) != family(&addr)
                    && addr.ip().is_loopback()
                    && l.addr.ip().is_loopback()
                {
                    // [::1] refused while 127.0.0.1 listens (or the reverse): the loopback
                    // address of the other family, as when "localhost" means both. Not
                    // loopback-only.
                    evidence.push(Evidence::new(
                        "host",
                        format!("listener {}", l.addr),
                        format!(
                            "{who} listens on {} (IPv{}), not on {} (IPv{})",
                            l.addr,
                            family(&l.addr),
                            addr,
                            family(&addr)
                        ),
                    ));
                    self.find("upstream-address-family", 0.85, evidence)
                        .confirm_with(format!(
                            "point nginx at {} rather than a name that also means {}, or make the application listen on both",
                            l.addr,
                            addr.ip()
                        ));
                    return;
                }
                evidence.push(Evidence::new(
                    "host",
                    format!("listener {}", l.addr),
                    format!("{who} listens on {} only, not on {}", l.addr, addr.ip()),
                ));
                self.find("upstream-listens-localhost", 0.85, evidence)
                    .confirm_with(format!(
                        "make the application listen on {} (or 0.0.0.0), or point nginx at {}",
                        addr.ip(),
                        l.addr
                    ));
                return;
            }
            evidence.push(Evidence::new(
                "host",
                format!("listener {}", l.addr),
                format!(
                    "{who} listens on port {}, {} away from {}",
                    l.addr.port(),
                    l.addr.port().abs_diff(addr.port()),
                    addr.port()
                ),
            ));
            let confidence = if l.addr.port().abs_diff(addr.port()) <= 10 {
                0.8
            } else {
                0.55
            };
            self.find("upstream-port-mismatch", confidence, evidence)
                .confirm_with(format!(
                    "is {who} the application? Then point nginx at port {}",
                    l.addr.port()
                ));
        }
    }
}

impl Target {
    /// The fixed address of a target (for matching pools); an empty host otherwise.
    fn dest_address(&self) -> Address {
        match &self.dest {
            Dest::Address { address } => address.clone(),
            _ => Address::Tcp {
                host: String::new(),
                port: None,
            },
        }
    }
}

/// When the answer does not fit what nginx speaks: (why, cause, confidence).
fn mismatch(expect: Expect, answer: &Answer) -> Option<(String, &'static str, f64)> {
    let plain = matches!(
        expect,
        Expect::Http | Expect::Grpc | Expect::Uwsgi | Expect::Scgi | Expect::Memcached
    );
    match answer {
        Answer::Tls { .. } if plain => Some((
            "a TLS server: nginx speaks plain text to it".into(),
            "protocol-mismatch",
            0.9,
        )),
        Answer::Http { .. } if expect.is_tls() => Some((
            "plain HTTP: nginx starts a TLS handshake with it".into(),
            "protocol-mismatch",
            0.9,
        )),
        Answer::Fastcgi if expect != Expect::Fastcgi => Some((
            "a FastCGI server (PHP-FPM)".into(),
            "protocol-mismatch",
            0.9,
        )),
        Answer::Http { .. } if matches!(expect, Expect::Fastcgi | Expect::Uwsgi | Expect::Scgi) => {
            Some((
                "an HTTP server, not the binary protocol nginx speaks here".into(),
                "protocol-mismatch",
                0.85,
            ))
        }
        Answer::Tls { .. } if expect == Expect::Fastcgi => {
            Some(("a TLS server, not FastCGI".into(), "protocol-mismatch", 0.9))
        }
        Answer::Http { status, server, .. }
            if (502..=504).contains(status) && expect == Expect::Http =>
        {
            Some((
                format!(
                    "status {status}{}: the upstream is itself a gateway that failed",
                    server
                        .as_ref()
                        .map(|s| format!(" from \"{s}\""))
                        .unwrap_or_default()
                ),
                "upstream-5xx-passthrough",
                0.6,
            ))
        }
        Answer::Closed if expect == Expect::Http => Some((
            "closed the connection without answering a HEAD request".into(),
            "upstream-premature-close",
            0.6,
        )),
        Answer::Silent if expect == Expect::Http => Some((
            "no answer to a HEAD request within the deadline".into(),
            "upstream-read-timeout",
            0.5,
        )),
        _ => None,
    }
}

fn is_loopback_target(t: &Target) -> bool {
    matches!(&t.dest, Dest::Address { address: Address::Tcp { host, .. } } if host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback()))
}

fn has_both_families(addrs: &[IpAddr]) -> bool {
    addrs.iter().any(|a| a.is_ipv4()) && addrs.iter().any(|a| a.is_ipv6())
}

/// Whether two listen/target addresses are the same place.
fn same_place(listen: &Address, target: &Address) -> bool {
    match (listen, target) {
        (Address::Unix { path: a }, Address::Unix { path: b }) => {
            a == b
                || matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
        }
        (
            Address::Tcp {
                host: lh,
                port: Some(lp),
            },
            Address::Tcp {
                host: th,
                port: Some(tp),
            },
        ) if lp == tp => {
            let wildcard = matches!(lh.as_str(), "*" | "0.0.0.0" | "::" | "");
            let local =
                |h: &str| h == "localhost" || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            wildcard || lh == th || (local(lh) && local(th))
        }
        _ => false,
    }
}

/// The `host:port` strings nginx would log as `$upstream_addr` for a target.
fn target_addresses(f: &Facts, t: &Target) -> Vec<String> {
    let mut out = Vec::new();
    match &t.dest {
        Dest::Address { address } => out.push(address.to_string()),
        Dest::Group { index, .. } => out.extend(
            f.model.upstreams[*index]
                .servers
                .iter()
                .filter_map(|s| s.address.as_ref().map(|a| a.to_string())),
        ),
        Dest::Variable { candidates, .. } => out.extend(candidates.iter().cloned()),
    }
    if let Some(results) = &f.live {
        for r in results {
            if r.endpoint.targets.contains(
                &f.model
                    .targets
                    .iter()
                    .position(|x| std::ptr::eq(&**x, t))
                    .unwrap_or(usize::MAX),
            ) {
                out.extend(r.attempts.iter().map(|a| a.addr.clone()));
            }
        }
    }
    out
}

/// Whether `who` may use a file of this owner/mode: `want` 2 = write, 1 = search/execute.
fn permits(who: &Identity, uid: u32, gid: u32, mode: u32, want: u32) -> bool {
    if who.uid == 0 {
        return true;
    }
    let class = if who.uid == uid {
        (mode >> 6) & 7
    } else if who.gid == gid || who.groups.contains(&gid) {
        (mode >> 3) & 7
    } else {
        mode & 7
    };
    class & want != 0
}

fn mode_string(mode: u32) -> String {
    let mut s = String::new();
    for shift in [6, 3, 0] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(if b & 1 != 0 { 'x' } else { '-' });
    }
    s
}

fn owner_names(uid: u32, gid: u32) -> String {
    use crate::collect::config::discover::{group_name, user_name};
    let user = user_name(uid).unwrap_or_else(|| uid.to_string());
    let group = group_name(gid).unwrap_or_else(|| gid.to_string());
    format!("owner {user}:{group}")
}

/// Why `who` cannot connect to an existing socket (a directory it cannot enter, or no write
/// permission on the socket), or `None`.
fn socket_denied(who: &Identity, s: &SocketFact) -> Option<String> {
    for (dir, uid, gid, mode) in &s.dirs {
        if !permits(who, *uid, *gid, *mode, 1) {
            return Some(format!(
                "directory {dir} is {} ({}): {} may not enter it",
                mode_string(*mode),
                owner_names(*uid, *gid),
                who.user
            ));
        }
    }
    if !permits(who, s.uid, s.gid, s.mode, 2) {
        return Some(format!("the socket is s{} ({}): {} may not write to it, so connect() fails with (13: Permission denied)", mode_string(s.mode), owner_names(s.uid, s.gid), who.user));
    }
    None
}

/// Why a pool's socket, once created, will refuse `who`, or `None`.
fn pool_denies(who: &Identity, p: &Pool) -> Option<String> {
    if who.uid == 0 {
        return None;
    }
    if p.get("listen.acl_users").is_some() || p.get("listen.acl_groups").is_some() {
        let users = p
            .get("listen.acl_users")
            .map(|v| v.value.clone())
            .unwrap_or_default();
        let groups = p
            .get("listen.acl_groups")
            .map(|v| v.value.clone())
            .unwrap_or_default();
        let in_users = users.split(',').any(|u| u.trim() == who.user);
        let in_groups = groups
            .split(',')
            .filter_map(|g| crate::collect::config::discover::group_id(g.trim()))
            .any(|g| g == who.gid || who.groups.contains(&g));
        return (!in_users && !in_groups).then(|| {
            format!(
                "the socket's ACL admits users [{users}] and groups [{groups}], not {}",
                who.user
            )
        });
    }
    let mode = p.listen_mode();
    // Without listen.owner/listen.group the socket belongs to the master's user, root.
    let uid = p
        .get("listen.owner")
        .and_then(|v| crate::collect::config::discover::user_id(&v.value))
        .unwrap_or(0);
    let gid = p
        .get("listen.group")
        .and_then(|v| crate::collect::config::discover::group_id(&v.value))
        .unwrap_or(0);
    (!permits(who, uid, gid, mode, 2)).then(|| {
        format!(
            "the socket will be s{} ({}): {} may not write to it",
            mode_string(mode),
            owner_names(uid, gid),
            who.user
        )
    })
}

/// A time as `YYYY-MM-DD HH:MM:SS UTC`.
fn humantime(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    time::OffsetDateTime::from_unix_timestamp(secs)
        .map(|d| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                d.year(),
                d.month() as u8,
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            )
        })
        .unwrap_or_else(|_| secs.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32) -> Identity {
        Identity {
            user: "www-data".into(),
            uid,
            gid,
            groups: vec![gid],
            source: "test".into(),
        }
    }

    #[test]
    fn socket_permissions() {
        let fact = |uid, gid, mode| SocketFact {
            path: "/run/x.sock".into(),
            exists: true,
            is_socket: true,
            uid,
            gid,
            mode,
            acl: false,
            dirs: vec![("/run".into(), 0, 0, 0o755)],
        };
        assert!(socket_denied(&who(33, 33), &fact(0, 0, 0o660)).is_some());
        assert!(socket_denied(&who(33, 33), &fact(0, 33, 0o660)).is_none());
        assert!(socket_denied(&who(33, 33), &fact(33, 0, 0o600)).is_none());
        assert!(socket_denied(&who(33, 33), &fact(0, 0, 0o666)).is_none());
        assert!(socket_denied(&who(0, 0), &fact(0, 0, 0o600)).is_none());
        let mut closed_dir = fact(0, 0, 0o666);
        closed_dir.dirs.push(("/run/php".into(), 0, 0, 0o700));
        assert!(socket_denied(&who(33, 33), &closed_dir)
            .unwrap()
            .contains("/run/php"));
    }

    #[test]
    fn places() {
        let tcp = |h: &str, p| Address::Tcp {
            host: h.into(),
            port: Some(p),
        };
        assert!(same_place(&tcp("*", 9000), &tcp("127.0.0.1", 9000)));
        assert!(same_place(&tcp("127.0.0.1", 9000), &tcp("localhost", 9000)));
        assert!(!same_place(
            &tcp("127.0.0.1", 9000),
            &tcp("127.0.0.1", 9001)
        ));
    }

    #[test]
    fn mismatches() {
        assert_eq!(
            mismatch(
                Expect::Http,
                &Answer::Tls {
                    version: "TLSv1_3".into(),
                    ms: 1
                }
            )
            .unwrap()
            .1,
            "protocol-mismatch"
        );
        assert_eq!(
            mismatch(
                Expect::Https,
                &Answer::Http {
                    status: 200,
                    server: None,
                    ms: 1
                }
            )
            .unwrap()
            .1,
            "protocol-mismatch"
        );
        assert_eq!(
            mismatch(Expect::Http, &Answer::Fastcgi).unwrap().1,
            "protocol-mismatch"
        );
        assert!(mismatch(
            Expect::Http,
            &Answer::Http {
                status: 200,
                server: None,
                ms: 1
            }
        )
        .is_none());
        assert!(mismatch(Expect::Fastcgi, &Answer::Fastcgi).is_none());
    }
}

#[cfg(test)]
mod catalog_tests {
    /// Every cause id these rules name is in the catalog (so every finding renders its title,
    /// explanation and fix in both languages).
    #[test]
    fn every_cause_named_here_is_in_the_catalog() {
        let source = include_str!("config.rs");
        let re = regex::Regex::new(r#""([a-z0-9]+(?:-[a-z0-9]+)+)""#).unwrap();
        let mut named = 0;
        for cap in re.captures_iter(source) {
            let id = &cap[1];
            let is_cause = source.contains(&format!("find(\"{id}\""))
                || source.contains(&format!("(\"{id}\", 0."));
            if is_cause {
                named += 1;
                assert!(
                    crate::catalog::catalog().get(id).is_some(),
                    "{id} is not in the catalog"
                );
            }
        }
        assert!(named >= 20, "only {named} cause ids found");
    }
}
