//! The outside view of a site: what a browser goes through, step by step, and which hop
//! answered with the error.
//!
//! A probe walks the request path the way a client does and writes down every fact on the way:
//!
//! ```text
//! DNS (getaddrinfo and a resolver, side by side) ─▶ TCP connect (per address)
//!   ─▶ [HTTP proxy / CONNECT tunnel] ─▶ TLS (chain, expiry, name) ─▶ HTTP/1.1 or HTTP/2
//!   ─▶ status, headers, time to first byte, body (bounded) ─▶ who produced it (signatures)
//! ```
//!
//! - [`dns`]: the system's answer (getaddrinfo) and each resolver's (hickory-resolver), with
//!   NXDOMAIN / SERVFAIL / timeout told apart.
//! - [`tcp`]: connect with a deadline; refused / timeout / unreachable with the errno.
//! - [`tls`]: rustls with the system's roots (plus `--ca-file`); version, cipher, ALPN, the
//!   chain with days to expiry, and every failure named.
//! - [`http`]: an HTTP/1.1 request written by hand and the response read with httparse, so that
//!   broken responses are seen as they are; HTTP/2 (the h2 crate) when ALPN offers it.
//! - [`fingerprint`]: which product produced the response (the signature database).
//! - [`proxy`]: `HTTP(S)_PROXY` / `NO_PROXY`, and the direct attempt compared.
//! - [`stats`]: `--count`, `--concurrency`, `--interval`: histograms, percentiles, failing addresses.
//!
//! The collector does not judge: [`ProbeReport`] holds facts only, and
//! `crate::rules::probe::findings` turns them into findings.
//!
//! Every phase has a deadline ([`ProbeOptions::timeout`] is the total of one request, redirects
//! included) and every read a size bound ([`Limits`]), so a server that never answers, trickles
//! bytes forever, sends endless headers or never closes is cut off and named ([`FailureKind`]).
//!
//! ```no_run
//! use gwdoctor::collect::probe::{probe_blocking, ProbeOptions, ProbeTarget};
//! let target = ProbeTarget::parse("http://127.0.0.1:8080/").unwrap();
//! let report = probe_blocking(&target, &ProbeOptions::default()).unwrap();
//! for request in &report.requests {
//!     println!("{:?}", request.final_status());
//! }
//! ```

pub mod dns;
pub mod fingerprint;
pub mod http;
pub mod proxy;
pub mod stats;
pub mod tcp;
pub mod tls;

use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

pub use fingerprint::Fingerprint;
pub use proxy::ProxySettings;
pub use stats::Stats;

/// At most this many addresses of one name are probed.
pub const MAX_ADDRESSES: usize = 16;
/// The upper bound of `--count`.
pub const MAX_COUNT: u32 = 100_000;
/// The upper bound of `--concurrency`.
pub const MAX_CONCURRENCY: u32 = 1_000;
/// The upper bound of `--max-redirects`.
pub const MAX_REDIRECTS: u32 = 50;
/// How long DNS may take at most, within the total deadline.
pub const DNS_LIMIT: Duration = Duration::from_secs(5);
/// How long a TCP connect may take at most, within the total deadline.
pub const CONNECT_LIMIT: Duration = Duration::from_secs(5);
/// How long a TLS handshake (or a proxy's CONNECT answer) may take at most, within the total.
pub const HANDSHAKE_LIMIT: Duration = Duration::from_secs(5);

/// What to probe: an `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeTarget {
    pub url: Url,
}

impl ProbeTarget {
    /// Parses a URL; a bare `host[:port][/path]` is taken as `http://…` (as curl does). Only
    /// `http` and `https` are accepted, and the URL must name a host.
    pub fn parse(text: &str) -> Result<ProbeTarget, String> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the URL is empty".into());
        }
        let with_scheme = if text.contains("://") {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url = Url::parse(&with_scheme).map_err(|e| {
            format!(
                "{:?} is not a valid URL: {e}",
                crate::redact::redact(text).as_ref()
            )
        })?;
        match url.scheme() {
            "http" | "https" => {}
            other => {
                return Err(format!(
                    "{other}:// URLs are not probed; give an http:// or https:// URL"
                ))
            }
        }
        if url.host().is_none() {
            return Err(format!(
                "{:?} names no host",
                crate::redact::redact(text).as_ref()
            ));
        }
        Ok(ProbeTarget { url })
    }

    /// The host as it is dialled: a name, or an address literal (IPv6 without brackets).
    pub fn host(&self) -> String {
        host_of(&self.url)
    }

    pub fn port(&self) -> u16 {
        self.url.port_or_known_default().unwrap_or(80)
    }

    pub fn is_tls(&self) -> bool {
        self.url.scheme() == "https"
    }
}

/// The host of a URL as it is dialled: a name, or an address literal without brackets.
pub(crate) fn host_of(url: &Url) -> String {
    match url.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(url::Host::Ipv4(a)) => a.to_string(),
        Some(url::Host::Domain(d)) => d.to_string(),
        None => String::new(),
    }
}

