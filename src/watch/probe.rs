//! A small HTTP/1.1 client over tokio: enough to probe a URL phase by phase (resolve, connect,
//! first byte, whole response) and to POST a webhook, with a deadline on every step and a bound
//! on every read.
//!
//! When a probe fails, it says why in one word (`refused`, `connect-timeout`, `reset`, …): the
//! label of `gwdoctor_probe_failures_total{reason}`, so a dashboard shows not just that a
//! target is down but how.

use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The most bytes of a response head read (nginx's own limit for a request head is 8 KiB).
const MAX_HEAD: usize = 64 * 1024;
/// The most bytes of a body read and thrown away before the probe stops reading.
const MAX_BODY: usize = 1024 * 1024;
/// The body bytes kept for the caller (an error page's text, to recognise the product).
const KEPT_BODY: usize = 4096;

/// An `http://host[:port]/path` URL, taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    /// `user:password@` of the URL, sent as Basic authorization (never shown).
    pub userinfo: Option<String>,
}

impl ProbeUrl {
    pub fn parse(url: &str) -> Result<ProbeUrl, String> {
        let shown = crate::redact::redact(url);
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("URL {shown}: https is not supported by watch's prober yet; probe the plain-http listener or a health port")
            } else {
                format!("URL {shown}: expected http://HOST[:PORT]/PATH")
            }
        })?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(authority[..i].to_string()), &authority[i + 1..]),
            None => (None, authority),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let end = v6
                .find(']')
                .ok_or_else(|| format!("URL {shown}: unclosed [ in the host"))?;
            let port = v6[end + 1..].strip_prefix(':');
            (v6[..end].to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            }
        };
        if host.is_empty() {
            return Err(format!("URL {shown}: no host"));
        }
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&p| p > 0)
                .ok_or_else(|| format!("URL {shown}: port {p:?} is not a port number"))?,
            None => 80,
        };
        if path.chars().any(|c| c.is_control() || c == ' ') {
            return Err(format!(
                "URL {shown}: spaces or control characters in the path"
            ));
        }
        Ok(ProbeUrl {
            host,
            port,
            path,
            userinfo,
        })
    }

    /// The `Host:` header value.
    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// How a probe ended.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeResult {
    /// The response status, when a response head arrived.
    pub status: Option<u16>,
    /// Why the probe failed (`None`: a response below 500 arrived).
    pub failure: Option<&'static str>,
    /// Seconds spent in each phase that was reached: `resolve`, `connect`, `first_byte`,
    /// `total`.
    pub phases: Vec<(&'static str, f64)>,
    /// The server's address, once resolved.
    pub addr: Option<SocketAddr>,
    /// A line for people: what happened, with its numbers.
    pub detail: String,
    /// The start of the body (for recognising whose error page it is).
    pub body: String,
}

/// Why a request did not get a response.
#[derive(Debug)]
struct Failed {
    reason: &'static str,
    detail: String,
}

fn failed(reason: &'static str, detail: impl Into<String>) -> Failed {
    Failed {
        reason,
        detail: detail.into(),
    }
}

/// The reason word for a connect error.
fn connect_reason(e: &std::io::Error) -> &'static str {
    use std::io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => "refused",
        ConnectionReset => "reset",
        HostUnreachable | NetworkUnreachable => "unreachable",
        AddrNotAvailable => "no-address",
        _ => "connect-error",
    }
}

fn read_reason(e: &std::io::Error) -> &'static str {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => "reset",
        _ => "read-error",
    }
}

/// A response: status, and the start of the body.
struct Response {
    status: u16,
    body: Vec<u8>,
}

