//! The HTTP exchange: a request written by gwdoctor itself and the answer read as it really is.
//!
//! HTTP/1.1 is written by hand and its response head parsed with httparse, so a broken answer is
//! seen and named instead of being smoothed over by a client library: no status line at all
//! (HTTP/0.9 or another protocol), an invalid header, a head that never ends, a chunked body
//! that breaks, a body that never ends. HTTP/2 (the h2 crate) is used when TLS' ALPN agreed on
//! `h2`, as a browser would.
//!
//! Bounds: the head at most [`Limits::max_head`] bytes and [`Limits::max_headers`] fields, the
//! body read up to [`Limits::max_body`] (only the first [`Limits::keep_body`] bytes are kept, for
//! fingerprinting). Every read waits at most until the request's deadline; what the server was
//! doing when the deadline struck names the failure: nothing at all ([`FailureKind::NoResponse`]),
//! still sending bytes ([`FailureKind::Trickle`]), gone silent ([`FailureKind::Stalled`]), or
//! holding an unframed body open ([`FailureKind::NeverCloses`]).

use super::proxy::Proxy;
use super::{Failure, FailureKind, HttpReport, Limits, Phase};
use base64::Engine;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::client::TlsStream;
use url::Url;

/// The User-Agent of every probe request.
pub const USER_AGENT: &str = concat!("gwdoctor/", env!("CARGO_PKG_VERSION"), " (probe)");
/// How much is read from the socket at once.
const READ_CHUNK: usize = 16 * 1024;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 4096;
/// Largest trailer section accepted after the last chunk.
const MAX_TRAILERS: usize = 16 * 1024;
/// Interim (1xx) responses skipped before the final one, at most.
const MAX_INTERIM: usize = 8;
/// A deadline that strikes within this long of the last byte received finds a trickle.
const TRICKLE_WINDOW: Duration = Duration::from_secs(1);

/// The request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: &'static str,
    /// The request target: origin-form (`/path?q`), or absolute-form through an HTTP proxy.
    pub target: String,
    /// The Host header.
    pub host: String,
    /// Further header fields, in order.
    pub headers: Vec<(String, String)>,
}

impl RequestSpec {
    /// A browser-like GET of `url`; through `proxy` (plain HTTP only) in absolute form with the
    /// proxy's credentials.
    pub fn for_url(url: &Url, proxy: Option<&Proxy>) -> RequestSpec {
        let mut target = url.path().to_string();
        if let Some(q) = url.query() {
            target.push('?');
            target.push_str(q);
        }
        let mut headers = vec![
            ("User-Agent".to_string(), USER_AGENT.to_string()),
            ("Accept".to_string(), "*/*".to_string()),
            // The body is read to recognise error pages: ask for it uncompressed.
            ("Accept-Encoding".to_string(), "identity".to_string()),
        ];
        if let Some(auth) = basic_auth(url) {
            headers.push(("Authorization".to_string(), auth));
        }
        if let Some(p) = proxy {
            let mut absolute = url.clone();
            absolute.set_fragment(None);
            let _ = absolute.set_username("");
            let _ = absolute.set_password(None);
            target = absolute.to_string();
            if let Some(auth) = p.authorization() {
                headers.push(("Proxy-Authorization".to_string(), auth));
            }
        }
        headers.push(("Connection".to_string(), "close".to_string()));
        RequestSpec {
            method: "GET",
            target,
            host: host_header(url),
            headers,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\n",
            self.method, self.target, self.host
        );
        for (k, v) in &self.headers {
            out.push_str(k);
            out.push_str(": ");
            out.push_str(v);
            out.push_str("\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// `host[:port]`, the port only when it is not the scheme's default; IPv6 in brackets.
pub fn host_header(url: &Url) -> String {
    let host = match url.host() {
        Some(url::Host::Ipv6(a)) => format!("[{a}]"),
        Some(h) => h.to_string(),
        None => String::new(),
    };
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    }
}

/// `Basic …` from credentials in the URL (`https://user:pass@host/`), as curl sends them.
pub fn basic_auth(url: &Url) -> Option<String> {
    if url.username().is_empty() {
        return None;
    }
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8_lossy()
            .into_owned()
    };
    let pair = format!(
        "{}:{}",
        decode(url.username()),
        decode(url.password().unwrap_or(""))
    );
    Some(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    ))
}

/// What one HTTP exchange produced: the response (possibly incomplete), the failure that ended
/// it, and its two timings.
#[derive(Debug, Default)]
pub struct Outcome {
    pub report: Option<HttpReport>,
    pub failure: Option<Failure>,
    /// From the request written to the first byte of the answer.
    pub wait: Option<Duration>,
    /// From the first byte to the end.
    pub transfer: Option<Duration>,
}

/// Reads a socket into a buffer, remembering when bytes arrived.
struct Reader<'a, S> {
    stream: &'a mut S,
    buf: Vec<u8>,
    first_byte: Option<Instant>,
    last_byte: Option<Instant>,
    received: u64,
}