/// The URL with its secrets redacted, for reports. A URL without credentials or a query has
/// none, and skips the redactor (whose patterns cost a few milliseconds to compile).
pub(crate) fn shown(url: &Url) -> String {
    if url.username().is_empty() && url.password().is_none() && url.query().is_none() {
        return url.to_string();
    }
    crate::redact::redact(url.as_str()).into_owned()
}

/// Response header fields whose values are secrets (session cookies, tokens).
const SECRET_HEADERS: &[&str] = &[
    "set-cookie",
    "cookie",
    "authorization",
    "proxy-authorization",
    "x-api-key",
    "x-auth-token",
];

/// Replaces the values of [`SECRET_HEADERS`] by `[redacted]`: a report never carries them.
pub(crate) fn redact_headers(headers: &mut [(String, String)]) {
    for (name, value) in headers.iter_mut() {
        if SECRET_HEADERS.iter().any(|s| name.eq_ignore_ascii_case(s)) {
            *value = "[redacted]".to_string();
        }
    }
}

/// `--resolve host:port:addr[,addr…]`: connect to these addresses for this host and port,
/// without asking DNS (as curl's option of the same name).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResolveOverride {
    pub host: String,
    pub port: u16,
    pub addrs: Vec<IpAddr>,
}

impl ResolveOverride {
    /// Parses `host:port:addr[,addr…]`; an IPv6 address may be written in brackets.
    pub fn parse(text: &str) -> Result<ResolveOverride, String> {
        let bad = || format!("--resolve {text:?}: expected HOST:PORT:ADDRESS[,ADDRESS…]");
        let (host, rest) = text.split_once(':').ok_or_else(bad)?;
        let (port, addrs) = rest.split_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let addrs = addrs
            .split(',')
            .map(|a| {
                a.trim()
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .map_err(|_| format!("--resolve {text:?}: {a:?} is not an IP address"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if host.is_empty() || addrs.is_empty() {
            return Err(bad());
        }
        Ok(ResolveOverride {
            host: host.to_ascii_lowercase(),
            port,
            addrs,
        })
    }
}

/// Size bounds of what is read from a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Limits {
    /// The response head (status line and headers) may be this long at most.
    pub max_head: usize,
    /// At most this many header fields.
    pub max_headers: usize,
    /// Reading the body stops after this many bytes (not a failure: the report says so).
    pub max_body: u64,
    /// The first bytes of the body kept for fingerprinting.
    pub keep_body: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head: 64 * 1024,
            max_headers: 128,
            max_body: 16 * 1024 * 1024,
            keep_body: 64 * 1024,
        }
    }
}

/// How to probe.
#[derive(Debug, Clone)]
pub struct ProbeOptions {
    /// The deadline of one request, all phases and redirects included.
    pub timeout: Duration,
    /// `--resolve`: fixed addresses for a host and port.
    pub resolve: Vec<ResolveOverride>,
    /// `--resolver`: DNS servers asked side by side with the system (each on its own); empty:
    /// the servers of /etc/resolv.conf, asked as one resolver.
    pub resolvers: Vec<SocketAddr>,
    /// Ask the system's resolver (getaddrinfo) too. Off: only the resolvers are asked.
    pub system_dns: bool,
    /// Requests in all. With 1, every address of the name is probed once.
    pub count: u32,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Pause between the starts of two requests.
    pub interval: Duration,
    /// `--upstream host:port` (or a URL): the origin or app, probed directly with the same
    /// request.
    pub upstream: Option<String>,
    pub max_redirects: u32,
    /// Continue past a certificate that does not verify (the problem is still reported).
    pub insecure: bool,
    /// Trust anchors added to the system's (`--ca-file`).
    pub extra_roots: Vec<rustls::pki_types::CertificateDer<'static>>,
    /// Offer only HTTP/1.1 in ALPN.
    pub http1_only: bool,
    /// The proxy settings of the environment.
    pub proxy: ProxySettings,
    pub limits: Limits,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        ProbeOptions {
            timeout: Duration::from_secs(10),
            resolve: Vec::new(),
            resolvers: Vec::new(),
            system_dns: true,
            count: 1,
            concurrency: 1,
            interval: Duration::ZERO,
            upstream: None,
            max_redirects: 5,
            insecure: false,
            extra_roots: Vec::new(),
            http1_only: false,
            proxy: ProxySettings::default(),
            limits: Limits::default(),
        }
    }
}

/// The step of the walk a fact or a failure belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    Dns,
    Connect,
    /// The proxy's answer to CONNECT.
    Proxy,
    Tls,
    /// Writing the request.
    Send,
    /// Waiting for and reading the response head.
    Head,
    Body,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Dns => "dns",
            Phase::Connect => "connect",
            Phase::Proxy => "proxy",
            Phase::Tls => "tls",
            Phase::Send => "send",
            Phase::Head => "head",
            Phase::Body => "body",
        }
    }
}

