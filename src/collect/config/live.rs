//! Live checks of the targets: resolve names the way nginx does, connect, find out what
//! answers, and for HTTP a bounded `HEAD` with timing. For a refused target, who listens nearby.
//!
//! - Names of fixed targets are resolved like nginx at start-up: `getaddrinfo`, every A and
//!   AAAA record, each address tried. Names in variable targets are resolved by the `resolver`
//!   the configuration names (hickory, A and AAAA, no /etc/hosts), as nginx does per request.
//! - What answers is found with at most three small probes, each on its own connection: a
//!   `HEAD` request (an HTTP server answers `HTTP/1.x`), a TLS ClientHello (a TLS server
//!   answers a ServerHello), an 8-byte FastCGI `GET_VALUES` record (PHP-FPM answers with a
//!   `GET_VALUES_RESULT`). The probe of the protocol nginx speaks there goes first; the others
//!   only when it got no clear answer.
//! - Every step has a deadline ([`LiveOptions::timeout`], and never more than the target's own
//!   connect/read timeouts); every read is bounded.

use super::model::Address;
use serde::Serialize;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::timeout;

/// The most bytes read from an answer.
const MAX_ANSWER: usize = 16 * 1024;
/// How long a server may take to say something first (SSH, SMTP and MySQL greet first).
const GREETING_WAIT: Duration = Duration::from_millis(150);
/// Endpoints checked at the same time.
const PARALLEL: usize = 16;

/// What nginx speaks to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    Http,
    Https,
    Fastcgi,
    Uwsgi,
    Grpc,
    Grpcs,
    Scgi,
    Memcached,
    Tcp,
    Tls,
}

impl Expect {
    pub fn is_tls(self) -> bool {
        matches!(self, Expect::Https | Expect::Grpcs | Expect::Tls)
    }
}

/// One place to check, with everything needed to check it like nginx would talk to it.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoint {
    pub address: Address,
    pub expect: Expect,
    /// The SNI name nginx sends (`proxy_ssl_server_name on`), if any.
    pub sni: Option<String>,
    /// The name to try SNI with when nginx sends none (to tell "needs SNI" apart).
    pub sni_name: Option<String>,
    pub host_header: String,
    /// For names in variable targets: the configured resolver's addresses.
    pub resolver: Option<Vec<SocketAddr>>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    /// Indexes of the targets (and upstream servers) this endpoint stands for.
    pub targets: Vec<usize>,
}

/// How a name resolved.
#[derive(Debug, Clone, Serialize)]
pub struct Resolution {
    pub name: String,
    /// `getaddrinfo` or `resolver 127.0.0.53:53`.
    pub via: String,
    pub addrs: Vec<IpAddr>,
    pub error: Option<String>,
    pub ms: u64,
}

/// How a connection attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Connect {
    Ok,
    Refused,
    Timeout,
    /// No such socket file (ENOENT).
    Missing,
    /// EACCES: the socket's owner/mode (or a directory on its path) denies us.
    Denied,
    /// EAGAIN on a unix socket: its accept queue is full.
    QueueFull,
    Unreachable,
    Other(String),
}

impl Connect {
    /// A short phrase for reports: `connected`, `refused`, `no such socket` …
    pub fn label(&self) -> String {
        match self {
            Connect::Ok => "connected".into(),
            Connect::Refused => "refused".into(),
            Connect::Timeout => "timed out".into(),
            Connect::Missing => "no such socket".into(),
            Connect::Denied => "permission denied".into(),
            Connect::QueueFull => "accept queue full (EAGAIN)".into(),
            Connect::Unreachable => "unreachable".into(),
            Connect::Other(e) => e.clone(),
        }
    }
}

/// What answered a probe.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "protocol", rename_all = "kebab-case")]
pub enum Answer {
    Http {
        status: u16,
        server: Option<String>,
        ms: u64,
    },
    Tls {
        version: String,
        ms: u64,
    },
    Fastcgi,
    /// Connected, but nothing came back within the deadline.
    Silent,
    /// The peer closed without a byte.
    Closed,
    /// Something else (the first bytes, printable).
    Other {
        first_bytes: String,
    },
}

impl Answer {
    fn conclusive(&self) -> bool {
        matches!(
            self,
            Answer::Http { .. } | Answer::Tls { .. } | Answer::Fastcgi
        )
    }