/// Why a read gave nothing.
enum ReadEnd {
    Eof,
    Deadline,
    Io(std::io::Error),
}

impl<S: AsyncRead + Unpin> Reader<'_, S> {
    /// Appends what the next read brings (at most [`READ_CHUNK`] bytes).
    async fn fill(&mut self, deadline: Instant) -> Result<usize, ReadEnd> {
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let read =
            tokio::time::timeout_at(deadline, self.stream.read(&mut self.buf[start..])).await;
        let n = match read {
            Ok(Ok(n)) => n,
            // TLS without close_notify: what most servers do after `Connection: close`, and
            // what browsers accept as the end. Whether it cut something off is judged by the
            // framing, as for a plain close.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                self.buf.truncate(start);
                return Err(ReadEnd::Eof);
            }
            Ok(Err(e)) => {
                self.buf.truncate(start);
                return Err(ReadEnd::Io(e));
            }
            Err(_) => {
                self.buf.truncate(start);
                return Err(ReadEnd::Deadline);
            }
        };
        self.buf.truncate(start + n);
        if n == 0 {
            return Err(ReadEnd::Eof);
        }
        let now = Instant::now();
        self.first_byte.get_or_insert(now);
        self.last_byte = Some(now);
        self.received += n as u64;
        Ok(n)
    }

    /// Did bytes arrive shortly before the deadline (within the last quarter of the wait, and
    /// at most [`TRICKLE_WINDOW`] before it)? Then the server is trickling, not silent.
    fn trickling(&self, waited: Duration) -> bool {
        self.last_byte
            .is_some_and(|t| t.elapsed() <= TRICKLE_WINDOW.min(waited / 4))
    }
}

/// Shows the first bytes of something that is not what it should be.
fn first_bytes(bytes: &[u8]) -> String {
    let shown: Vec<u8> = bytes.iter().take(48).copied().collect();
    format!("{:?}", shown.escape_ascii().to_string())
}

/// The head as parsed.
struct Head {
    version: String,
    status: u16,
    reason: String,
    headers: Vec<(String, String)>,
    len: usize,
}