/// What went wrong, named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailureKind {
    // DNS
    /// The name does not exist (NXDOMAIN, EAI_NONAME).
    DnsNxdomain,
    /// The resolver answered SERVFAIL (or REFUSED, or getaddrinfo's EAI_AGAIN / EAI_FAIL).
    DnsServfail,
    /// The resolver did not answer in time.
    DnsTimeout,
    /// The name exists but has no A / AAAA record.
    DnsNoAddress,
    DnsOther,
    // TCP
    /// The connection was refused (RST): nothing listens there.
    Refused,
    /// The connection attempt got no answer before the deadline (dropped SYN).
    ConnectTimeout,
    /// No route to the host or network (ICMP unreachable, EHOSTUNREACH, ENETUNREACH).
    Unreachable,
    ConnectOther,
    // Proxy
    /// The proxy answered CONNECT with something other than 2xx.
    ProxyTunnelRefused,
    // TLS
    CertExpired,
    CertNotYetValid,
    /// The chain does not lead to a trusted root (self-signed, private CA, missing intermediate).
    CertUnknownIssuer,
    /// The certificate is not for this name.
    CertWrongName,
    CertRevoked,
    /// Another certificate problem (bad signature, bad encoding, wrong usage).
    CertOther,
    /// The server sent a TLS alert during the handshake.
    TlsAlert,
    /// No TLS version or cipher in common.
    TlsIncompatible,
    /// The server does not speak TLS on this port (or speaks TLS on a plain-HTTP port).
    ProtocolMismatch,
    TlsOther,
    // HTTP
    /// Writing the request failed.
    SendFailed,
    /// The server closed the connection without sending a byte ("empty reply").
    EmptyReply,
    /// The server reset the connection (RST).
    Reset,
    /// The server closed the connection before the end of the head or body.
    Truncated,
    /// Nothing arrived before the deadline (a server that hangs).
    NoResponse,
    /// Bytes kept arriving but the head or body never completed before the deadline.
    Trickle,
    /// Some bytes arrived, then nothing more until the deadline.
    Stalled,
    /// The body has no length and the server kept the connection open past the deadline.
    NeverCloses,
    /// The response head exceeded the size bound (endless headers).
    HeadTooBig,
    TooManyHeaders,
    /// The answer is not HTTP (no status line: HTTP/0.9 or another protocol).
    NotHttp,
    /// A status line was sent, but the head is malformed.
    InvalidResponse,
    /// The chunked body encoding is broken.
    InvalidChunked,
    /// An HTTP/2 protocol error or stream reset.
    H2Error,
    /// The redirect limit was reached.
    TooManyRedirects,
    /// The redirect target is not a URL that can be followed.
    BadRedirect,
}

impl FailureKind {
    pub fn name(self) -> &'static str {
        match self {
            FailureKind::DnsNxdomain => "dns-nxdomain",
            FailureKind::DnsServfail => "dns-servfail",
            FailureKind::DnsTimeout => "dns-timeout",
            FailureKind::DnsNoAddress => "dns-no-address",
            FailureKind::DnsOther => "dns-other",
            FailureKind::Refused => "refused",
            FailureKind::ConnectTimeout => "connect-timeout",
            FailureKind::Unreachable => "unreachable",
            FailureKind::ConnectOther => "connect-other",
            FailureKind::ProxyTunnelRefused => "proxy-tunnel-refused",
            FailureKind::CertExpired => "cert-expired",
            FailureKind::CertNotYetValid => "cert-not-yet-valid",
            FailureKind::CertUnknownIssuer => "cert-unknown-issuer",
            FailureKind::CertWrongName => "cert-wrong-name",
            FailureKind::CertRevoked => "cert-revoked",
            FailureKind::CertOther => "cert-other",
            FailureKind::TlsAlert => "tls-alert",
            FailureKind::TlsIncompatible => "tls-incompatible",
            FailureKind::ProtocolMismatch => "protocol-mismatch",
            FailureKind::TlsOther => "tls-other",
            FailureKind::SendFailed => "send-failed",
            FailureKind::EmptyReply => "empty-reply",
            FailureKind::Reset => "reset",
            FailureKind::Truncated => "truncated",
            FailureKind::NoResponse => "no-response",
            FailureKind::Trickle => "trickle",
            FailureKind::Stalled => "stalled",
            FailureKind::NeverCloses => "never-closes",
            FailureKind::HeadTooBig => "head-too-big",
            FailureKind::TooManyHeaders => "too-many-headers",
            FailureKind::NotHttp => "not-http",
            FailureKind::InvalidResponse => "invalid-response",
            FailureKind::InvalidChunked => "invalid-chunked",
            FailureKind::H2Error => "h2-error",
            FailureKind::TooManyRedirects => "too-many-redirects",
            FailureKind::BadRedirect => "bad-redirect",
        }
    }

    /// A certificate problem (the handshake got as far as the server's chain).
    pub fn is_certificate(self) -> bool {
        matches!(
            self,
            FailureKind::CertExpired
                | FailureKind::CertNotYetValid
                | FailureKind::CertUnknownIssuer
                | FailureKind::CertWrongName
                | FailureKind::CertRevoked
                | FailureKind::CertOther
        )
    }
}

/// A failed step: where, what, and the exact detail (errno, alert, bytes seen).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    pub phase: Phase,
    pub kind: FailureKind,
    /// The OS error number, where the failure came with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<i32>,
    pub detail: String,
}

