//! Name resolution, two ways side by side:
//!
//! - **the system** (getaddrinfo, through the dns-lookup crate): what a browser on this machine
//!   gets, /etc/hosts, nsswitch and any local cache included. It tells little: the addresses,
//!   the canonical name, and an `EAI_*` code on failure.
//! - **a resolver** (hickory-resolver), either the servers of /etc/resolv.conf asked as one, or
//!   each `--resolver` server asked on its own: A and AAAA with their TTLs, the CNAME chain, and
//!   the exact failure: NXDOMAIN, SERVFAIL (or REFUSED), or no answer in time.
//!
//! When the two disagree, the client may be resolving the site to an old address (a stale
//! /etc/hosts line, a cache after a move): the rules call that `client-dns-mismatch`.
//!
//! The resolver never reads /etc/hosts and keeps no cache, so that it shows DNS itself.

use super::{ms, Failure, FailureKind, Phase, ProbeOptions};
use hickory_resolver::config::{
    NameServerConfig, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::proto::xfer::Protocol;
use hickory_resolver::proto::ProtoErrorKind;
use hickory_resolver::{Name, Resolver};
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tokio::time::Instant;

/// How long one resolver query may wait for an answer (and the system lookup in all).
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// Who answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AnswerSource {
    /// getaddrinfo.
    System,
    /// A DNS server asked directly.
    Resolver,
}

/// One DNS record of an answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRecord {
    pub name: String,
    /// `A`, `AAAA`, `CNAME`.
    pub rtype: String,
    pub data: String,
    pub ttl: u32,
}

/// What one source said about the name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsAnswer {
    /// `system (getaddrinfo)`, `resolver 127.0.0.53:53`, `resolv.conf (10.0.0.2:53)`.
    pub label: String,
    pub source: AnswerSource,
    /// The server asked (for a resolver).
    pub server: Option<String>,
    pub ms: f64,
    /// The addresses, in the order given.
    pub addresses: Vec<IpAddr>,
    /// The records (a resolver only): CNAMEs, A and AAAA, with TTLs.
    pub records: Vec<DnsRecord>,
    /// The name and every CNAME target after it (the system gives only the last).
    pub cname_chain: Vec<String>,
    pub failure: Option<Failure>,
}

/// Every source's answer for one name.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DnsReport {
    pub host: String,
    pub answers: Vec<DnsAnswer>,
}

impl DnsReport {
    /// The addresses to dial and where they come from: the system's answer when it has
    /// addresses (that is what a browser uses), else the first resolver's that has some.
    pub fn chosen_addresses(&self) -> (String, Vec<IpAddr>) {
        let mut answers: Vec<&DnsAnswer> = self.answers.iter().collect();
        answers.sort_by_key(|a| a.source != AnswerSource::System);
        answers
            .into_iter()
            .find(|a| !a.addresses.is_empty())
            .map(|a| (a.label.clone(), a.addresses.clone()))
            .unwrap_or_else(|| ("none".to_string(), Vec::new()))
    }

    /// When no source gave an address: the failure to report (the system's first, as the
    /// browser would see it).
    pub fn failure(&self) -> Option<Failure> {
        if self.answers.iter().any(|a| !a.addresses.is_empty()) {
            return None;
        }
        let mut answers: Vec<&DnsAnswer> = self.answers.iter().collect();
        answers.sort_by_key(|a| a.source != AnswerSource::System);
        answers.iter().find_map(|a| a.failure.clone()).or_else(|| {
            Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsNoAddress,
                format!("{} has no A or AAAA record", self.host),
            ))
        })
    }
}

/// Asks every configured source about `host` at once, before `deadline`.
pub async fn resolve_all(host: &str, options: &ProbeOptions, deadline: Instant) -> DnsReport {
    let mut tasks = tokio::task::JoinSet::new();
    if options.system_dns {
        let h = host.to_string();
        tasks.spawn(async move { (0usize, system(&h, deadline).await) });
    }
    if options.resolvers.is_empty() {
        let h = host.to_string();
        tasks.spawn(async move { (1usize, resolv_conf(&h, deadline).await) });
    } else {
        for (i, server) in options.resolvers.iter().enumerate() {
            let h = host.to_string();
            let server = *server;
            tasks.spawn(async move { (2 + i, resolver(&h, server, deadline).await) });
        }
    }
    let mut answers: Vec<(usize, DnsAnswer)> = Vec::new();
    while let Some(done) = tasks.join_next().await {
        if let Ok(answer) = done {
            answers.push(answer);
        }
    }
    answers.sort_by_key(|(i, _)| *i);
    DnsReport {
        host: host.to_string(),
        answers: answers.into_iter().map(|(_, a)| a).collect(),
    }
}