/// Parses a complete head out of `buf`, if it holds one.
fn parse_head(buf: &[u8], limits: &Limits) -> Result<Option<Head>, Failure> {
    let mut headers = vec![httparse::EMPTY_HEADER; limits.max_headers];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(Head {
            version: format!("HTTP/1.{}", response.version.unwrap_or(1)),
            status: response.code.unwrap_or(0),
            reason: response.reason.unwrap_or("").to_string(),
            headers: response
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(httparse::Error::TooManyHeaders) => Err(Failure::new(
            Phase::Head,
            FailureKind::TooManyHeaders,
            format!(
                "the response head has more than {} header fields (endless headers?)",
                limits.max_headers
            ),
        )),
        Err(e) => Err(Failure::new(
            Phase::Head,
            FailureKind::InvalidResponse,
            format!(
                "invalid response head ({e}); it starts {}",
                first_bytes(buf)
            ),
        )),
    }
}

/// Names an answer that is not HTTP at all, as soon as its first bytes show it.
fn not_http(buf: &[u8]) -> Option<Failure> {
    if buf.len() >= 2 && matches!(buf[0], 0x15 | 0x16) && buf[1] == 0x03 {
        return Some(Failure::new(
            Phase::Head,
            FailureKind::ProtocolMismatch,
            "the server answered with a TLS record: this port speaks https, the URL says http",
        ));
    }
    let prefix = &buf[..buf.len().min(5)];
    if !b"HTTP/".starts_with(prefix) {
        return Some(Failure::new(
            Phase::Head,
            FailureKind::NotHttp,
            format!(
                "the answer has no HTTP status line (HTTP/0.9 or another protocol); it starts {}",
                first_bytes(buf)
            ),
        ));
    }
    None
}

/// The failure for a read that ended early, in `phase`.
fn read_failure(
    end: ReadEnd,
    phase: Phase,
    got: u64,
    framed: Option<&str>,
    waited: Duration,
    trickling: bool,
) -> Failure {
    let waited_ms = waited.as_millis();
    match end {
        ReadEnd::Eof if got == 0 && phase == Phase::Head => Failure::new(
            phase,
            FailureKind::EmptyReply,
            "the server closed the connection without answering (empty reply)",
        ),
        ReadEnd::Eof => Failure::new(
            phase,
            FailureKind::Truncated,
            format!(
                "the server closed the connection after {got} bytes of the {}{}",
                phase.name(),
                framed.map(|f| format!(" ({f})")).unwrap_or_default()
            ),
        ),
        ReadEnd::Io(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Failure::new(
            phase,
            FailureKind::Reset,
            format!("the server reset the connection (RST) after {got} bytes of the {}", phase.name()),
        )
        .with_errno(e.raw_os_error()),
        ReadEnd::Io(e) => Failure::new(phase, FailureKind::Truncated, format!("reading the {} failed: {e}", phase.name()))
            .with_errno(e.raw_os_error()),
        ReadEnd::Deadline if got == 0 && phase == Phase::Head => Failure::new(
            phase,
            FailureKind::NoResponse,
            format!("no answer in {waited_ms} ms (the server accepted the request and stayed silent)"),
        ),
        ReadEnd::Deadline if trickling => Failure::new(
            phase,
            FailureKind::Trickle,
            format!(
                "cut off at the deadline after {waited_ms} ms: {got} bytes of the {} trickled in and it never ended",
                phase.name()
            ),
        ),
        ReadEnd::Deadline if phase == Phase::Body && framed.is_none() => Failure::new(
            phase,
            FailureKind::NeverCloses,
            format!(
                "cut off at the deadline after {waited_ms} ms: the body has no length (no Content-Length, not chunked) and the server never closed the connection ({got} bytes)"
            ),
        ),
        ReadEnd::Deadline => Failure::new(
            phase,
            FailureKind::Stalled,
            format!(
                "cut off at the deadline after {waited_ms} ms: {got} bytes of the {}{} arrived, then nothing",
                phase.name(),
                framed.map(|f| format!(" ({f})")).unwrap_or_default()
            ),
        ),
    }
}

/// The body as read: the first bytes kept, the rest counted.
struct Body {
    kept: Vec<u8>,
    total: u64,
    keep: usize,
    max: u64,
    capped: bool,
}

impl Body {
    fn new(limits: &Limits) -> Body {
        Body {
            kept: Vec::new(),
            total: 0,
            keep: limits.keep_body,
            max: limits.max_body,
            capped: false,
        }
    }

    /// Takes `data`; false once the bound is reached (reading stops there).
    fn push(&mut self, data: &[u8]) -> bool {
        let room = self.keep.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&data[..data.len().min(room)]);
        self.total += data.len() as u64;
        if self.total >= self.max {
            self.capped = true;
        }
        !self.capped
    }
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

impl Framing {
    fn name(self) -> &'static str {
        match self {
            Framing::None => "none",
            Framing::Length(_) => "content-length",
            Framing::Chunked => "chunked",
            Framing::Close => "close",
        }
    }
}

fn framing(method: &str, head: &Head) -> Result<Framing, Failure> {
    // No body: HEAD, 1xx, 204, 304, and a 2xx to CONNECT (the tunnel starts right after the head).
    if method == "HEAD"
        || (method == "CONNECT" && (200..300).contains(&head.status))
        || (100..200).contains(&head.status)
        || head.status == 204
        || head.status == 304
    {
        return Ok(Framing::None);
    }
    let values = |name: &str| {
        head.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
            .collect::<Vec<_>>()
    };
    let te = values("transfer-encoding");
    if let Some(last) = te
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .next_back()
    {
        if last.eq_ignore_ascii_case("chunked") {
            return Ok(Framing::Chunked);
        }
        return Ok(Framing::Close);
    }
    let lengths = values("content-length");
    if lengths.is_empty() {
        return Ok(Framing::Close);
    }
    let parsed: Result<Vec<u64>, _> = lengths
        .iter()
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().parse::<u64>())
        .collect();
    match parsed {
        Ok(mut ls) if !ls.is_empty() => {
            ls.dedup();
            if ls.len() == 1 {
                Ok(Framing::Length(ls[0]))
            } else {
                Err(Failure::new(
                    Phase::Head,
                    FailureKind::InvalidResponse,
                    format!("conflicting Content-Length values: {}", lengths.join(", ")),
                ))
            }
        }
        _ => Err(Failure::new(
            Phase::Head,
            FailureKind::InvalidResponse,
            format!("Content-Length {:?} is not a number", lengths.join(", ")),
        )),
    }
}