impl Failure {
    pub fn new(phase: Phase, kind: FailureKind, detail: impl Into<String>) -> Failure {
        Failure {
            phase,
            kind,
            errno: None,
            detail: detail.into(),
        }
    }

    pub fn with_errno(mut self, errno: Option<i32>) -> Failure {
        self.errno = errno;
        self
    }
}

/// How long each phase of one exchange took, in milliseconds; `None` for a phase that did
/// not happen.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Timings {
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    /// The proxy's answer to CONNECT.
    pub proxy_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    /// From the request written to the first byte of the answer (the server's processing).
    pub wait_ms: Option<f64>,
    /// From the first byte to the end of the body.
    pub transfer_ms: Option<f64>,
    /// From the start of the exchange (DNS included) to its end.
    pub total_ms: f64,
}

pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The response of one exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HttpReport {
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub version: String,
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    /// Size of the response head in bytes (HTTP/1; for HTTP/2 the decoded fields).
    pub head_bytes: usize,
    /// How the body is delimited: `content-length`, `chunked`, `close`, `none`, `h2`.
    pub framing: String,
    /// Body bytes received.
    pub body_bytes: u64,
    /// The body ended as framed (false after a failure or when reading stopped at the bound).
    pub body_complete: bool,
    /// Reading stopped at [`Limits::max_body`].
    pub body_capped: bool,
    /// The start of the body (at most [`Limits::keep_body`] bytes, as lossy UTF-8).
    #[serde(skip)]
    pub body_start: String,
    /// Who produced the response; left empty for a complete 2xx/3xx answer (its `Server`
    /// header is in `headers`), which needs no signature database.
    pub fingerprint: Fingerprint,
}

impl HttpReport {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The head as text (`HTTP/1.1 502 Bad Gateway\r\nServer: …`), as the signatures expect it.
    pub fn head_text(&self) -> String {
        let mut text = format!("{} {} {}\r\n", self.version, self.status, self.reason);
        for (k, v) in &self.headers {
            text.push_str(k);
            text.push_str(": ");
            text.push_str(v);
            text.push_str("\r\n");
        }
        text
    }
}

/// The TCP connection of one exchange.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectReport {
    /// The address dialled (the proxy's when going through one).
    pub address: SocketAddr,
    pub local: Option<SocketAddr>,
}

/// One request and its answer: a hop of the redirect chain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Exchange {
    /// The URL requested (secrets redacted).
    pub url: String,
    /// The address of the site this exchange was meant for.
    pub address: Option<SocketAddr>,
    /// The proxy it went through (redacted), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
    pub connect: Option<ConnectReport>,
    pub tls: Option<tls::TlsReport>,
    pub http: Option<HttpReport>,
    pub failure: Option<Failure>,
    pub timings: Timings,
}

/// One request of the run, with its redirects.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestReport {
    /// 0, 1, 2 … in the order the requests were started.
    pub seq: u32,
    /// The first address dialled (the address this request is counted against).
    pub address: Option<SocketAddr>,
    /// Milliseconds from the start of the run to the start of this request.
    pub started_ms: f64,
    /// The redirect chain; the first is the target itself.
    pub hops: Vec<Exchange>,
}

impl RequestReport {
    pub fn last(&self) -> Option<&Exchange> {
        self.hops.last()
    }

    /// The final HTTP status, if an answer arrived.
    pub fn final_status(&self) -> Option<u16> {
        self.last().and_then(|e| e.http.as_ref()).map(|h| h.status)
    }

    /// The failure that ended the request, if one did.
    pub fn failure(&self) -> Option<&Failure> {
        self.last().and_then(|e| e.failure.as_ref())
    }

    /// A 2xx or 3xx answer, complete.
    pub fn healthy(&self) -> bool {
        self.failure().is_none() && matches!(self.final_status(), Some(200..=399))
    }

    /// `200`, `502`, or the failure's name (`refused`, `no-response` …).
    pub fn outcome_label(&self) -> String {
        match (self.failure(), self.final_status()) {
            (Some(f), _) => f.kind.name().to_string(),
            (None, Some(status)) => status.to_string(),
            (None, None) => "none".to_string(),
        }
    }

    /// The whole request's time, DNS of the first hop included.
    pub fn total_ms(&self) -> f64 {
        self.hops.iter().map(|h| h.timings.total_ms).sum()
    }
}

/// The direct probe of `--upstream`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpstreamReport {
    /// As given.
    pub target: String,
    /// The URL requested (same path, the site's Host header).
    pub url: String,
    pub dns: Option<dns::DnsReport>,
    pub requests: Vec<RequestReport>,
    /// Why the upstream could not be probed at all (an unparsable address).
    pub error: Option<String>,
}