/// The system's answer (getaddrinfo), within `deadline`. getaddrinfo itself cannot be
/// cancelled: it runs on a blocking thread, which the deadline abandons (glibc's own timeouts
/// end it later).
pub async fn system(host: &str, deadline: Instant) -> DnsAnswer {
    let started = Instant::now();
    let mut answer = DnsAnswer {
        label: "system (getaddrinfo)".to_string(),
        source: AnswerSource::System,
        server: None,
        ms: 0.0,
        addresses: Vec::new(),
        records: Vec::new(),
        cname_chain: Vec::new(),
        failure: None,
    };
    let h = host.to_string();
    let lookup = tokio::task::spawn_blocking(move || {
        let hints = dns_lookup::AddrInfoHints {
            socktype: libc::SOCK_STREAM,
            flags: libc::AI_CANONNAME,
            ..Default::default()
        };
        dns_lookup::getaddrinfo(Some(&h), None, Some(hints))
            .map(|iter| iter.filter_map(Result::ok).collect::<Vec<_>>())
    });
    let result = tokio::time::timeout_at(deadline.min(started + QUERY_TIMEOUT * 3), lookup).await;
    answer.ms = ms(started.elapsed());
    match result {
        Ok(Ok(Ok(infos))) => {
            for info in &infos {
                let ip = info.sockaddr.ip();
                if !answer.addresses.contains(&ip) {
                    answer.addresses.push(ip);
                }
            }
            let canonical = infos.iter().find_map(|i| i.canonname.clone());
            answer.cname_chain.push(host.to_string());
            if let Some(c) = canonical {
                if !c
                    .trim_end_matches('.')
                    .eq_ignore_ascii_case(host.trim_end_matches('.'))
                {
                    answer.cname_chain.push(c);
                }
            }
            if answer.addresses.is_empty() {
                answer.failure = Some(Failure::new(
                    Phase::Dns,
                    FailureKind::DnsNoAddress,
                    format!("getaddrinfo: {host} has no address"),
                ));
            }
        }
        Ok(Ok(Err(e))) => {
            use dns_lookup::LookupErrorKind as K;
            let code = e.error_num();
            let (kind, what) = match e.kind() {
                K::NoName => (FailureKind::DnsNxdomain, "the name does not exist (EAI_NONAME)"),
                K::NoData => (FailureKind::DnsNoAddress, "the name has no address (EAI_NODATA)"),
                K::Again => (
                    FailureKind::DnsServfail,
                    "temporary failure: the resolver answered SERVFAIL or did not answer (EAI_AGAIN)",
                ),
                K::Fail => (FailureKind::DnsServfail, "the resolver failed (EAI_FAIL)"),
                _ => (FailureKind::DnsOther, "getaddrinfo failed"),
            };
            answer.failure = Some(Failure::new(
                Phase::Dns,
                kind,
                format!("getaddrinfo({host}): {what}, code {code}"),
            ));
        }
        Ok(Err(join)) => {
            answer.failure = Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsOther,
                format!("getaddrinfo: {join}"),
            ));
        }
        Err(_) => {
            answer.failure = Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsTimeout,
                format!("getaddrinfo({host}): no answer in {} ms", answer.ms.round()),
            ));
        }
    }
    answer
}

/// The servers of /etc/resolv.conf, asked as one resolver (as the system would).
async fn resolv_conf(host: &str, deadline: Instant) -> DnsAnswer {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => {
            let servers: Vec<String> = config
                .name_servers()
                .iter()
                .map(|s| s.socket_addr.to_string())
                .collect();
            let mut seen = Vec::new();
            let servers: Vec<String> = servers
                .into_iter()
                .filter(|s| {
                    !seen.contains(s) && {
                        seen.push(s.clone());
                        true
                    }
                })
                .collect();
            let label = format!("resolv.conf ({})", servers.join(", "));
            ask(host, config, label, Some(servers.join(", ")), deadline).await
        }
        Err(e) => DnsAnswer {
            label: "resolv.conf".to_string(),
            source: AnswerSource::Resolver,
            server: None,
            ms: 0.0,
            addresses: Vec::new(),
            records: Vec::new(),
            cname_chain: Vec::new(),
            failure: Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsOther,
                format!("/etc/resolv.conf could not be read: {e}"),
            )),
        },
    }
}

/// One DNS server, asked directly over UDP (TCP when the answer is truncated).
pub async fn resolver(host: &str, server: SocketAddr, deadline: Instant) -> DnsAnswer {
    let mut udp = NameServerConfig::new(server, Protocol::Udp);
    udp.trust_negative_responses = true;
    let mut tcp = NameServerConfig::new(server, Protocol::Tcp);
    tcp.trust_negative_responses = true;
    let group: NameServerConfigGroup = vec![udp, tcp].into();
    let config = ResolverConfig::from_parts(None, Vec::new(), group);
    ask(
        host,
        config,
        format!("resolver {server}"),
        Some(server.to_string()),
        deadline,
    )
    .await
}