/// Writes `request` on `stream` and reads the answer, before `deadline`.
pub async fn h1_exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &RequestSpec,
    limits: &Limits,
    deadline: Instant,
) -> Outcome {
    h1_exchange_with_body(stream, request, &[], limits, deadline).await
}

/// Like [`h1_exchange`], with `body` sent right after the head (a POST; the caller puts its
/// `Content-Type` and `Content-Length` among `request.headers`).
pub async fn h1_exchange_with_body<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    request: &RequestSpec,
    body: &[u8],
    limits: &Limits,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut bytes = request.to_bytes();
    bytes.extend_from_slice(body);
    let write = async {
        stream.write_all(&bytes).await?;
        stream.flush().await
    };
    match tokio::time::timeout_at(deadline, write).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            outcome.failure = Some(
                Failure::new(
                    Phase::Send,
                    FailureKind::SendFailed,
                    format!("writing the request failed: {e}"),
                )
                .with_errno(e.raw_os_error()),
            );
            return outcome;
        }
        Err(_) => {
            outcome.failure = Some(Failure::new(
                Phase::Send,
                FailureKind::SendFailed,
                "the server did not take the request before the deadline",
            ));
            return outcome;
        }
    }
    let sent = Instant::now();
    let mut reader = Reader {
        stream,
        buf: Vec::with_capacity(READ_CHUNK),
        first_byte: None,
        last_byte: None,
        received: 0,
    };

    // The head (skipping interim 1xx answers).
    let mut interim = 0;
    let head = loop {
        if !reader.buf.is_empty() {
            match parse_head(&reader.buf, limits) {
                Ok(Some(head))
                    if (100..200).contains(&head.status)
                        && head.status != 101
                        && interim < MAX_INTERIM =>
                {
                    interim += 1;
                    reader.buf.drain(..head.len);
                    continue;
                }
                Ok(Some(head)) => break head,
                Ok(None) => {
                    if let Some(f) = not_http(&reader.buf) {
                        outcome.failure = Some(f);
                        break_timings(&mut outcome, sent, &reader);
                        return outcome;
                    }
                }
                Err(f) => {
                    outcome.failure = Some(not_http(&reader.buf).unwrap_or(f));
                    break_timings(&mut outcome, sent, &reader);
                    return outcome;
                }
            }
            if reader.buf.len() > limits.max_head {
                outcome.failure = Some(Failure::new(
                    Phase::Head,
                    FailureKind::HeadTooBig,
                    format!(
                        "the response head is longer than {} KiB and has not ended (endless headers?); it starts {}",
                        limits.max_head / 1024,
                        first_bytes(&reader.buf)
                    ),
                ));
                break_timings(&mut outcome, sent, &reader);
                return outcome;
            }
        }
        if let Err(end) = reader.fill(deadline).await {
            let trickling = reader.trickling(sent.elapsed());
            outcome.failure = Some(read_failure(
                end,
                Phase::Head,
                reader.buf.len() as u64,
                None,
                sent.elapsed(),
                trickling,
            ));
            break_timings(&mut outcome, sent, &reader);
            return outcome;
        }
    };
    outcome.wait = reader.first_byte.map(|t| t.duration_since(sent));
    reader.buf.drain(..head.len);

    let mut report = HttpReport {
        version: head.version.clone(),
        status: head.status,
        reason: head.reason.clone(),
        headers: head.headers.clone(),
        head_bytes: head.len,
        framing: String::new(),
        body_bytes: 0,
        body_complete: false,
        body_capped: false,
        body_start: String::new(),
        fingerprint: Default::default(),
    };
    let mut body = Body::new(limits);
    let result = match framing(request.method, &head) {
        Ok(f) => {
            report.framing = f.name().to_string();
            read_body(&mut reader, f, &mut body, deadline, sent).await
        }
        Err(f) => Err(f),
    };
    report.body_bytes = body.total;
    report.body_capped = body.capped;
    report.body_complete = result.is_ok() && !body.capped;
    report.body_start = String::from_utf8_lossy(&body.kept).into_owned();
    outcome.transfer = reader.first_byte.map(|t| t.elapsed());
    outcome.failure = result.err();
    outcome.report = Some(report);
    outcome
}