/// The facts of a whole probe run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// The URL probed (secrets redacted).
    pub target: String,
    pub host: String,
    pub port: u16,
    /// Absent when the host is an address literal or `--resolve` names its addresses.
    pub dns: Option<dns::DnsReport>,
    /// Where the addresses dialled came from: `literal`, `--resolve`, `system`, or a resolver.
    pub addresses_from: String,
    pub addresses: Vec<SocketAddr>,
    pub requests: Vec<RequestReport>,
    /// Present when more than one request was made.
    pub stats: Option<Stats>,
    /// The proxy in use and the direct attempt compared with it.
    pub proxy: Option<proxy::ProxyReport>,
    pub upstream: Option<UpstreamReport>,
    /// Options in force that change what was seen (e.g. `insecure`).
    pub notes: Vec<String>,
    pub elapsed_ms: f64,
}

impl ProbeReport {
    /// Every request got a complete 2xx/3xx answer.
    pub fn healthy(&self) -> bool {
        !self.requests.is_empty() && self.requests.iter().all(RequestReport::healthy)
    }
}

/// What every exchange of a run shares: the options, the TLS trust anchors (loaded once, on
/// first use), the proxy choice.
pub(crate) struct Context {
    pub options: ProbeOptions,
    pub tls: tls::TlsClient,
}

/// Probes `target`: DNS, then the requests (per address, or `count` of them), then the
/// direct comparisons (`--upstream`, the proxy). Never fails: every failure is a fact of the
/// report.
pub async fn probe(target: &ProbeTarget, options: &ProbeOptions) -> ProbeReport {
    let run_started = Instant::now();
    // The signature database (about 100 ms to parse and compile) is only needed for an error
    // answer: it compiles on another thread while the network work goes on, and the first
    // fingerprint waits for it if it is not ready by then. A healthy single probe does not wait.
    let warm_up = tokio::task::spawn_blocking(|| {
        let _ = crate::catalog::signatures();
    });
    let mut options = options.clone();
    options.count = options.count.clamp(1, MAX_COUNT);
    options.concurrency = options.concurrency.clamp(1, MAX_CONCURRENCY);
    options.max_redirects = options.max_redirects.min(MAX_REDIRECTS);
    let ctx = Arc::new(Context {
        tls: tls::TlsClient::new(&options),
        options,
    });
    if target.is_tls()
        || ctx
            .options
            .upstream
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"))
    {
        // The trust anchors load while DNS and the connect go on.
        let c = ctx.clone();
        drop(tokio::task::spawn_blocking(move || c.tls.load_anchors()));
    }
    let host = target.host();
    let port = target.port();
    let mut notes = Vec::new();
    if ctx.options.insecure {
        notes
            .push("--insecure: certificate problems are reported but do not stop the probe".into());
    }

    // Where the addresses come from: a literal, --resolve, or DNS.
    let deadline = Instant::now() + ctx.options.timeout;
    let (dns_report, addresses, addresses_from, dns_ms) =
        resolve_target(&ctx, &host, port, deadline).await;

    let proxy_choice = match ctx.options.proxy.choose(&target.url) {
        proxy::ProxyChoice::Use(p) => {
            notes.push(format!("via the proxy {}", p.shown()));
            Some(p)
        }
        proxy::ProxyChoice::Bypassed(why) | proxy::ProxyChoice::Unsupported(why) => {
            notes.push(why);
            None
        }
        proxy::ProxyChoice::Direct => None,
    };

    // Through a proxy the proxy resolves the name: the requests go out even when this
    // machine cannot resolve it.
    let requests = if addresses.is_empty() && proxy_choice.is_none() {
        // Nothing to dial: one request that failed at DNS.
        let failure = dns_report
            .as_ref()
            .and_then(|d| d.failure())
            .unwrap_or_else(|| {
                Failure::new(
                    Phase::Dns,
                    FailureKind::DnsNoAddress,
                    "no address to connect to",
                )
            });
        drop(warm_up);
        let only = RequestReport {
            seq: 0,
            address: None,
            started_ms: 0.0,
            hops: vec![Exchange {
                url: shown(&target.url),
                address: None,
                proxy: None,
                connect: None,
                tls: None,
                http: None,
                failure: Some(failure),
                timings: Timings {
                    dns_ms,
                    total_ms: dns_ms.unwrap_or(0.0),
                    ..Timings::default()
                },
            }],
        };
        stats::Run {
            reports: vec![only],
            cost: stats::Cost::default(),
        }
    } else {
        stats::run_requests(
            &ctx,
            &target.url,
            &addresses,
            proxy_choice.as_ref(),
            dns_ms,
            run_started,
            warm_up,
        )
        .await
    };
    let stats = (requests.reports.len() > 1)
        .then(|| Stats::from_requests(&requests.reports, requests.cost));
    let requests = requests.reports;

    // Through a proxy: the same request direct, to tell the proxy's failure from the site's.
    let proxy = match &proxy_choice {
        Some(p) => Some(proxy::compare(&ctx, &target.url, &addresses, p, dns_ms).await),
        None => None,
    };

    let upstream = match &ctx.options.upstream {
        Some(up) => Some(probe_upstream(&ctx, target, up).await),
        None => None,
    };

    ProbeReport {
        target: shown(&target.url),
        host,
        port,
        dns: dns_report,
        addresses_from,
        addresses,
        requests,
        stats,
        proxy,
        upstream,
        notes,
        elapsed_ms: ms(run_started.elapsed()),
    }
}

