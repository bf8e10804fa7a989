//! Access logs in any nginx `log_format` (and Apache's common/combined, which have the same
//! shape), so that `$upstream_addr`, `$upstream_status`, `$upstream_response_time` and
//! `$request_time` are used whenever a site logs them.
//!
//! A format is compiled once into literals and variables. A line is matched left to right: a
//! literal must stand where the previous value ended, and a variable's value runs up to the next
//! literal. nginx escapes `"` inside values as `\x22`, so a quoted value never contains the
//! quote that ends it.

use memchr::memmem;

/// nginx's predefined `combined` format (also Apache's combined `LogFormat`).
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;
/// The Common Log Format.
pub const COMMON: &str =
    r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent"#;

/// The variables gwdoctor reads; all others are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    TimeLocal,
    TimeIso8601,
    Msec,
    Status,
    Request,
    Uri,
    Host,
    UpstreamAddr,
    UpstreamStatus,
    UpstreamResponseTime,
    RequestTime,
    Other,
}

impl Field {
    fn from_name(name: &str) -> Field {
        match name {
            "time_local" => Field::TimeLocal,
            "time_iso8601" => Field::TimeIso8601,
            "msec" => Field::Msec,
            "status" => Field::Status,
            "request" => Field::Request,
            "request_uri" | "uri" => Field::Uri,
            "host" | "http_host" | "server_name" => Field::Host,
            "upstream_addr" => Field::UpstreamAddr,
            "upstream_status" => Field::UpstreamStatus,
            "upstream_response_time" => Field::UpstreamResponseTime,
            "request_time" => Field::RequestTime,
            _ => Field::Other,
        }
    }
}

#[derive(Debug, Clone)]
enum Token {
    Literal(Vec<u8>),
    Var(Field),
}

/// A compiled `log_format`.
#[derive(Debug, Clone)]
pub struct LogFormat {
    pub name: String,
    pub source: String,
    tokens: Vec<Token>,
    /// A finder for each literal token (same index), built once.
    finders: Vec<Option<memmem::Finder<'static>>>,
}

/// Why a `log_format` string cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("log format {0:?} has no variables")]
    NoVariables(String),
    #[error("log format {name:?}: two variables without text between them at ${var}; gwdoctor cannot tell where one ends")]
    Adjacent { name: String, var: String },
}

/// The values of one access-log line that gwdoctor uses, borrowed from the line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AccessRecord<'a> {
    pub time_local: Option<&'a [u8]>,
    pub time_iso8601: Option<&'a [u8]>,
    pub msec: Option<&'a [u8]>,
    pub status: Option<&'a [u8]>,
    pub request: Option<&'a [u8]>,
    pub uri: Option<&'a [u8]>,
    pub host: Option<&'a [u8]>,
    pub upstream_addr: Option<&'a [u8]>,
    pub upstream_status: Option<&'a [u8]>,
    pub upstream_response_time: Option<&'a [u8]>,
    pub request_time: Option<&'a [u8]>,
}