/// Timings of an exchange that ended before a head was complete.
fn break_timings<S>(outcome: &mut Outcome, sent: Instant, reader: &Reader<'_, S>) {
    outcome.wait = Some(
        reader
            .first_byte
            .map(|t| t.duration_since(sent))
            .unwrap_or_else(|| sent.elapsed()),
    );
    outcome.transfer = reader.first_byte.map(|t| t.elapsed());
}

async fn read_body<S: AsyncRead + Unpin>(
    reader: &mut Reader<'_, S>,
    framing: Framing,
    body: &mut Body,
    deadline: Instant,
    sent: Instant,
) -> Result<(), Failure> {
    match framing {
        Framing::None => Ok(()),
        Framing::Length(len) => {
            let framed = format!("Content-Length: {len}");
            loop {
                let want = len - body.total;
                let take = (reader.buf.len() as u64).min(want) as usize;
                if take > 0 && !body.push(&reader.buf[..take]) {
                    return Ok(());
                }
                reader.buf.drain(..take);
                if body.total >= len {
                    return Ok(());
                }
                if let Err(end) = reader.fill(deadline).await {
                    let trickling = reader.trickling(sent.elapsed());
                    return Err(read_failure(
                        end,
                        Phase::Body,
                        body.total,
                        Some(&framed),
                        sent.elapsed(),
                        trickling,
                    ));
                }
            }
        }
        Framing::Close => loop {
            if !reader.buf.is_empty() {
                let more = body.push(&reader.buf);
                reader.buf.clear();
                if !more {
                    return Ok(());
                }
            }
            match reader.fill(deadline).await {
                Ok(_) => {}
                Err(ReadEnd::Eof) => return Ok(()),
                Err(end) => {
                    let trickling = reader.trickling(sent.elapsed());
                    return Err(read_failure(
                        end,
                        Phase::Body,
                        body.total,
                        None,
                        sent.elapsed(),
                        trickling,
                    ));
                }
            }
        },
        Framing::Chunked => read_chunked(reader, body, deadline, sent).await,
    }
}

fn invalid_chunked(detail: String) -> Failure {
    Failure::new(Phase::Body, FailureKind::InvalidChunked, detail)
}