/// [`probe`] on a runtime of its own. Call it from synchronous code only (not from inside a
/// tokio runtime).
pub fn probe_blocking(
    target: &ProbeTarget,
    options: &ProbeOptions,
) -> std::io::Result<ProbeReport> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let report = rt.block_on(probe(target, options));
    // A getaddrinfo abandoned at its deadline may still run on a blocking thread: do not wait
    // for it (dropping the runtime would).
    rt.shutdown_background();
    Ok(report)
}

/// The addresses to dial for `host:port`: a literal as is, `--resolve` as given, else DNS (the
/// system's answer when it has one, else the first resolver's that has one).
async fn resolve_target(
    ctx: &Context,
    host: &str,
    port: u16,
    deadline: Instant,
) -> (Option<dns::DnsReport>, Vec<SocketAddr>, String, Option<f64>) {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return (
            None,
            vec![SocketAddr::new(ip, port)],
            "literal".into(),
            None,
        );
    }
    if let Some(o) = find_override(&ctx.options.resolve, host, port) {
        let addrs = o
            .addrs
            .iter()
            .take(MAX_ADDRESSES)
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        return (None, addrs, "--resolve".into(), None);
    }
    let started = Instant::now();
    let report = dns::resolve_all(host, &ctx.options, deadline.min(started + DNS_LIMIT)).await;
    let dns_ms = Some(ms(started.elapsed()));
    let (from, ips) = report.chosen_addresses();
    let addrs = ips
        .into_iter()
        .take(MAX_ADDRESSES)
        .map(|ip| SocketAddr::new(ip, port))
        .collect();
    (Some(report), addrs, from, dns_ms)
}

pub(crate) fn find_override<'a>(
    overrides: &'a [ResolveOverride],
    host: &str,
    port: u16,
) -> Option<&'a ResolveOverride> {
    overrides
        .iter()
        .find(|o| o.port == port && o.host.eq_ignore_ascii_case(host))
}

/// One request: the exchange with `first` at `url`, then the redirects, each within the one
/// deadline.
pub(crate) async fn request(
    ctx: &Context,
    seq: u32,
    url: &Url,
    first: Option<SocketAddr>,
    proxy: Option<&proxy::Proxy>,
    dns_ms: Option<f64>,
    run_started: Instant,
) -> RequestReport {
    let started = Instant::now();
    let deadline = started + ctx.options.timeout;
    let mut hops = Vec::new();
    let mut current = url.clone();
    let mut address = first;
    let mut hop_dns_ms = dns_ms;
    loop {
        let mut exchange =
            exchange(ctx, &current, address, proxy, deadline, &ctx.options.limits).await;
        if let Some(d) = hop_dns_ms.take() {
            exchange.timings.dns_ms = Some(d);
            exchange.timings.total_ms += d;
        }
        let next = redirect_target(&current, &exchange);
        hops.push(exchange);
        let Some(next) = next else { break };
        let followed = hops.len() as u32;
        let last = hops.last_mut().expect("pushed above");
        let next = match next {
            Ok(next) => next,
            Err(detail) => {
                last.failure = Some(Failure::new(Phase::Head, FailureKind::BadRedirect, detail));
                break;
            }
        };
        if followed > ctx.options.max_redirects {
            if ctx.options.max_redirects > 0 {
                last.failure = Some(Failure::new(
                    Phase::Head,
                    FailureKind::TooManyRedirects,
                    format!(
                        "stopped after {} redirects; next: {}",
                        ctx.options.max_redirects,
                        shown(&next)
                    ),
                ));
            }
            break;
        }
        // The next hop's address: the same site keeps its address, another host is resolved.
        let same_origin = host_of(&next) == host_of(&current)
            && next.port_or_known_default() == current.port_or_known_default();
        if !same_origin {
            let host = host_of(&next);
            let port = next.port_or_known_default().unwrap_or(80);
            let t = Instant::now();
            let (report, addrs, _, _) = resolve_target(ctx, &host, port, deadline).await;
            hop_dns_ms = Some(ms(t.elapsed()));
            match addrs.first() {
                Some(a) => address = Some(*a),
                None if proxy.is_some() => address = None,
                None => {
                    let failure = report.and_then(|r| r.failure()).unwrap_or_else(|| {
                        Failure::new(Phase::Dns, FailureKind::DnsNoAddress, "no address")
                    });
                    hops.push(Exchange {
                        url: shown(&next),
                        address: None,
                        proxy: None,
                        connect: None,
                        tls: None,
                        http: None,
                        failure: Some(failure),
                        timings: Timings {
                            dns_ms: hop_dns_ms,
                            total_ms: hop_dns_ms.unwrap_or(0.0),
                            ..Timings::default()
                        },
                    });
                    break;
                }
            }
        }
        current = next;
    }
    RequestReport {
        seq,
        address: first,
        started_ms: ms(started.duration_since(run_started)),
        hops,
    }
}