/// Sends one request (`GET` without a body, else `POST` with `content_type`) within `deadline`
/// and records the phases as they complete.
async fn exchange(
    url: &ProbeUrl,
    body: Option<(&str, &[u8])>,
    deadline: Duration,
    phases: &mut Vec<(&'static str, f64)>,
    addr_out: &mut Option<SocketAddr>,
) -> Result<Response, Failed> {
    let started = Instant::now();
    let end = tokio::time::Instant::now() + deadline;
    let left = || end.saturating_duration_since(tokio::time::Instant::now());

    let addrs = tokio::time::timeout(
        left(),
        tokio::net::lookup_host((url.host.as_str(), url.port)),
    )
    .await
    .map_err(|_| {
        failed(
            "dns-timeout",
            format!("resolving {} took longer than {deadline:?}", url.host),
        )
    })?
    .map_err(|e| failed("dns", format!("cannot resolve {}: {e}", url.host)))?
    .collect::<Vec<_>>();
    let addr = *addrs
        .first()
        .ok_or_else(|| failed("dns", format!("{} has no address", url.host)))?;
    *addr_out = Some(addr);
    phases.push(("resolve", started.elapsed().as_secs_f64()));

    let connect_started = Instant::now();
    let mut stream = tokio::time::timeout(left(), TcpStream::connect(addr))
        .await
        .map_err(|_| {
            failed(
                "connect-timeout",
                format!("connect to {addr}: no answer within {deadline:?}"),
            )
        })?
        .map_err(|e| failed(connect_reason(&e), format!("connect to {addr}: {e}")))?;
    phases.push(("connect", connect_started.elapsed().as_secs_f64()));

    let mut request = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: gwdoctor-watch/{}\r\nAccept: */*\r\nConnection: close\r\n",
        if body.is_some() { "POST" } else { "GET" },
        url.path,
        url.host_header(),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(user) = &url.userinfo {
        request.push_str(&format!(
            "Authorization: Basic {}\r\n",
            base64(user.as_bytes())
        ));
    }
    if let Some((content_type, bytes)) = body {
        request.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
            bytes.len()
        ));
    }
    request.push_str("\r\n");
    let mut out = request.into_bytes();
    if let Some((_, bytes)) = body {
        out.extend_from_slice(bytes);
    }
    let write_started = Instant::now();
    tokio::time::timeout(left(), stream.write_all(&out))
        .await
        .map_err(|_| failed("write-timeout", "sending the request timed out"))?
        .map_err(|e| failed(read_reason(&e), format!("sending the request: {e}")))?;

    // The head, read until it parses, within MAX_HEAD bytes.
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let mut first_byte = false;
    let (status, head_len) = loop {
        let n = tokio::time::timeout(left(), stream.read(&mut chunk))
            .await
            .map_err(|_| {
                failed(
                    if first_byte {
                        "read-timeout"
                    } else {
                        "timeout"
                    },
                    format!("no complete response within {deadline:?}"),
                )
            })?
            .map_err(|e| failed(read_reason(&e), format!("reading the response: {e}")))?;
        if n == 0 {
            return Err(failed(
                "closed",
                if buf.is_empty() {
                    "the server closed the connection without answering".to_string()
                } else {
                    format!(
                        "the connection closed after {} bytes of an incomplete head",
                        buf.len()
                    )
                },
            ));
        }
        if !first_byte {
            first_byte = true;
            phases.push(("first_byte", write_started.elapsed().as_secs_f64()));
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                break (response.code.unwrap_or(0), len);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => continue,
            Ok(httparse::Status::Partial) => {
                return Err(failed(
                    "bad-response",
                    format!("response head over {MAX_HEAD} bytes"),
                ))
            }
            Err(e) => {
                return Err(failed(
                    "bad-response",
                    format!("malformed response head: {e}"),
                ))
            }
        }
    };
    // The body: read (bounded) until the server closes, keeping its start.
    let mut body_bytes = buf.split_off(head_len);
    let mut total = body_bytes.len();
    while total < MAX_BODY {
        match tokio::time::timeout(left(), stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                total += n;
                if body_bytes.len() < KEPT_BODY {
                    body_bytes.extend_from_slice(&chunk[..n]);
                }
            }
            Err(_) => {
                return Err(failed(
                    "read-timeout",
                    format!("body not complete within {deadline:?}"),
                ))
            }
        }
    }
    body_bytes.truncate(KEPT_BODY);
    phases.push(("total", started.elapsed().as_secs_f64()));
    Ok(Response {
        status,
        body: body_bytes,
    })
}

/// Probes `url` with a GET; a 5xx answer is a failure with reason `http-5xx`.
pub async fn probe(url: &ProbeUrl, deadline: Duration) -> ProbeResult {
    let mut phases = Vec::new();
    let mut addr = None;
    match exchange(url, None, deadline, &mut phases, &mut addr).await {
        Ok(r) => {
            let total = phases.last().map_or(0.0, |p| p.1);
            ProbeResult {
                status: Some(r.status),
                failure: (r.status >= 500).then_some("http-5xx"),
                detail: format!("HTTP {} in {:.1} ms", r.status, total * 1000.0),
                phases,
                addr,
                body: String::from_utf8_lossy(&r.body).into_owned(),
            }
        }
        Err(f) => ProbeResult {
            status: None,
            failure: Some(f.reason),
            phases,
            addr,
            detail: f.detail,
            body: String::new(),
        },
    }
}

/// POSTs `body` to `url`; Ok with the status when a response below 300 arrived.
pub async fn post(
    url: &ProbeUrl,
    content_type: &str,
    body: &[u8],
    deadline: Duration,
) -> Result<u16, String> {
    let mut phases = Vec::new();
    let mut addr = None;
    match exchange(
        url,
        Some((content_type, body)),
        deadline,
        &mut phases,
        &mut addr,
    )
    .await
    {
        Ok(r) if (200..300).contains(&r.status) => Ok(r.status),
        Ok(r) => Err(format!("HTTP {}", r.status)),
        Err(f) => Err(f.detail),
    }
}

/// Standard base64 (for `Authorization: Basic`): a dozen lines, not worth a crate.
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ProbeUrl::parse("http://127.0.0.1:8080/health?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("127.0.0.1", 8080, "/health?x=1")
        );
        let u = ProbeUrl::parse("http://example.test").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        let u = ProbeUrl::parse("http://[::1]:81/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.host_header().as_str()),
            ("::1", "[::1]:81")
        );
        let u = ProbeUrl::parse("http://a:b@h:1/").unwrap();
        assert_eq!(u.userinfo.as_deref(), Some("a:b"));
        assert!(ProbeUrl::parse("https://h/").unwrap_err().contains("https"));
        assert!(ProbeUrl::parse("http://h:99999/").is_err());
        assert!(ProbeUrl::parse("http:///x").is_err());
        // Messages never echo a password.
        assert!(!ProbeUrl::parse("http://u:secret@h:x/")
            .unwrap_err()
            .contains("secret"));
    }

    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
        assert_eq!(base64(b"fooba"), "Zm9vYmE=");
        assert_eq!(base64(b"foob"), "Zm9vYg==");
        assert_eq!(base64(b""), "");
    }
}