    pub fn label(&self) -> String {
        match self {
            Answer::Http { status, .. } => format!("an HTTP server (status {status})"),
            Answer::Tls { version, .. } => format!("a TLS server ({version})"),
            Answer::Fastcgi => "a FastCGI server".into(),
            Answer::Silent => "nothing (connected, no answer)".into(),
            Answer::Closed => "a server that closed at once".into(),
            Answer::Other { first_bytes } => format!("something else ({first_bytes})"),
        }
    }
}

/// TLS handshake results, with and without SNI.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TlsCheck {
    /// `Ok(version)` or `Err(reason)` with the SNI nginx sends (none unless
    /// `proxy_ssl_server_name on`).
    pub as_configured: Option<Result<String, String>>,
    /// The same with SNI set to the target's name, when nginx sends none.
    pub with_sni: Option<Result<String, String>>,
}

/// One address of an endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub addr: String,
    pub connect: Connect,
    pub connect_ms: u64,
    /// What answered (the probes run only after a connect succeeded).
    pub answer: Option<Answer>,
    pub tls: Option<TlsCheck>,
}

/// A listening socket found on this host.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    pub addr: SocketAddr,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// The result for one endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct LiveResult {
    pub endpoint: Endpoint,
    pub resolution: Option<Resolution>,
    pub attempts: Vec<Attempt>,
    /// For a refused port: listeners on the same host nearby, or on the same port elsewhere.
    pub nearby: Vec<Listener>,
    pub ms: u64,
}

/// Live-check options.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// Upper bound of every single step.
    pub timeout: Duration,
}

/// Checks every endpoint (at most [`PARALLEL`] at a time) and returns the results in order.
pub fn check_all(endpoints: Vec<Endpoint>, opts: LiveOptions) -> Vec<LiveResult> {
    if endpoints.is_empty() {
        return Vec::new();
    }
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(_) => return Vec::new(),
    };
    let mut results = rt.block_on(async move {
        let limit = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
        let mut set = tokio::task::JoinSet::new();
        for (i, e) in endpoints.into_iter().enumerate() {
            let limit = limit.clone();
            set.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (i, check(e, opts).await)
            });
        }
        let mut out = Vec::new();
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        out
    });
    results.sort_by_key(|r| r.0);
    let mut results: Vec<LiveResult> = results.into_iter().map(|r| r.1).collect();
    if results
        .iter()
        .any(|r| r.attempts.iter().any(|a| a.connect == Connect::Refused))
    {
        let listeners = listeners();
        for r in &mut results {
            if let Some(a) = r.attempts.iter().find(|a| a.connect == Connect::Refused) {
                if let Ok(addr) = a.addr.parse::<SocketAddr>() {
                    r.nearby = nearby(&listeners, addr);
                }
            }
        }
    }
    rt.shutdown_timeout(Duration::from_millis(200));
    results
}

async fn check(endpoint: Endpoint, opts: LiveOptions) -> LiveResult {
    let start = Instant::now();
    let mut result = LiveResult {
        endpoint: endpoint.clone(),
        resolution: None,
        attempts: Vec::new(),
        nearby: Vec::new(),
        ms: 0,
    };
    match &endpoint.address {
        Address::Unix { path } => {
            result
                .attempts
                .push(attempt_unix(&endpoint, path, opts).await);
        }
        Address::Tcp { host, port } => {
            let port = port.unwrap_or(80);
            let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
                Ok(ip) => vec![SocketAddr::new(ip, port)],
                Err(_) if host == "*" => vec![SocketAddr::from(([127, 0, 0, 1], port))],
                Err(_) => {
                    let r = resolve(host, endpoint.resolver.as_deref(), opts.timeout).await;
                    let addrs = r
                        .addrs
                        .iter()
                        .map(|ip| SocketAddr::new(*ip, port))
                        .collect();
                    result.resolution = Some(r);
                    addrs
                }
            };
            for addr in addrs.into_iter().take(16) {
                result
                    .attempts
                    .push(attempt_tcp(&endpoint, addr, opts).await);
            }
        }
    }
    result.ms = start.elapsed().as_millis() as u64;
    result
}