impl LogFormat {
    /// Compiles a format string in nginx syntax (`$var`, `${var}`).
    pub fn compile(name: &str, source: &str) -> Result<LogFormat, FormatError> {
        let bytes = source.as_bytes();
        let mut tokens: Vec<Token> = Vec::new();
        let mut literal = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'$'
                && i + 1 < bytes.len()
                && (bytes[i + 1] == b'{'
                    || bytes[i + 1].is_ascii_alphabetic()
                    || bytes[i + 1] == b'_')
            {
                let (var, next) = if bytes[i + 1] == b'{' {
                    let end = bytes[i + 2..]
                        .iter()
                        .position(|&c| c == b'}')
                        .map_or(bytes.len(), |p| i + 2 + p);
                    (&source[i + 2..end], (end + 1).min(bytes.len()))
                } else {
                    let len = bytes[i + 1..]
                        .iter()
                        .take_while(|c| c.is_ascii_alphanumeric() || **c == b'_')
                        .count();
                    (&source[i + 1..i + 1 + len], i + 1 + len)
                };
                if !literal.is_empty() {
                    tokens.push(Token::Literal(std::mem::take(&mut literal)));
                } else if matches!(tokens.last(), Some(Token::Var(_))) {
                    return Err(FormatError::Adjacent {
                        name: name.to_string(),
                        var: var.to_string(),
                    });
                }
                tokens.push(Token::Var(Field::from_name(var)));
                i = next;
            } else {
                literal.push(bytes[i]);
                i += 1;
            }
        }
        if !literal.is_empty() {
            tokens.push(Token::Literal(literal));
        }
        if !tokens.iter().any(|t| matches!(t, Token::Var(_))) {
            return Err(FormatError::NoVariables(name.to_string()));
        }
        let finders = tokens
            .iter()
            .map(|t| match t {
                Token::Literal(l) => Some(memmem::Finder::new(l).into_owned()),
                Token::Var(_) => None,
            })
            .collect();
        Ok(LogFormat {
            name: name.to_string(),
            source: source.to_string(),
            tokens,
            finders,
        })
    }

    /// nginx's `combined`.
    pub fn combined() -> LogFormat {
        LogFormat::compile("combined", COMBINED).expect("built-in format")
    }

    /// The Common Log Format.
    pub fn common() -> LogFormat {
        LogFormat::compile("common", COMMON).expect("built-in format")
    }

    /// Whether the format logs upstream details (then retried requests can be told apart).
    pub fn has(&self, field: Field) -> bool {
        self.tokens
            .iter()
            .any(|t| matches!(t, Token::Var(f) if *f == field))
    }

    /// Matches a line (without its newline); `None` when the line is not in this format.
    pub fn parse<'a>(&self, line: &'a [u8]) -> Option<AccessRecord<'a>> {
        let mut record = AccessRecord::default();
        let mut pos = 0;
        let n = self.tokens.len();
        let mut k = 0;
        while k < n {
            match &self.tokens[k] {
                Token::Literal(lit) => {
                    if !has_prefix(&line[pos..], lit) {
                        return None;
                    }
                    pos += lit.len();
                    k += 1;
                }
                Token::Var(field) => {
                    // A value runs to the next literal, which is then known to stand there.
                    let (end, next, step) = match (self.tokens.get(k + 1), self.finders.get(k + 1))
                    {
                        (Some(Token::Literal(lit)), Some(Some(finder))) => {
                            let at = pos + find_literal(&line[pos..], lit, finder)?;
                            (at, at + lit.len(), 2)
                        }
                        _ => (line.len(), line.len(), 1),
                    };
                    let value = &line[pos..end];
                    let slot = match field {
                        Field::TimeLocal => Some(&mut record.time_local),
                        Field::TimeIso8601 => Some(&mut record.time_iso8601),
                        Field::Msec => Some(&mut record.msec),
                        Field::Status => Some(&mut record.status),
                        Field::Request => Some(&mut record.request),
                        Field::Uri => Some(&mut record.uri),
                        Field::Host => Some(&mut record.host),
                        Field::UpstreamAddr => Some(&mut record.upstream_addr),
                        Field::UpstreamStatus => Some(&mut record.upstream_status),
                        Field::UpstreamResponseTime => Some(&mut record.upstream_response_time),
                        Field::RequestTime => Some(&mut record.request_time),
                        Field::Other => None,
                    };
                    if let Some(slot) = slot {
                        *slot = Some(value);
                    }
                    pos = next;
                    k += step;
                }
            }
        }
        // A status is what makes an access line; without it this is some other text.
        let status = record.status?;
        if status.len() != 3 || !status.iter().all(u8::is_ascii_digit) {
            return None;
        }
        Some(record)
    }
}

/// Whether `hay` starts with `prefix`, compared in place: the literals of a format are a few
/// bytes, for which a call to the C library's memcmp costs more than the comparison.
fn has_prefix(hay: &[u8], prefix: &[u8]) -> bool {
    hay.len() >= prefix.len() && hay.iter().zip(prefix).all(|(a, b)| a == b)
}