/// `Some(Ok(url))` when the exchange is a redirect to follow.
fn redirect_target(current: &Url, exchange: &Exchange) -> Option<Result<Url, String>> {
    let http = exchange.http.as_ref()?;
    if exchange.failure.is_some() || !matches!(http.status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    let location = http.header("location")?;
    Some(match current.join(location) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Ok(u),
        Ok(u) => Err(format!("redirect to {} cannot be followed", shown(&u))),
        Err(e) => Err(format!(
            "Location {:?} is not a URL: {e}",
            crate::redact::redact(location)
        )),
    })
}

/// One exchange: connect (directly or to the proxy), tunnel, TLS, HTTP, fingerprint.
pub(crate) async fn exchange(
    ctx: &Context,
    url: &Url,
    address: Option<SocketAddr>,
    proxy: Option<&proxy::Proxy>,
    deadline: Instant,
    limits: &Limits,
) -> Exchange {
    if url.scheme() == "https" {
        // The tool's own preparation (reading the trust store) is not the site's time.
        ctx.tls.load_anchors();
    }
    let started = Instant::now();
    let mut ex = Exchange {
        url: shown(url),
        address,
        proxy: proxy.map(|p| p.shown()),
        connect: None,
        tls: None,
        http: None,
        failure: None,
        timings: Timings::default(),
    };
    let is_tls = url.scheme() == "https";
    // The clock stops before the response is fingerprinted: the timings are the network's.
    let finish = |mut ex: Exchange| {
        ex.timings.total_ms = ms(started.elapsed());
        let failed = ex.failure.is_some();
        if let Some(h) = &mut ex.http {
            if failed || h.status >= 400 {
                h.fingerprint = fingerprint::identify(&h.head_text(), &h.body_start);
            }
            redact_headers(&mut h.headers);
        }
        ex
    };

    // TCP, to the site or to the proxy.
    let dial = match proxy {
        Some(p) => match p.address(deadline).await {
            Ok(a) => a,
            Err(f) => {
                ex.failure = Some(f);
                return finish(ex);
            }
        },
        None => match address {
            Some(a) => a,
            None => {
                ex.failure = Some(Failure::new(
                    Phase::Dns,
                    FailureKind::DnsNoAddress,
                    "no address to connect to",
                ));
                return finish(ex);
            }
        },
    };
    let t = Instant::now();
    let stream = match tcp::connect(dial, deadline.min(t + CONNECT_LIMIT)).await {
        Ok(s) => s,
        Err(f) => {
            ex.timings.connect_ms = Some(ms(t.elapsed()));
            ex.failure = Some(f);
            return finish(ex);
        }
    };
    ex.timings.connect_ms = Some(ms(t.elapsed()));
    ex.connect = Some(ConnectReport {
        address: dial,
        local: stream.local_addr().ok(),
    });
    let mut stream = stream;

    // Through a proxy to an https site: the CONNECT tunnel first.
    if let (Some(p), true) = (proxy, is_tls) {
        let t = Instant::now();
        let answer = p
            .tunnel(&mut stream, url, deadline.min(t + HANDSHAKE_LIMIT), limits)
            .await;
        ex.timings.proxy_ms = Some(ms(t.elapsed()));
        if let Err((failure, http)) = answer {
            ex.http = http.map(|h| *h);
            ex.failure = Some(failure);
            return finish(ex);
        }
    }

    let request = http::RequestSpec::for_url(url, proxy.filter(|_| !is_tls));
    let outcome = if is_tls {
        let t = Instant::now();
        let handshake = ctx
            .tls
            .handshake(stream, url, deadline.min(t + HANDSHAKE_LIMIT))
            .await;
        ex.timings.tls_ms = Some(ms(t.elapsed()));
        let (tls_stream, report) = match handshake {
            Ok(ok) => ok,
            Err((failure, report)) => {
                ex.tls = report;
                ex.failure = Some(failure);
                return finish(ex);
            }
        };
        let h2 = report.alpn.as_deref() == Some("h2");
        ex.tls = Some(report);
        if h2 {
            http::h2_exchange(tls_stream, url, &request, limits, deadline).await
        } else {
            let mut s = tls_stream;
            http::h1_exchange(&mut s, &request, limits, deadline).await
        }
    } else {
        http::h1_exchange(&mut stream, &request, limits, deadline).await
    };
    ex.timings.wait_ms = outcome.wait.map(ms);
    ex.timings.transfer_ms = outcome.transfer.map(ms);
    ex.http = outcome.report;
    ex.failure = outcome.failure;
    finish(ex)
}

/// `--upstream`: the same request, straight to the origin or app.
async fn probe_upstream(
    ctx: &Arc<Context>,
    target: &ProbeTarget,
    upstream: &str,
) -> UpstreamReport {
    let mut report = UpstreamReport {
        target: upstream.to_string(),
        url: String::new(),
        dns: None,
        requests: Vec::new(),
        error: None,
    };
    let url = match upstream_url(&target.url, upstream) {
        Ok(u) => u,
        Err(e) => {
            report.error = Some(e);
            return report;
        }
    };
    report.url = shown(&url);
    let host = host_of(&url);
    let port = url.port_or_known_default().unwrap_or(80);
    let deadline = Instant::now() + ctx.options.timeout;
    let (dns_report, addrs, _, dns_ms) = resolve_target(ctx, &host, port, deadline).await;
    report.dns = dns_report;
    let started = Instant::now();
    for (i, addr) in addrs.iter().enumerate() {
        let mut r = upstream_request(ctx, i as u32, &url, &target.url, *addr, started).await;
        if i == 0 {
            if let (Some(d), Some(first)) = (dns_ms, r.hops.first_mut()) {
                first.timings.dns_ms = Some(d);
            }
        }
        report.requests.push(r);
    }
    report
}