/// Resolves a name like nginx: getaddrinfo at start-up, or the configured resolver.
async fn resolve(name: &str, resolver: Option<&[SocketAddr]>, limit: Duration) -> Resolution {
    let start = Instant::now();
    let mut r = Resolution {
        name: name.to_string(),
        via: "getaddrinfo".into(),
        addrs: Vec::new(),
        error: None,
        ms: 0,
    };
    match resolver {
        None => match timeout(limit, tokio::net::lookup_host((name, 0))).await {
            Ok(Ok(addrs)) => {
                for a in addrs {
                    if !r.addrs.contains(&a.ip()) {
                        r.addrs.push(a.ip());
                    }
                }
            }
            Ok(Err(e)) => r.error = Some(e.to_string()),
            Err(_) => r.error = Some(format!("no answer within {} ms", limit.as_millis())),
        },
        Some(servers) => {
            use hickory_resolver::config::{
                LookupIpStrategy, NameServerConfigGroup, ResolveHosts, ResolverConfig, ResolverOpts,
            };
            r.via = format!(
                "resolver {}",
                servers
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            let mut group = NameServerConfigGroup::new();
            for s in servers {
                group.merge(NameServerConfigGroup::from_ips_clear(
                    &[s.ip()],
                    s.port(),
                    true,
                ));
            }
            let config = ResolverConfig::from_parts(None, vec![], group);
            let mut options = ResolverOpts::default();
            options.timeout = limit;
            options.attempts = 1;
            options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
            options.use_hosts_file = ResolveHosts::Never;
            options.cache_size = 0;
            let resolver = hickory_resolver::Resolver::builder_with_config(
                config,
                hickory_resolver::name_server::TokioConnectionProvider::default(),
            )
            .with_options(options)
            .build();
            let fqdn = if name.ends_with('.') {
                name.to_string()
            } else {
                format!("{name}.")
            };
            match timeout(limit * 3, resolver.lookup_ip(fqdn)).await {
                Ok(Ok(found)) => r.addrs = found.iter().collect(),
                Ok(Err(e)) => r.error = Some(e.to_string()),
                Err(_) => {
                    r.error = Some(format!("no answer within {} ms", (limit * 3).as_millis()))
                }
            }
        }
    }
    if r.addrs.is_empty() && r.error.is_none() {
        r.error = Some("no addresses".into());
    }
    r.ms = start.elapsed().as_millis() as u64;
    r
}

fn classify_error(e: &std::io::Error) -> Connect {
    match e.raw_os_error() {
        Some(libc::ECONNREFUSED) => Connect::Refused,
        Some(libc::ENOENT) => Connect::Missing,
        Some(libc::EACCES) | Some(libc::EPERM) => Connect::Denied,
        Some(libc::EAGAIN) => Connect::QueueFull,
        Some(libc::ETIMEDOUT) => Connect::Timeout,
        Some(libc::ENETUNREACH) | Some(libc::EHOSTUNREACH) => Connect::Unreachable,
        _ => Connect::Other(e.to_string()),
    }
}

fn step_limit(endpoint: &Endpoint, opts: LiveOptions, read: bool) -> Duration {
    let own = if read {
        endpoint.read_timeout
    } else {
        endpoint.connect_timeout
    };
    own.min(opts.timeout).max(Duration::from_millis(50))
}

async fn attempt_tcp(endpoint: &Endpoint, addr: SocketAddr, opts: LiveOptions) -> Attempt {
    let limit = step_limit(endpoint, opts, false);
    let start = Instant::now();
    let connected = timeout(limit, TcpStream::connect(addr)).await;
    let mut attempt = Attempt {
        addr: addr.to_string(),
        connect: Connect::Ok,
        connect_ms: start.elapsed().as_millis() as u64,
        answer: None,
        tls: None,
    };
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            attempt.connect = classify_error(&e);
            return attempt;
        }
        Err(_) => {
            attempt.connect = Connect::Timeout;
            return attempt;
        }
    };
    let read_limit = step_limit(endpoint, opts, true);
    let mut first = Some(stream);
    let mut answer = None;
    for probe in probes(endpoint.expect) {
        let stream = match first.take() {
            Some(s) => s,
            None => match timeout(limit, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => s,
                _ => break,
            },
        };
        let a = match probe {
            Probe::Http => http_probe(stream, &endpoint.host_header, read_limit).await,
            Probe::Fastcgi => fastcgi_probe(stream, read_limit).await,
            Probe::Tls => match tls_handshake(stream, endpoint.sni.as_deref(), read_limit).await {
                Ok((version, ms)) => Answer::Tls { version, ms },
                Err(_) => Answer::Other {
                    first_bytes: "no TLS handshake".into(),
                },
            },
        };
        let done = a.conclusive();
        if answer.is_none() || done {
            answer = Some(a);
        }
        if done {
            break;
        }
    }
    if endpoint.expect.is_tls() || matches!(answer, Some(Answer::Tls { .. })) {
        attempt.tls = Some(tls_check(endpoint, addr, limit, read_limit).await);
    }
    attempt.answer = answer;
    attempt
}