/// Where `literal` first occurs in `hay`. The value before a literal rarely contains the
/// literal's first byte (mostly a quote, which nginx escapes inside values), so a memchr on
/// that byte and a check usually find it at once; after a few false starts the prebuilt
/// substring finder takes over, so no value makes this slow.
fn find_literal(hay: &[u8], literal: &[u8], finder: &memmem::Finder) -> Option<usize> {
    let mut from = 0;
    for _ in 0..4 {
        let at = from + memchr::memchr(literal[0], &hay[from..])?;
        if has_prefix(&hay[at..], literal) {
            return Some(at);
        }
        from = at + 1;
    }
    finder.find(&hay[from..]).map(|i| from + i)
}

impl<'a> AccessRecord<'a> {
    pub fn status_code(&self) -> Option<u16> {
        let s = self.status?;
        Some(s.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0')))
    }

    /// The request's path: `$request_uri` or `$uri`, else the middle of `$request`
    /// (`GET /path HTTP/1.1`), without the query string.
    pub fn path(&self) -> Option<&'a [u8]> {
        let target = match self.uri {
            Some(uri) => uri,
            None => {
                let request = self.request?;
                let start = memchr::memchr(b' ', request)? + 1;
                let end = memchr::memrchr(b' ', request)
                    .filter(|&e| e > start)
                    .unwrap_or(request.len());
                &request[start..end]
            }
        };
        let end = memchr::memchr(b'?', target).unwrap_or(target.len());
        Some(&target[..end])
    }
}

/// One attempt of a request at an upstream: nginx logs one per try, `, ` between servers of a
/// group and ` : ` between groups (after an internal redirect): `502, 200`.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt<'a> {
    pub addr: &'a [u8],
    pub status: Option<u16>,
    pub seconds: Option<f64>,
}

fn number<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()
}

/// `$upstream_response_time`'s `0.288`: digits, a point, up to three decimals, read without the
/// general float parser (this runs for every request). The division of two exact integers is
/// correctly rounded, so the value is the one `str::parse` gives; other shapes go to it.
fn seconds(v: &[u8]) -> Option<f64> {
    const SCALE: [f64; 4] = [1.0, 10.0, 100.0, 1000.0];
    let v = v.trim_ascii();
    let (mut n, mut decimals, mut point) = (0u64, 0usize, false);
    if v.len() <= 13 {
        for &c in v {
            match c {
                b'0'..=b'9' => {
                    n = n * 10 + u64::from(c - b'0');
                    decimals += usize::from(point);
                }
                b'.' if !point => point = true,
                _ => return number(v),
            }
        }
        if point && (1..=3).contains(&decimals) && v[0] != b'.' {
            return Some(n as f64 / SCALE[decimals]);
        }
    }
    number(v)
}

/// A status code (`502`): three digits, read directly; other shapes go to the parser.
fn status_code(v: &[u8]) -> Option<u16> {
    match v.trim_ascii() {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        other => number(other),
    }
}