/// One direct request to the upstream: no redirects followed (a redirect is an answer), the
/// site's Host header kept.
async fn upstream_request(
    ctx: &Context,
    seq: u32,
    url: &Url,
    site: &Url,
    address: SocketAddr,
    run_started: Instant,
) -> RequestReport {
    let started = Instant::now();
    let deadline = started + ctx.options.timeout;
    let mut hop = exchange_with_host(ctx, url, site, address, deadline).await;
    hop.timings.total_ms = ms(started.elapsed());
    RequestReport {
        seq,
        address: Some(address),
        started_ms: ms(started.duration_since(run_started)),
        hops: vec![hop],
    }
}

/// Like [`exchange`], but the request carries the site's Host header (and SNI): what the
/// gateway would send to its upstream.
async fn exchange_with_host(
    ctx: &Context,
    url: &Url,
    site: &Url,
    address: SocketAddr,
    deadline: Instant,
) -> Exchange {
    let mut url_for_host = url.clone();
    // The request line and Host come from the site; the address and scheme from the upstream.
    let _ = url_for_host.set_host(site.host_str());
    let _ = url_for_host.set_port(site.port());
    url_for_host.set_path(site.path());
    url_for_host.set_query(site.query());
    let mut ex = exchange(
        ctx,
        &url_for_host,
        Some(address),
        None,
        deadline,
        &ctx.options.limits,
    )
    .await;
    ex.url = shown(url);
    ex
}

/// The upstream as a URL with the site's path: `host:port` → `http://host:port/path`.
fn upstream_url(site: &Url, upstream: &str) -> Result<Url, String> {
    if upstream.starts_with("unix:") || upstream.starts_with('/') {
        return Err(format!(
            "--upstream {upstream:?}: a unix socket cannot be probed from here; give HOST:PORT"
        ));
    }
    let text = if upstream.contains("://") {
        upstream.to_string()
    } else {
        format!("http://{upstream}")
    };
    let mut url = Url::parse(&text).map_err(|e| format!("--upstream {upstream:?}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "--upstream {upstream:?}: expected HOST:PORT or an http(s) URL"
        ));
    }
    url.set_path(site.path());
    url.set_query(site.query());
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse_and_reject() {
        let t = ProbeTarget::parse("example.com:8080/x?y=1").unwrap();
        assert_eq!(t.url.as_str(), "http://example.com:8080/x?y=1");
        assert_eq!(t.port(), 8080);
        let t = ProbeTarget::parse("https://[::1]/").unwrap();
        assert_eq!(t.host(), "::1");
        assert_eq!(t.port(), 443);
        assert!(t.is_tls());
        assert!(ProbeTarget::parse("ftp://example.com/")
            .unwrap_err()
            .contains("ftp"));
        assert!(ProbeTarget::parse("").is_err());
        assert!(ProbeTarget::parse("http://").is_err());
        let e = ProbeTarget::parse("http://user:secret@exa mple.com/").unwrap_err();
        assert!(!e.contains("secret"), "{e}");
    }

    #[test]
    fn resolve_overrides_parse() {
        let o = ResolveOverride::parse("Example.com:443:127.0.0.2,[::1]").unwrap();
        assert_eq!(o.host, "example.com");
        assert_eq!(o.port, 443);
        assert_eq!(o.addrs.len(), 2);
        assert!(ResolveOverride::parse("example.com:443").is_err());
        assert!(ResolveOverride::parse("example.com:x:127.0.0.1").is_err());
        assert!(ResolveOverride::parse("example.com:80:nope").is_err());
        assert!(find_override(&[o], "EXAMPLE.com", 443).is_some());
    }

    #[test]
    fn secret_headers_are_redacted() {
        let mut h = vec![
            ("Set-Cookie".to_string(), "session=abc123".to_string()),
            ("Server".to_string(), "nginx".to_string()),
        ];
        redact_headers(&mut h);
        assert_eq!(h[0].1, "[redacted]");
        assert_eq!(h[1].1, "nginx");
    }

    #[test]
    fn upstream_urls_keep_the_path() {
        let site = Url::parse("https://example.com/a/b?c=d").unwrap();
        assert_eq!(
            upstream_url(&site, "127.0.0.1:8000").unwrap().as_str(),
            "http://127.0.0.1:8000/a/b?c=d"
        );
        assert_eq!(
            upstream_url(&site, "https://10.0.0.1:8443")
                .unwrap()
                .as_str(),
            "https://10.0.0.1:8443/a/b?c=d"
        );
        assert!(upstream_url(&site, "unix:/run/x.sock").is_err());
    }
}