async fn attempt_unix(endpoint: &Endpoint, path: &str, opts: LiveOptions) -> Attempt {
    let limit = step_limit(endpoint, opts, false);
    let start = Instant::now();
    let mut attempt = Attempt {
        addr: format!("unix:{path}"),
        connect: Connect::Ok,
        connect_ms: 0,
        answer: None,
        tls: None,
    };
    let connected = timeout(limit, UnixStream::connect(Path::new(path))).await;
    attempt.connect_ms = start.elapsed().as_millis() as u64;
    let stream = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            attempt.connect = classify_error(&e);
            return attempt;
        }
        Err(_) => {
            attempt.connect = Connect::Timeout;
            return attempt;
        }
    };
    let read_limit = step_limit(endpoint, opts, true);
    let mut first = Some(stream);
    for probe in probes(endpoint.expect) {
        let stream = match first.take() {
            Some(s) => s,
            None => match timeout(limit, UnixStream::connect(Path::new(path))).await {
                Ok(Ok(s)) => s,
                _ => break,
            },
        };
        let a = match probe {
            Probe::Http => http_probe(stream, &endpoint.host_header, read_limit).await,
            Probe::Fastcgi => fastcgi_probe(stream, read_limit).await,
            Probe::Tls => continue,
        };
        let done = a.conclusive();
        if attempt.answer.is_none() || done {
            attempt.answer = Some(a);
        }
        if done {
            break;
        }
    }
    attempt
}

#[derive(Debug, Clone, Copy)]
enum Probe {
    Http,
    Tls,
    Fastcgi,
}

/// The probes for what nginx expects, its own protocol first.
fn probes(expect: Expect) -> [Probe; 3] {
    match expect {
        Expect::Https | Expect::Grpcs | Expect::Tls => [Probe::Tls, Probe::Http, Probe::Fastcgi],
        Expect::Fastcgi => [Probe::Fastcgi, Probe::Http, Probe::Tls],
        _ => [Probe::Http, Probe::Tls, Probe::Fastcgi],
    }
}

/// Reads what the peer sends within `limit`, at most [`MAX_ANSWER`] bytes, stopping early
/// once `enough` says the answer is complete.
async fn read_answer<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, Answer> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                return if buf.is_empty() {
                    Err(Answer::Closed)
                } else {
                    Ok(buf)
                };
            }
            Ok(Ok(n)) => {
                buf.extend_from_slice(&chunk[..n]);
                if enough(&buf) || buf.len() >= MAX_ANSWER {
                    return Ok(buf);
                }
            }
            Err(_) => {
                return if buf.is_empty() {
                    Err(Answer::Silent)
                } else {
                    Ok(buf)
                }
            }
        }
    }
}

/// What some bytes look like when they are not the answer the probe asked for.
fn recognise(bytes: &[u8], ms: u64) -> Answer {
    if bytes.starts_with(b"HTTP/") {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        let _ = response.parse(bytes);
        let status = response.code.unwrap_or(0);
        let server = response
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("server"))
            .map(|h| String::from_utf8_lossy(h.value).into_owned());
        return Answer::Http { status, server, ms };
    }
    if bytes.len() >= 2 && bytes[0] == 0x15 && bytes[1] == 0x03 {
        return Answer::Tls {
            version: "alert".into(),
            ms,
        };
    }
    if bytes.len() >= 2 && bytes[0] == 0x16 && bytes[1] == 0x03 {
        return Answer::Tls {
            version: "handshake".into(),
            ms,
        };
    }
    if bytes.len() >= 8 && bytes[0] == 1 && (1..=11).contains(&bytes[1]) {
        return Answer::Fastcgi;
    }
    let first_bytes: String = bytes
        .iter()
        .take(24)
        .map(|&b| {
            if b.is_ascii_graphic() || b == b' ' {
                (b as char).to_string()
            } else {
                format!("\\x{b:02x}")
            }
        })
        .collect();
    Answer::Other { first_bytes }
}

