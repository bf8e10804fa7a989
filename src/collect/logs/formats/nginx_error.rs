//! nginx's error-log line:
//!
//! ```text
//! 2024/05/02 14:02:11 [error] 812#812: *1042 connect() failed (111: Connection refused) while
//! connecting to upstream, client: 203.0.113.7, server: example.com, request: "GET / HTTP/1.1",
//! upstream: "http://127.0.0.1:8000/", host: "example.com"
//! ```
//!
//! nginx writes the time, `[level]`, `pid#tid:`, an optional `*connection` number, the message, and
//! then the request's context in a fixed order (`ngx_http_log_error` in ngx_http_request.c):
//! client, server, request, subrequest, upstream, host, referrer. Quoted values are written
//! without escaping, so the parser looks for each key after the previous one instead of
//! tokenising quotes.

/// The parts of one nginx error-log line. Borrowed from the line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NginxErrorLine<'a> {
    /// `2024/05/02 14:02:11`
    pub time: &'a str,
    /// `error`, `warn`, `crit`, `emerg` …
    pub level: &'a str,
    pub pid: Option<u32>,
    pub connection: Option<u64>,
    /// The message without the context fields.
    pub message: &'a str,
    pub client: Option<&'a str>,
    pub server: Option<&'a str>,
    pub request: Option<&'a str>,
    pub subrequest: Option<&'a str>,
    /// As written: `http://127.0.0.1:8000/path`, `fastcgi://unix:/run/php/php-fpm.sock:`.
    pub upstream: Option<&'a str>,
    pub host: Option<&'a str>,
    pub referrer: Option<&'a str>,
}

const LEVELS: &[&str] = &[
    "debug", "info", "notice", "warn", "error", "crit", "alert", "emerg",
];

/// The context keys in the order nginx writes them, as they appear after the message
/// (", client: ") and at the start of the context ("client: ").
const CONTEXT_KEYS: &[(&str, &str, &str)] = &[
    ("client", ", client: ", "client: "),
    ("server", ", server: ", "server: "),
    ("request", ", request: ", "request: "),
    ("subrequest", ", subrequest: ", "subrequest: "),
    ("upstream", ", upstream: ", "upstream: "),
    ("host", ", host: ", "host: "),
    ("referrer", ", referrer: ", "referrer: "),
];

/// Parses a line; `None` when it is not in nginx's error-log format.
pub fn parse(line: &str) -> Option<NginxErrorLine<'_>> {
    let head = parse_head(line)?;
    let mut parsed = NginxErrorLine {
        time: head.time,
        level: head.level,
        pid: head.pid,
        connection: head.connection,
        message: head.message,
        ..Default::default()
    };
    if let Some(context) = head.context {
        parse_context(context, &mut parsed);
    }
    Some(parsed)
}

/// The envelope and the message of a line, the context left whole: what the log scanner needs
/// on its hot path (the full [`parse`] takes the context apart too).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head<'a> {
    pub time: &'a str,
    pub level: &'a str,
    pub pid: Option<u32>,
    pub connection: Option<u64>,
    pub message: &'a str,
    /// From the first context key on: `client: 203.0.113.7, server: …`.
    pub context: Option<&'a str>,
}

impl<'a> Head<'a> {
    /// The `upstream: "…"` value as written, found with one search.
    pub fn upstream(&self) -> Option<&'a str> {
        let context = self.context?;
        let value = upstream_in(context.as_bytes())?;
        // The value is cut at ASCII quotes, so these are char boundaries of `context`.
        let start = value.as_ptr() as usize - context.as_ptr() as usize;
        Some(&context[start..start + value.len()])
    }

    /// Whether the request's context follows the message directly (`…, client: `).
    pub fn client_follows(&self) -> bool {
        self.context.is_some_and(|c| c.starts_with("client: "))
    }
}

/// The `upstream: "…"` value of a line's context (from the first context key on).
pub fn upstream_in(context: &[u8]) -> Option<&[u8]> {
    let start = if context.starts_with(b"upstream: ") {
        0
    } else {
        finders()[4].find(context)? + 2
    };
    let value = context[start + "upstream: ".len()..].strip_prefix(b"\"")?;
    let end = memchr::memchr(b'"', value).unwrap_or(value.len());
    Some(&value[..end])
}

/// Where the parts of a line's envelope are, as byte ranges of the line: what the log scanner's
/// hot path reads without validating the whole line as UTF-8. Every boundary is an ASCII byte.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadSpans {
    pub level: std::ops::Range<usize>,
    pub pid: Option<u32>,
    pub connection: Option<u64>,
    pub message: std::ops::Range<usize>,
    /// Where the context starts (its first key), when there is one.
    pub context: Option<usize>,
}