async fn ask(
    host: &str,
    config: ResolverConfig,
    label: String,
    server: Option<String>,
    deadline: Instant,
) -> DnsAnswer {
    let started = Instant::now();
    let mut answer = DnsAnswer {
        label,
        source: AnswerSource::Resolver,
        server,
        ms: 0.0,
        addresses: Vec::new(),
        records: Vec::new(),
        cname_chain: vec![host.to_string()],
        failure: None,
    };
    let mut opts = ResolverOpts::default();
    let remaining = deadline.saturating_duration_since(started);
    opts.timeout = remaining.min(QUERY_TIMEOUT);
    opts.attempts = 1;
    opts.cache_size = 0;
    opts.use_hosts_file = ResolveHosts::Never;
    opts.preserve_intermediates = true;
    opts.edns0 = false;
    // A TCP retry after a UDP timeout would only double the wait.
    opts.try_tcp_on_error = false;
    let resolver = Resolver::builder_with_config(config, TokioConnectionProvider::default())
        .with_options(opts)
        .build();
    let mut name = match Name::from_utf8(host) {
        Ok(n) => n,
        Err(e) => {
            answer.failure = Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsOther,
                format!("{host:?} is not a DNS name: {e}"),
            ));
            return answer;
        }
    };
    if host.contains('.') {
        // A dotted name is asked as it is, not with the search domains appended.
        name.set_fqdn(true);
    }
    let both = async {
        tokio::join!(
            resolver.lookup(name.clone(), RecordType::A),
            resolver.lookup(name.clone(), RecordType::AAAA)
        )
    };
    let (a, aaaa) = match tokio::time::timeout_at(deadline, both).await {
        Ok(pair) => pair,
        Err(_) => {
            answer.ms = ms(started.elapsed());
            answer.failure = Some(Failure::new(
                Phase::Dns,
                FailureKind::DnsTimeout,
                format!(
                    "{}: no answer for {host} in {} ms",
                    answer.label,
                    answer.ms.round()
                ),
            ));
            return answer;
        }
    };
    answer.ms = ms(started.elapsed());
    let mut failures = Vec::new();
    for (rtype, result) in [("A", a), ("AAAA", aaaa)] {
        match result {
            Ok(lookup) => {
                for record in lookup.record_iter() {
                    let (rt, data) = match record.data() {
                        RData::A(a) => {
                            let ip = IpAddr::V4(a.0);
                            if !answer.addresses.contains(&ip) {
                                answer.addresses.push(ip);
                            }
                            ("A", a.0.to_string())
                        }
                        RData::AAAA(a) => {
                            let ip = IpAddr::V6(a.0);
                            if !answer.addresses.contains(&ip) {
                                answer.addresses.push(ip);
                            }
                            ("AAAA", a.0.to_string())
                        }
                        RData::CNAME(c) => {
                            let target = c.0.to_utf8().trim_end_matches('.').to_string();
                            if !answer.cname_chain.contains(&target) {
                                answer.cname_chain.push(target.clone());
                            }
                            ("CNAME", target)
                        }
                        other => (other.record_type().into(), other.to_string()),
                    };
                    let r = DnsRecord {
                        name: record.name().to_utf8().trim_end_matches('.').to_string(),
                        rtype: rt.to_string(),
                        data,
                        ttl: record.ttl(),
                    };
                    if !answer.records.contains(&r) {
                        answer.records.push(r);
                    }
                }
            }
            Err(e) => failures.push(classify(rtype, host, &answer.label, &e)),
        }
    }
    if answer.addresses.is_empty() {
        // The most telling failure: NXDOMAIN, then SERVFAIL, then timeout, then anything.
        failures.sort_by_key(|f| match f.kind {
            FailureKind::DnsNxdomain => 0,
            FailureKind::DnsServfail => 1,
            FailureKind::DnsTimeout => 2,
            FailureKind::DnsNoAddress => 4,
            _ => 3,
        });
        answer.failure = Some(failures.into_iter().next().unwrap_or_else(|| {
            Failure::new(
                Phase::Dns,
                FailureKind::DnsNoAddress,
                format!("{}: {host} has no A or AAAA record", answer.label),
            )
        }));
    }
    answer
}

/// Names a resolver error.
fn classify(rtype: &str, host: &str, label: &str, e: &hickory_resolver::ResolveError) -> Failure {
    let (kind, what) = match e.proto().map(|p| p.kind()) {
        Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => match *response_code {
            ResponseCode::NXDomain => (
                FailureKind::DnsNxdomain,
                "NXDOMAIN: the name does not exist".to_string(),
            ),
            ResponseCode::NoError => (FailureKind::DnsNoAddress, format!("no {rtype} record")),
            ResponseCode::ServFail => (
                FailureKind::DnsServfail,
                "SERVFAIL: the server failed to resolve it".to_string(),
            ),
            ResponseCode::Refused => (
                FailureKind::DnsServfail,
                "REFUSED: the server does not answer this query".to_string(),
            ),
            code => (FailureKind::DnsOther, format!("answer code {code}")),
        },
        Some(ProtoErrorKind::Timeout) => (
            FailureKind::DnsTimeout,
            "no answer before the timeout".to_string(),
        ),
        _ if e.to_string().contains("timed out") => {
            (FailureKind::DnsTimeout, format!("no answer: {e}"))
        }
        _ => (FailureKind::DnsOther, e.to_string()),
    };
    Failure::new(Phase::Dns, kind, format!("{label}: {rtype} {host}: {what}"))
}
