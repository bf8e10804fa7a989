//! Which format a log file is in (decided on a sample of its first lines), and the time of a
//! line of each format.

use super::super::time;
use super::access::LogFormat;
use super::{json_access, nginx_error};

/// The formats gwdoctor reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogKind {
    NginxError,
    /// An access log in the format of this index of the candidate formats.
    Access(usize),
    JsonAccess,
    ApacheError,
    /// PHP-FPM's own log and PHP's error log: `[02-May-2024 14:02:11] WARNING: …`.
    PhpFpm,
    /// gunicorn: `[2024-05-02 14:02:11 +0000] [812] [CRITICAL] …`.
    Gunicorn,
    /// uWSGI's log (mostly lines without a time of their own).
    Uwsgi,
    /// The kernel's ring buffer (`dmesg`, `[12345.678901] …`) or syslog/journal lines.
    System,
    /// Anything else: classified by signatures only, without a time.
    Other,
}

impl LogKind {
    pub fn name(self) -> &'static str {
        match self {
            LogKind::NginxError => "nginx-error",
            LogKind::Access(_) => "access",
            LogKind::JsonAccess => "json-access",
            LogKind::ApacheError => "apache-error",
            LogKind::PhpFpm => "php-fpm",
            LogKind::Gunicorn => "gunicorn",
            LogKind::Uwsgi => "uwsgi",
            LogKind::System => "system",
            LogKind::Other => "other",
        }
    }

    pub fn is_access(self) -> bool {
        matches!(self, LogKind::Access(_) | LogKind::JsonAccess)
    }
}

/// The text up to the closing bracket.
fn bracketed(inner: &[u8]) -> &[u8] {
    &inner[..memchr::memchr(b']', inner).unwrap_or(inner.len())]
}

/// The kind of one line, or `None` for a line of no recognisable shape.
fn line_kind(line: &[u8], formats: &[LogFormat]) -> Option<LogKind> {
    if line.len() > 19 && time::nginx_error(line).is_some() {
        return Some(LogKind::NginxError);
    }
    if let Some(inner) = line.strip_prefix(b"[") {
        if time::apache_error(bracketed(inner)).is_some() {
            return Some(LogKind::ApacheError);
        }
        if time::fpm(inner).is_some() {
            return Some(LogKind::PhpFpm);
        }
        if time::iso8601(inner).is_some() {
            return Some(LogKind::Gunicorn);
        }
        if inner
            .first()
            .is_some_and(|c| c.is_ascii_digit() || *c == b' ')
            && memchr::memchr(b']', inner).is_some_and(|i| i < 16)
        {
            return Some(LogKind::System);
        }
    }
    if line.first() == Some(&b'{') {
        return json_access::parse(line).map(|_| LogKind::JsonAccess);
    }
    if let Some(i) = formats.iter().position(|f| f.parse(line).is_some()) {
        return Some(LogKind::Access(i));
    }
    if time::syslog(line, 2000).is_some() {
        return Some(LogKind::System);
    }
    if memchr::memmem::find(line, b"uWSGI").is_some()
        || line.starts_with(b"*** ")
        || memchr::memmem::find(line, b"invalid request block size").is_some()
    {
        return Some(LogKind::Uwsgi);
    }
    None
}

/// Decides a file's format from sample lines: the most frequent line kind wins.
pub fn detect(sample: &[&[u8]], formats: &[LogFormat]) -> LogKind {
    let mut votes: Vec<(LogKind, usize)> = Vec::new();
    for line in sample.iter().filter(|l| !l.trim_ascii().is_empty()) {
        if let Some(kind) = line_kind(line, formats) {
            match votes.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, n)) => *n += 1,
                None => votes.push((kind, 1)),
            }
        }
    }
    votes
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map_or(LogKind::Other, |(k, _)| k)
}