/// Decodes a chunked body (RFC 9112 §7.1), chunk by chunk, with every line bounded.
async fn read_chunked<S: AsyncRead + Unpin>(
    reader: &mut Reader<'_, S>,
    body: &mut Body,
    deadline: Instant,
    sent: Instant,
) -> Result<(), Failure> {
    let framed = "chunked";
    macro_rules! fill {
        () => {
            if let Err(end) = reader.fill(deadline).await {
                let trickling = reader.trickling(sent.elapsed());
                return Err(read_failure(
                    end,
                    Phase::Body,
                    body.total,
                    Some(framed),
                    sent.elapsed(),
                    trickling,
                ));
            }
        };
    }
    loop {
        let size = loop {
            match httparse::parse_chunk_size(&reader.buf) {
                Ok(httparse::Status::Complete((used, size))) => {
                    reader.buf.drain(..used);
                    break size;
                }
                Ok(httparse::Status::Partial) => {
                    if reader.buf.len() > MAX_CHUNK_LINE {
                        return Err(invalid_chunked(format!(
                            "a chunk-size line longer than {MAX_CHUNK_LINE} bytes after {} body bytes",
                            body.total
                        )));
                    }
                    fill!();
                }
                Err(_) => {
                    return Err(invalid_chunked(format!(
                        "invalid chunk-size line after {} body bytes: {}",
                        body.total,
                        first_bytes(&reader.buf)
                    )))
                }
            }
        };
        if size == 0 {
            // Trailer fields, then the empty line.
            loop {
                if reader.buf.starts_with(b"\r\n") {
                    return Ok(());
                }
                if memchr::memmem::find(&reader.buf, b"\r\n\r\n").is_some() {
                    return Ok(());
                }
                if reader.buf.len() > MAX_TRAILERS {
                    return Err(invalid_chunked(format!(
                        "trailers longer than {} KiB",
                        MAX_TRAILERS / 1024
                    )));
                }
                fill!();
            }
        }
        let mut remaining = size;
        while remaining > 0 {
            if reader.buf.is_empty() {
                fill!();
            }
            let take = (reader.buf.len() as u64).min(remaining) as usize;
            let more = body.push(&reader.buf[..take]);
            reader.buf.drain(..take);
            remaining -= take as u64;
            if !more {
                return Ok(());
            }
        }
        while reader.buf.len() < 2 {
            fill!();
        }
        if &reader.buf[..2] != b"\r\n" {
            return Err(invalid_chunked(format!(
                "chunk data not followed by CRLF after {} body bytes: {}",
                body.total,
                first_bytes(&reader.buf)
            )));
        }
        reader.buf.drain(..2);
    }
}

/// Aborts a spawned task when dropped (the HTTP/2 connection driver).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The failure for an HTTP/2 error in `phase`.
fn h2_failure(e: h2::Error, phase: Phase) -> Failure {
    if let Some(io) = e.get_io() {
        if io.kind() == std::io::ErrorKind::ConnectionReset {
            return Failure::new(
                phase,
                FailureKind::Reset,
                format!("HTTP/2: the server reset the connection: {io}"),
            )
            .with_errno(io.raw_os_error());
        }
        return Failure::new(phase, FailureKind::Truncated, format!("HTTP/2: {io}"))
            .with_errno(io.raw_os_error());
    }
    let what = if e.is_go_away() {
        "the server ended the connection (GOAWAY)"
    } else if e.is_reset() {
        "the server reset the stream (RST_STREAM)"
    } else {
        "protocol error"
    };
    let reason = e.reason().map(|r| format!(" {r:?}")).unwrap_or_default();
    Failure::new(
        phase,
        FailureKind::H2Error,
        format!("HTTP/2: {what}{reason}: {e}"),
    )
}