/// Waits briefly for a greeting, then sends `request` and reads the answer.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    request: &[u8],
    limit: Duration,
    enough: impl Fn(&[u8]) -> bool,
) -> (Result<Vec<u8>, Answer>, u64) {
    let start = Instant::now();
    if let Ok(greeting) = read_answer(&mut stream, GREETING_WAIT.min(limit), |_| true).await {
        return (Ok(greeting), start.elapsed().as_millis() as u64);
    }
    if timeout(limit, stream.write_all(request))
        .await
        .map_or(true, |r| r.is_err())
    {
        return (Err(Answer::Closed), start.elapsed().as_millis() as u64);
    }
    let r = read_answer(&mut stream, limit, enough).await;
    (r, start.elapsed().as_millis() as u64)
}

/// A bounded `HEAD /` with timing.
async fn http_probe<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    host: &str,
    limit: Duration,
) -> Answer {
    let request = format!(
        "HEAD / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: gwdoctor\r\nConnection: close\r\n\r\n"
    );
    let (r, ms) = exchange(stream, request.as_bytes(), limit, |b| {
        memchr::memmem::find(b, b"\r\n\r\n").is_some()
    })
    .await;
    match r {
        Ok(bytes) => recognise(&bytes, ms),
        Err(a) => a,
    }
}

/// FastCGI `GET_VALUES` with no names: PHP-FPM answers `GET_VALUES_RESULT` (type 10).
async fn fastcgi_probe<S: AsyncRead + AsyncWrite + Unpin>(stream: S, limit: Duration) -> Answer {
    let request = [1u8, 9, 0, 0, 0, 0, 0, 0];
    let (r, ms) = exchange(stream, &request, limit, |b| b.len() >= 8).await;
    match r {
        Ok(bytes) if bytes.len() >= 8 && bytes[0] == 1 && bytes[1] == 10 => Answer::Fastcgi,
        Ok(bytes) => recognise(&bytes, ms),
        Err(a) => a,
    }
}

/// Accepts any certificate: the probe asks "is this TLS, and does the handshake work", not
/// "is it trusted" (nginx verifies only with `proxy_ssl_verify on`).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(sni: bool) -> Option<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    config.enable_sni = sni;
    Some(Arc::new(config))
}

/// A TLS handshake with or without SNI; the negotiated version, or why it failed.
async fn tls_handshake(
    stream: TcpStream,
    sni: Option<&str>,
    limit: Duration,
) -> Result<(String, u64), String> {
    let start = Instant::now();
    let config = client_config(sni.is_some()).ok_or("no TLS configuration")?;
    // Without SNI the name is still needed by the API; `enable_sni = false` keeps it off the wire.
    let name = sni.unwrap_or("gwdoctor.invalid");
    let server_name = rustls::pki_types::ServerName::try_from(name.to_string())
        .or_else(|_| rustls::pki_types::ServerName::try_from("gwdoctor.invalid".to_string()))
        .map_err(|e| e.to_string())?;
    let connector = tokio_rustls::TlsConnector::from(config);
    match timeout(limit, connector.connect(server_name, stream)).await {
        Ok(Ok(tls)) => {
            let version = tls
                .get_ref()
                .1
                .protocol_version()
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "TLS".into());
            Ok((version, start.elapsed().as_millis() as u64))
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no handshake within {} ms", limit.as_millis())),
    }
}

/// The handshake as nginx does it here, and (when nginx sends no SNI) once more with SNI.
async fn tls_check(
    endpoint: &Endpoint,
    addr: SocketAddr,
    connect_limit: Duration,
    limit: Duration,
) -> TlsCheck {
    let mut check = TlsCheck::default();
    if let Ok(Ok(s)) = timeout(connect_limit, TcpStream::connect(addr)).await {
        check.as_configured = Some(
            tls_handshake(s, endpoint.sni.as_deref(), limit)
                .await
                .map(|r| r.0),
        );
    }
    let failed = matches!(check.as_configured, Some(Err(_)));
    if failed && endpoint.sni.is_none() {
        if let Some(name) = &endpoint.sni_name {
            if let Ok(Ok(s)) = timeout(connect_limit, TcpStream::connect(addr)).await {
                check.with_sni = Some(tls_handshake(s, Some(name), limit).await.map(|r| r.0));
            }
        }
    }
    check
}