/// The time of a line of `kind`, when the line carries one.
pub fn line_time(kind: LogKind, line: &[u8], reference_year: i64) -> Option<i64> {
    match kind {
        LogKind::NginxError => time::nginx_error(line),
        LogKind::ApacheError => time::apache_error(bracketed(line.strip_prefix(b"[")?)),
        LogKind::PhpFpm => time::fpm(line.strip_prefix(b"[")?),
        LogKind::Gunicorn => time::iso8601(line.strip_prefix(b"[")?),
        LogKind::System => time::syslog(line, reference_year).or_else(|| time::iso8601(line)),
        LogKind::Uwsgi => uwsgi_time(line).or_else(|| other_time(line)),
        LogKind::Other => other_time(line),
        LogKind::Access(_) | LogKind::JsonAccess => None,
    }
}

/// uWSGI writes C's asctime: `Thu May  2 14:02:11 2024 - HARAKIRI …` at the start of its own
/// lines, and `… {34 vars in 421 bytes} [Thu May  2 14:02:11 2024] GET / => …` in request lines.
fn uwsgi_time(line: &[u8]) -> Option<i64> {
    const ASCTIME: usize = "Thu May  2 14:02:11 2024".len();
    if line.get(ASCTIME..ASCTIME + 3) == Some(b" - ") {
        return time::apache_error(&line[..ASCTIME]);
    }
    let at = memchr::memmem::find(line, b" bytes} [")? + " bytes} [".len();
    time::apache_error(line.get(at..at + ASCTIME)?)
}

/// PHP's error log inside other files, or a time anywhere at the start.
fn other_time(line: &[u8]) -> Option<i64> {
    time::nginx_error(line)
        .or_else(|| time::iso8601(line))
        .or_else(|| {
            line.strip_prefix(b"[")
                .and_then(|l| time::fpm(l).or_else(|| time::iso8601(l)))
        })
}

/// The upstream address a gateway error line names (nginx's context field).
pub fn upstream_of(kind: LogKind, line: &str) -> Option<String> {
    match kind {
        LogKind::NginxError => nginx_error::parse(line)?
            .upstream_address()
            .map(str::to_string),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uwsgi_lines_carry_asctime() {
        let own = b"Thu May  2 14:02:11 2024 - HARAKIRI: --- uWSGI worker 1 core 0 (pid: 1234) WAS managing request /api/report since Thu May  2 14:01:11 2024 ---";
        let request = b"[pid: 1234|app: 0|req: 1/1] 127.0.0.1 () {34 vars in 421 bytes} [Thu May  2 14:02:12 2024] GET / => generated 12 bytes in 0 msecs (HTTP/1.1 200) 2 headers in 79 bytes (1 switches on core 0)";
        let t = line_time(LogKind::Uwsgi, own, 2024).unwrap();
        assert_eq!(crate::collect::logs::time::format(t), "2024-05-02 14:02:11");
        assert_eq!(line_time(LogKind::Uwsgi, request, 2024), Some(t + 1));
        assert_eq!(
            line_time(
                LogKind::Uwsgi,
                b"*** Operational MODE: preforking ***",
                2024
            ),
            None
        );
    }

    #[test]
    fn each_format_is_recognised() {
        let formats = [LogFormat::combined()];
        let cases: [(&[u8], LogKind); 7] = [
            (b"2024/05/02 14:02:11 [error] 812#812: *1 connect() failed (111: Connection refused) while connecting to upstream", LogKind::NginxError),
            (br#"203.0.113.7 - - [02/May/2024:14:02:11 +0000] "GET / HTTP/1.1" 502 157 "-" "curl/8""#, LogKind::Access(0)),
            (b"[Thu May 02 14:02:11.123456 2024] [proxy:error] [pid 1:tid 2] AH00957: x", LogKind::ApacheError),
            (b"[02-May-2024 14:02:11] WARNING: [pool www] server reached pm.max_children setting (5), consider raising it", LogKind::PhpFpm),
            (b"[2024-05-02 14:02:11 +0000] [812] [CRITICAL] WORKER TIMEOUT (pid:815)", LogKind::Gunicorn),
            (br#"{"status":502,"request":"GET / HTTP/1.1"}"#, LogKind::JsonAccess),
            (b"[12345.678901] Out of memory: Killed process 1234 (php-fpm8.2)", LogKind::System),
        ];
        for (line, kind) in cases {
            assert_eq!(
                detect(&[line], &formats),
                kind,
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(detect(&[b"\x00\x01\x02 junk"], &formats), LogKind::Other);
    }
}