/// The exchange over HTTP/2: one GET stream on a fresh connection.
pub async fn h2_exchange(
    io: TlsStream<TcpStream>,
    url: &Url,
    request: &RequestSpec,
    limits: &Limits,
    deadline: Instant,
) -> Outcome {
    let mut outcome = Outcome::default();
    let deadline_failure = |phase: Phase, waited: Duration| {
        Failure::new(
            phase,
            if phase == Phase::Head {
                FailureKind::NoResponse
            } else {
                FailureKind::Stalled
            },
            format!(
                "HTTP/2: cut off at the deadline after {} ms in the {}",
                waited.as_millis(),
                phase.name()
            ),
        )
    };
    let started = Instant::now();
    let handshake = h2::client::Builder::new()
        .max_header_list_size(limits.max_head as u32)
        .handshake::<_, bytes::Bytes>(io);
    let (client, connection) = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => {
            outcome.failure = Some(h2_failure(e, Phase::Send));
            return outcome;
        }
        Err(_) => {
            outcome.failure = Some(deadline_failure(Phase::Send, started.elapsed()));
            return outcome;
        }
    };
    let _driver = AbortOnDrop(tokio::spawn(async move {
        let _ = connection.await;
    }));
    let mut client = match tokio::time::timeout_at(deadline, client.ready()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            outcome.failure = Some(h2_failure(e, Phase::Send));
            return outcome;
        }
        Err(_) => {
            outcome.failure = Some(deadline_failure(Phase::Send, started.elapsed()));
            return outcome;
        }
    };
    let mut builder = http::Request::builder()
        .method(request.method)
        .uri(url.as_str());
    for (k, v) in &request.headers {
        // Connection-specific fields are not allowed in HTTP/2.
        if !k.eq_ignore_ascii_case("connection") {
            builder = builder.header(k.to_ascii_lowercase(), v);
        }
    }
    let req = match builder.body(()) {
        Ok(r) => r,
        Err(e) => {
            outcome.failure = Some(Failure::new(
                Phase::Send,
                FailureKind::SendFailed,
                format!("HTTP/2 request: {e}"),
            ));
            return outcome;
        }
    };
    let response = match client.send_request(req, true) {
        Ok((response, _)) => response,
        Err(e) => {
            outcome.failure = Some(h2_failure(e, Phase::Send));
            return outcome;
        }
    };
    let sent = Instant::now();
    let response = match tokio::time::timeout_at(deadline, response).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            outcome.wait = Some(sent.elapsed());
            outcome.failure = Some(h2_failure(e, Phase::Head));
            return outcome;
        }
        Err(_) => {
            outcome.wait = Some(sent.elapsed());
            outcome.failure = Some(deadline_failure(Phase::Head, sent.elapsed()));
            return outcome;
        }
    };
    let first_byte = Instant::now();
    outcome.wait = Some(first_byte.duration_since(sent));
    let (parts, mut stream) = response.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let head_bytes = headers
        .iter()
        .map(|(k, v)| k.len() + v.len() + 4)
        .sum::<usize>()
        + 12;
    let mut body = Body::new(limits);
    let mut failure = None;
    loop {
        match tokio::time::timeout_at(deadline, stream.data()).await {
            Ok(Some(Ok(chunk))) => {
                let _ = stream.flow_control().release_capacity(chunk.len());
                if !body.push(&chunk) {
                    break;
                }
            }
            Ok(Some(Err(e))) => {
                failure = Some(h2_failure(e, Phase::Body));
                break;
            }
            Ok(None) => break,
            Err(_) => {
                failure = Some(Failure::new(
                    Phase::Body,
                    FailureKind::Stalled,
                    format!(
                        "HTTP/2: cut off at the deadline after {} ms: {} body bytes arrived, the stream never ended",
                        sent.elapsed().as_millis(),
                        body.total
                    ),
                ));
                break;
            }
        }
    }
    let report = HttpReport {
        version: "HTTP/2".to_string(),
        status: parts.status.as_u16(),
        reason: parts.status.canonical_reason().unwrap_or("").to_string(),
        headers,
        head_bytes,
        framing: "h2".to_string(),
        body_bytes: body.total,
        body_complete: failure.is_none() && !body.capped,
        body_capped: body.capped,
        body_start: String::from_utf8_lossy(&body.kept).into_owned(),
        fingerprint: Default::default(),
    };
    outcome.transfer = Some(first_byte.elapsed());
    outcome.failure = failure;
    outcome.report = Some(report);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Runs `h1_exchange` against a duplex pipe whose far end writes `answer` (then keeps the
    /// pipe open for `hold`, or closes).
    async fn answer(answer: &'static [u8], hold: Duration, timeout: Duration) -> Outcome {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        tokio::spawn(async move {
            let mut request = vec![0u8; 4096];
            let _ = server.read(&mut request).await;
            let _ = server.write_all(answer).await;
            tokio::time::sleep(hold).await;
        });
        let url = Url::parse("http://example.test/x").unwrap();
        let spec = RequestSpec::for_url(&url, None);
        h1_exchange(
            &mut client,
            &spec,
            &Limits::default(),
            Instant::now() + timeout,
        )
        .await
    }

    #[tokio::test]
    async fn reads_content_length_and_chunked_bodies() {
        let o = answer(
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n",
            Duration::ZERO,
            Duration::from_secs(2),
        )
        .await;
        let r = o.report.unwrap();
        assert!(o.failure.is_none());
        assert_eq!((r.status, r.body_bytes, r.body_complete), (200, 3, true));
        let o = answer(
            b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nX-T: 1\r\n\r\n",
            Duration::from_secs(5),
            Duration::from_secs(2),
        )
        .await;
        assert!(o.failure.is_none(), "{:?}", o.failure);
        let r = o.report.unwrap();
        assert_eq!(
            (r.status, r.body_start.as_str(), r.framing.as_str()),
            (502, "abcde", "chunked")
        );
    }

    #[tokio::test]
    async fn names_broken_answers() {
        // Each answer is written at once and the pipe closed, so only the bytes decide the kind.
        let cases: [(&'static [u8], FailureKind); 7] = [
            (
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\nzz\r\n",
                FailureKind::InvalidChunked,
            ),
            (b"\x00\x01garbage\r\n", FailureKind::NotHttp),
            // A TLS alert record: the far end speaks TLS, not plain HTTP.
            (
                b"\x15\x03\x03\x00\x02\x02\x46",
                FailureKind::ProtocolMismatch,
            ),
            (
                b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\r\n",
                FailureKind::InvalidResponse,
            ),
            (b"", FailureKind::EmptyReply),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
                FailureKind::Truncated,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                FailureKind::InvalidResponse,
            ),
        ];
        for (bytes, expected) in cases {
            let o = answer(bytes, Duration::ZERO, Duration::from_secs(2)).await;
            let failure = o.failure.map(|f| f.kind);
            assert_eq!(
                failure,
                Some(expected),
                "answer {:?}",
                String::from_utf8_lossy(bytes)
            );
        }
    }

    #[tokio::test]
    async fn an_unframed_body_held_open_never_closes() {
        let o = answer(
            b"HTTP/1.1 200 OK\r\n\r\nhello",
            Duration::from_secs(10),
            Duration::from_millis(1500),
        )
        .await;
        let f = o.failure.unwrap();
        assert_eq!((f.kind, f.phase), (FailureKind::NeverCloses, Phase::Body));
        assert_eq!(o.report.unwrap().body_bytes, 5);
    }

    #[tokio::test]
    async fn interim_answers_are_skipped() {
        let o = answer(
            b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
            Duration::ZERO,
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(o.report.unwrap().status, 204);
    }

    #[test]
    fn requests_carry_host_and_credentials() {
        let url = Url::parse("http://us%40er:p%3Ass@[::1]:8080/a?b=c#frag").unwrap();
        let spec = RequestSpec::for_url(&url, None);
        let text = String::from_utf8(spec.to_bytes()).unwrap();
        assert!(
            text.starts_with("GET /a?b=c HTTP/1.1\r\nHost: [::1]:8080\r\n"),
            "{text}"
        );
        // base64("us@er:p:ss")
        assert!(
            text.contains("Authorization: Basic dXNAZXI6cDpzcw==\r\n"),
            "{text}"
        );
        assert!(text.ends_with("Connection: close\r\n\r\n"));
    }
}