/// Listening TCP sockets of this host, with their processes where /proc tells (root sees all).
pub fn listeners() -> Vec<Listener> {
    let mut out = Vec::new();
    let mut inodes = std::collections::HashMap::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1).take(200_000) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let Some(addr) = parse_proc_addr(f[1], v6) else {
                continue;
            };
            inodes.insert(f[9].to_string(), out.len());
            out.push(Listener {
                addr,
                pid: None,
                process: None,
            });
        }
    }
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten().take(100_000) {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
                continue;
            };
            for fd in fds.flatten().take(100_000) {
                let Ok(link) = std::fs::read_link(fd.path()) else {
                    continue;
                };
                let link = link.to_string_lossy();
                if let Some(inode) = link
                    .strip_prefix("socket:[")
                    .and_then(|s| s.strip_suffix(']'))
                {
                    if let Some(&i) = inodes.get(inode) {
                        if out[i].pid.is_none() {
                            out[i].pid = Some(pid);
                            out[i].process = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                                .ok()
                                .map(|c| c.trim().to_string());
                        }
                    }
                }
            }
        }
    }
    out
}

fn parse_proc_addr(s: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = s.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    if v6 {
        let mut bytes = [0u8; 16];
        for (i, chunk) in bytes.chunks_mut(4).enumerate() {
            let word = u32::from_str_radix(ip.get(i * 8..i * 8 + 8)?, 16).ok()?;
            chunk.copy_from_slice(&word.to_ne_bytes());
        }
        Some(SocketAddr::new(IpAddr::from(bytes), port))
    } else {
        let word = u32::from_str_radix(ip, 16).ok()?;
        Some(SocketAddr::new(IpAddr::from(word.to_ne_bytes()), port))
    }
}

/// Listeners that explain a refused `addr`: the same port on another (narrower) address, or a
/// nearby port (within 100) on an address that covers `addr`. Nearest first, at most five.
pub fn nearby(listeners: &[Listener], addr: SocketAddr) -> Vec<Listener> {
    let covers = |l: &Listener| l.addr.ip().is_unspecified() || l.addr.ip() == addr.ip();
    let mut found: Vec<(u32, Listener)> = listeners
        .iter()
        .filter_map(|l| {
            if l.addr.port() == addr.port() && !covers(l) {
                Some((0, l.clone()))
            } else if covers(l)
                && l.addr.port() != addr.port()
                && l.addr.port().abs_diff(addr.port()) <= 100
            {
                Some((u32::from(l.addr.port().abs_diff(addr.port())), l.clone()))
            } else {
                None
            }
        })
        .collect();
    found.sort_by_key(|f| f.0);
    found.dedup_by(|a, b| a.1.addr == b.1.addr);
    found.into_iter().take(5).map(|f| f.1).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_net_addresses() {
        assert_eq!(
            parse_proc_addr("0100007F:1F40", false),
            Some("127.0.0.1:8000".parse().unwrap())
        );
        assert_eq!(
            parse_proc_addr("00000000000000000000000001000000:0050", true),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn recognises_answers() {
        assert!(matches!(
            recognise(b"HTTP/1.1 502 Bad Gateway\r\nServer: x\r\n\r\n", 1),
            Answer::Http { status: 502, .. }
        ));
        assert!(matches!(
            recognise(&[0x15, 0x03, 0x03, 0, 2, 2, 50], 1),
            Answer::Tls { .. }
        ));
        assert!(matches!(
            recognise(&[1, 6, 0, 1, 0, 0, 0, 0], 1),
            Answer::Fastcgi
        ));
        assert!(matches!(
            recognise(b"SSH-2.0-OpenSSH", 1),
            Answer::Other { .. }
        ));
    }

    #[test]
    fn nearby_listeners() {
        let l = |a: &str| Listener {
            addr: a.parse().unwrap(),
            pid: None,
            process: None,
        };
        let all = vec![
            l("127.0.0.1:8001"),
            l("0.0.0.0:9000"),
            l("127.0.0.5:8000"),
            l("127.0.0.1:9999"),
        ];
        let near = nearby(&all, "127.0.0.1:8000".parse().unwrap());
        let addrs: Vec<String> = near.iter().map(|n| n.addr.to_string()).collect();
        assert_eq!(addrs, ["127.0.0.5:8000", "127.0.0.1:8001"]);
    }
}