/// Parses the envelope; `None` when the line is not in nginx's error-log format.
pub fn parse_head(line: &str) -> Option<Head<'_>> {
    let line = line.trim_end_matches(['\r', '\n']);
    let spans = head_spans(line.as_bytes())?;
    Some(Head {
        time: &line[..19],
        level: &line[spans.level],
        pid: spans.pid,
        connection: spans.connection,
        message: &line[spans.message],
        context: spans.context.map(|c| &line[c..]),
    })
}

/// [`parse_head`] on bytes: the time is `line[..19]`.
pub fn head_spans(bytes: &[u8]) -> Option<HeadSpans> {
    // "YYYY/MM/DD HH:MM:SS [" — checked by shape, not by regex: this runs on every line.
    if bytes.len() < 22
        || bytes[4] != b'/'
        || bytes[7] != b'/'
        || bytes[10] != b' '
        || bytes[13] != b':'
        || bytes[19] != b' '
        || bytes[20] != b'['
    {
        return None;
    }
    if !bytes[..4].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let close = 21
        + memchr::memchr(b']', &bytes[21..]).filter(|&i| bytes.get(21 + i + 1) == Some(&b' '))?;
    let level = 21..close;
    if !LEVELS.iter().any(|l| l.as_bytes() == &bytes[level.clone()]) {
        return None;
    }
    let mut at = close + 2;
    let mut pid = None;
    let mut connection = None;
    // "812#812: "
    if let Some(colon) =
        memchr::memchr(b':', &bytes[at..]).filter(|&i| bytes.get(at + i + 1) == Some(&b' '))
    {
        let ids = &bytes[at..at + colon];
        if let Some(hash) = memchr::memchr(b'#', ids) {
            let (p, tid) = (&ids[..hash], &ids[hash + 1..]);
            if p.iter().all(u8::is_ascii_digit) && tid.iter().all(u8::is_ascii_digit) {
                pid = digits(p);
                at += colon + 2;
            }
        }
    }
    // "*1042 "
    if bytes.get(at) == Some(&b'*') {
        let n = bytes[at + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if n > 0 && bytes.get(at + 1 + n) == Some(&b' ') {
            connection = digits(&bytes[at + 1..at + 1 + n]);
            at += n + 2;
        }
    }
    let (message_len, context) = split_context(&bytes[at..]);
    Some(HeadSpans {
        level,
        pid,
        connection,
        message: at..at + message_len,
        context: context.map(|c| at + c),
    })
}

/// A decimal number of ASCII digits; `None` when empty or too large.
fn digits<T: TryFrom<u64>>(d: &[u8]) -> Option<T> {
    if d.is_empty() || d.len() > 19 {
        return None;
    }
    T::try_from(d.iter().fold(0u64, |n, &c| n * 10 + u64::from(c - b'0'))).ok()
}

/// Prebuilt searchers for the context keys (building one costs more than a search).
fn finders() -> &'static [memchr::memmem::Finder<'static>] {
    static FINDERS: std::sync::OnceLock<Vec<memchr::memmem::Finder<'static>>> =
        std::sync::OnceLock::new();
    FINDERS.get_or_init(|| {
        CONTEXT_KEYS
            .iter()
            .map(|(_, needle, _)| memchr::memmem::Finder::new(needle.as_bytes()))
            .collect()
    })
}

/// Splits "message, client: …" at the first context key nginx would write: the message's
/// length and where the context starts.
fn split_context(rest: &[u8]) -> (usize, Option<usize>) {
    for finder in finders() {
        if let Some(at) = finder.find(rest) {
            return (at, Some(at + 2));
        }
    }
    (rest.len(), None)
}

fn parse_context<'a>(context: &'a str, out: &mut NginxErrorLine<'a>) {
    // Find each key's start, in nginx's order, then cut the values between them.
    let mut starts: Vec<(usize, &str)> = Vec::with_capacity(CONTEXT_KEYS.len());
    let mut from = 0;
    for (&(key, _, head), finder) in CONTEXT_KEYS.iter().zip(finders()) {
        let at = if from == 0 && context.starts_with(head) {
            Some(0)
        } else {
            finder
                .find(&context.as_bytes()[from..])
                .map(|i| from + i + 2)
        };
        if let Some(at) = at {
            starts.push((at, key));
            from = at + key.len() + 2;
        }
    }
    for (n, &(at, key)) in starts.iter().enumerate() {
        let value_start = at + key.len() + 2;
        let value_end = starts
            .get(n + 1)
            .map_or(context.len(), |&(next, _)| next - 2);
        if value_end < value_start {
            continue;
        }
        let raw = &context[value_start..value_end];
        let value = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(raw);
        let slot = match key {
            "client" => &mut out.client,
            "server" => &mut out.server,
            "request" => &mut out.request,
            "subrequest" => &mut out.subrequest,
            "upstream" => &mut out.upstream,
            "host" => &mut out.host,
            _ => &mut out.referrer,
        };
        *slot = Some(value);
    }
}