/// The attempts of one request: most have exactly one, which needs no allocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Attempts<'a> {
    One([Attempt<'a>; 1]),
    Many(Vec<Attempt<'a>>),
}

impl<'a> std::ops::Deref for Attempts<'a> {
    type Target = [Attempt<'a>];
    fn deref(&self) -> &[Attempt<'a>] {
        match self {
            Attempts::One(one) => one,
            Attempts::Many(many) => many,
        }
    }
}

/// Splits the upstream variables into attempts, aligned by position.
pub fn attempts<'a>(
    addr: &'a [u8],
    status: Option<&'a [u8]>,
    time: Option<&'a [u8]>,
) -> Attempts<'a> {
    // Most requests have one attempt: no list to split (lists hold ", " or " : ").
    let addr = addr.trim_ascii();
    if memchr::memchr2(b',', b' ', addr).is_none() {
        if addr.is_empty() || addr == b"-" {
            return Attempts::Many(Vec::new());
        }
        return Attempts::One([Attempt {
            addr,
            status: status.and_then(status_code),
            seconds: time.and_then(seconds),
        }]);
    }
    fn split(v: &[u8]) -> Vec<&[u8]> {
        v.split(|&c| c == b',' || c == b':')
            .map(|s| s.trim_ascii())
            .filter(|s| !s.is_empty())
            .collect()
    }
    // Addresses contain ':' (host:port, unix:/path): split them on ", " and " : " only.
    let addrs: Vec<&[u8]> = {
        let mut out = Vec::new();
        let mut rest = addr;
        loop {
            let cut = memmem::find(rest, b", ")
                .map(|i| (i, 2))
                .into_iter()
                .chain(memmem::find(rest, b" : ").map(|i| (i, 3)))
                .min_by_key(|&(i, _)| i);
            match cut {
                Some((i, len)) => {
                    out.push(rest[..i].trim_ascii());
                    rest = &rest[i + len..];
                }
                None => {
                    out.push(rest.trim_ascii());
                    break;
                }
            }
        }
        out
    };
    let statuses = status.map(split).unwrap_or_default();
    let times = time.map(split).unwrap_or_default();
    Attempts::Many(
        addrs
            .into_iter()
            .enumerate()
            .filter(|(_, a)| !a.is_empty() && *a != b"-")
            .map(|(i, addr)| Attempt {
                addr,
                status: statuses.get(i).and_then(|s| status_code(s)),
                seconds: times.get(i).and_then(|s| seconds(s)),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAB: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time"#;

    #[test]
    fn combined_lines_parse() {
        let f = LogFormat::combined();
        let line = br#"203.0.113.7 - - [02/May/2024:14:02:11 +0000] "GET /cart?id=1 HTTP/1.1" 502 157 "https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64)""#;
        let r = f.parse(line).unwrap();
        assert_eq!(r.status_code(), Some(502));
        assert_eq!(r.path(), Some(&b"/cart"[..]));
        assert_eq!(r.time_local, Some(&b"02/May/2024:14:02:11 +0000"[..]));
        // The Debian "main" format adds a field at the end: still combined.
        let longer = [&line[..], br#" "-""#].concat();
        assert!(f.parse(&longer).is_some());
        assert!(f.parse(b"2024/05/02 14:02:11 [error] 1#1: oops").is_none());
        assert!(LogFormat::common()
            .parse(br#"10.0.0.1 - bob [02/May/2024:14:02:11 +0000] "GET / HTTP/1.0" 200 12"#)
            .is_some());
    }

    #[test]
    fn custom_formats_with_upstream_lists() {
        let f = LogFormat::compile("lab", LAB).unwrap();
        assert!(f.has(Field::UpstreamStatus));
        let line = br#"127.0.0.1 - - [22/Nov/2026:00:13:28 +0000] "POST /submit HTTP/1.1" 200 3 "-" "gwdoctor-lab" upstream_addr="127.0.0.1:8001, 127.0.0.1:8002" upstream_status="502, 200" upstream_response_time="0.001, 0.004" request_time=0.005"#;
        let r = f.parse(line).unwrap();
        let a = attempts(
            r.upstream_addr.unwrap(),
            r.upstream_status,
            r.upstream_response_time,
        );
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].addr, b"127.0.0.1:8001");
        assert_eq!(a[0].status, Some(502));
        assert_eq!(a[1].status, Some(200));
        assert_eq!(a[1].seconds, Some(0.004));
        let groups = attempts(
            b"unix:/run/php.sock : 10.0.0.2:80",
            Some(b"504 : 200"),
            Some(b"60.001 : 0.010"),
        );
        assert_eq!(groups[0].addr, b"unix:/run/php.sock");
        assert_eq!(groups[1].status, Some(200));
        assert_eq!(groups[0].seconds, Some(60.001));
        // The quick reading of a time is the general parser's value.
        for v in [
            "0.288",
            "60.001",
            "0.0",
            "12.5",
            "1",
            "-",
            " 0.070 ",
            "1e3",
            "123456789.999",
        ] {
            assert_eq!(seconds(v.as_bytes()), number::<f64>(v.as_bytes()), "{v}");
        }
    }

    #[test]
    fn bad_formats_are_refused() {
        assert!(LogFormat::compile("x", "no variables").is_err());
        assert!(LogFormat::compile("x", "$status$request_time").is_err());
        assert!(LogFormat::compile("x", "${status} ${request}").is_ok());
    }
}