impl<'a> NginxErrorLine<'a> {
    /// The upstream's address without scheme and URI: `127.0.0.1:8000`, `[::1]:3000`,
    /// `unix:/run/php/php8.2-fpm.sock`.
    pub fn upstream_address(&self) -> Option<&'a str> {
        self.upstream.map(upstream_address)
    }

    /// The context as (name, value) pairs, in nginx's order, for reports.
    pub fn context_fields(&self) -> Vec<(&'static str, &'a str)> {
        let mut fields = Vec::new();
        if let Some(address) = self.upstream_address() {
            fields.push(("upstream", address));
        }
        for (name, value) in [
            ("client", self.client),
            ("server", self.server),
            ("request", self.request),
            ("host", self.host),
        ] {
            if let Some(value) = value {
                fields.push((name, value));
            }
        }
        fields
    }
}

/// `http://127.0.0.1:8000/x` → `127.0.0.1:8000`; `fastcgi://unix:/run/a.sock:` → `unix:/run/a.sock`.
pub fn upstream_address(upstream: &str) -> &str {
    let without_scheme = upstream
        .split_once("://")
        .map_or(upstream, |(_, rest)| rest);
    if let Some(path) = without_scheme.strip_prefix("unix:") {
        // nginx writes the socket as "unix:/path:" followed by the URI.
        let end = path.find(':').unwrap_or(path.len());
        return &without_scheme[..5 + end];
    }
    let end = without_scheme.find('/').unwrap_or(without_scheme.len());
    &without_scheme[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_upstream_line() {
        let line = r#"2024/05/02 14:02:11 [error] 812#812: *1042 connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.7, server: example.com, request: "GET /a, b HTTP/1.1", upstream: "http://127.0.0.1:8000/a", host: "example.com", referrer: "https://example.com/""#;
        let p = parse(line).unwrap();
        assert_eq!(p.time, "2024/05/02 14:02:11");
        assert_eq!(p.level, "error");
        assert_eq!(p.pid, Some(812));
        assert_eq!(p.connection, Some(1042));
        assert_eq!(
            p.message,
            "connect() failed (111: Connection refused) while connecting to upstream"
        );
        assert_eq!(p.client, Some("203.0.113.7"));
        assert_eq!(p.server, Some("example.com"));
        assert_eq!(p.request, Some("GET /a, b HTTP/1.1"));
        assert_eq!(p.upstream_address(), Some("127.0.0.1:8000"));
        assert_eq!(p.host, Some("example.com"));
        assert_eq!(p.referrer, Some("https://example.com/"));
    }

    #[test]
    fn parses_unix_socket_upstreams_and_lines_without_context() {
        let line = r#"2024/05/02 14:02:11 [crit] 9#9: *3 connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory) while connecting to upstream, client: 10.0.0.1, server: _, request: "GET /index.php HTTP/1.1", upstream: "fastcgi://unix:/run/php/php8.2-fpm.sock:", host: "x""#;
        assert_eq!(
            parse(line).unwrap().upstream_address(),
            Some("unix:/run/php/php8.2-fpm.sock")
        );
        let emerg = r#"2024/05/02 14:02:11 [emerg] 77#77: host not found in upstream "app:8000" in /etc/nginx/conf.d/default.conf:12"#;
        let p = parse(emerg).unwrap();
        assert_eq!(p.level, "emerg");
        assert_eq!(p.connection, None);
        assert!(p.message.ends_with("default.conf:12"));
        assert_eq!(upstream_address("http://[::1]:3000/"), "[::1]:3000");
    }

    #[test]
    fn rejects_other_formats_without_panicking() {
        for line in [
            "",
            "2024/05/02",
            "[Thu May 02 14:02:11.1 2024] [proxy:error] x",
            "2024/05/02 14:02:11 [bogus] x",
            "2024/05/02 14:02:11 [error]",
            "\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}\u{fffd}",
        ] {
            let _ = parse(line);
        }
        assert!(parse("[Thu May 02 14:02:11.1 2024] [proxy:error] x").is_none());
    }
}
