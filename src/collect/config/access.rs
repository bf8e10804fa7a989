//! How long the upstreams took, read from an access log in the format the configuration gives
//! it (`log_format`), so the rules can compare the timeouts with what the upstreams need.
//!
//! A `log_format` is compiled into a regular expression (each `$variable` a group), so any
//! format that logs `$upstream_addr` and `$upstream_response_time` works; `combined` has
//! neither, and then there is nothing to measure (the check says so).

use regex::Regex;
use serde::Serialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// At most this many bytes of one access log are read.
pub const MAX_LOG_BYTES: u64 = 512 * 1024 * 1024;
/// Lines longer than this are skipped.
const MAX_LINE: usize = 64 * 1024;

/// nginx's built-in `combined` format.
pub const COMBINED: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent""#;

/// Response times of one upstream address.
#[derive(Debug, Clone, Serialize)]
pub struct UpstreamTimes {
    pub address: String,
    pub requests: u64,
    pub max_ms: u64,
    pub p99_ms: u64,
    /// Requests answered 504 (the gateway gave up) and 502.
    pub gateway_timeouts: u64,
    pub bad_gateways: u64,
    /// The line of the slowest request.
    pub slowest_line: u64,
}

/// What one access log shows.
#[derive(Debug, Clone, Serialize)]
pub struct AccessStats {
    pub path: PathBuf,
    pub format: String,
    pub lines: u64,
    pub matched: u64,
    /// Whether the format logs `$upstream_response_time` at all.
    pub has_upstream_times: bool,
    pub upstreams: Vec<UpstreamTimes>,
}

/// Compiles a `log_format` into a regex whose named groups are its variables.
pub fn compile(format: &str) -> Option<Regex> {
    let mut pattern = String::from("^");
    let mut seen = std::collections::HashSet::new();
    let bytes = format.as_bytes();
    let mut i = 0;
    let mut literal = String::new();
    while i < bytes.len() {
        if bytes[i] == b'$' {
            let (name, len) = if bytes.get(i + 1) == Some(&b'{') {
                let end = format[i + 2..].find('}')?;
                (&format[i + 2..i + 2 + end], end + 3)
            } else {
                let end = format[i + 1..]
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(format.len() - i - 1);
                (&format[i + 1..i + 1 + end], end + 1)
            };
            if !name.is_empty() {
                pattern.push_str(&regex::escape(&literal));
                literal.clear();
                if seen.insert(name.to_string()) {
                    pattern.push_str(&format!("(?P<{name}>.*?)"));
                } else {
                    pattern.push_str(".*?");
                }
                i += len;
                continue;
            }
        }
        let c = format[i..].chars().next()?;
        literal.push(c);
        i += c.len_utf8();
    }
    pattern.push_str(&regex::escape(&literal));
    pattern.push('$');
    Regex::new(&pattern).ok()
}

/// Seconds as nginx logs them (`0.512`), in milliseconds; `-` is none.
fn seconds_ms(s: &str) -> Option<u64> {
    let v: f64 = s.trim().parse().ok()?;
    (v >= 0.0).then(|| (v * 1000.0).round() as u64)
}

/// Reads an access log written in `format`.
pub fn analyze(path: &Path, format: &str) -> std::io::Result<AccessStats> {
    let regex = compile(format).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "log_format cannot be compiled",
        )
    })?;
    let has_upstream_times =
        format.contains("$upstream_response_time") && format.contains("$upstream_addr");
    let file = std::fs::File::open(path)?;
    let mut reader = BufReader::new(file.take(MAX_LOG_BYTES));
    let mut stats = AccessStats {
        path: path.to_path_buf(),
        format: format.to_string(),
        lines: 0,
        matched: 0,
        has_upstream_times,
        upstreams: Vec::new(),
    };
    let mut times: HashMap<String, (Vec<u64>, u64, u64, u64, u64)> = HashMap::new();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        stats.lines += 1;
        if buf.len() > MAX_LINE {
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        let Some(caps) = regex.captures(line.trim_end_matches(['\n', '\r'])) else {
            continue;
        };
        stats.matched += 1;
        if !has_upstream_times {
            continue;
        }
        let status = caps.name("status").map(|m| m.as_str()).unwrap_or("");
        let addrs = caps.name("upstream_addr").map(|m| m.as_str()).unwrap_or("");
        let rts = caps
            .name("upstream_response_time")
            .map(|m| m.as_str())
            .unwrap_or("");
        // `a, b : c`: tries separated by commas, internal redirects by colons.
        let split = |s: &str| -> Vec<String> {
            s.split([',', ':']).map(|p| p.trim().to_string()).collect()
        };
        let (addr_parts, time_parts) = (split_addrs(addrs), split(rts));
        for (addr, t) in addr_parts.iter().zip(time_parts.iter()) {
            let Some(ms) = seconds_ms(t) else { continue };
            let e = times
                .entry(addr.clone())
                .or_insert_with(|| (Vec::new(), 0, 0, 0, 0));
            e.0.push(ms);
            if ms > e.1 || e.0.len() == 1 {
                e.1 = ms;
                e.4 = stats.lines;
            }
            if status == "504" {
                e.2 += 1;
            }
            if status == "502" {
                e.3 += 1;
            }
        }
    }
    let mut upstreams: Vec<UpstreamTimes> = times
        .into_iter()
        .map(|(address, (mut all, max, t504, t502, line))| {
            all.sort_unstable();
            let p99 = all[((all.len() as f64 * 0.99).ceil() as usize).clamp(1, all.len()) - 1];
            UpstreamTimes {
                address,
                requests: all.len() as u64,
                max_ms: max,
                p99_ms: p99,
                gateway_timeouts: t504,
                bad_gateways: t502,
                slowest_line: line,
            }
        })
        .collect();
    upstreams.sort_by(|a, b| a.address.cmp(&b.address));
    stats.upstreams = upstreams;
    Ok(stats)
}

/// `$upstream_addr` parts: addresses may hold colons (`127.0.0.1:8000`, `unix:/s`), so split
/// on `, ` and ` : ` only.
fn split_addrs(s: &str) -> Vec<String> {
    s.split(", ")
        .flat_map(|p| p.split(" : "))
        .map(|p| p.trim().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compiles_formats() {
        let r = compile(r#"$remote_addr [$time_local] "$request" $status ua="$upstream_addr" urt="$upstream_response_time""#).unwrap();
        let c = r
            .captures(r#"1.2.3.4 [x] "GET / HTTP/1.1" 504 ua="127.0.0.1:8000" urt="5.001""#)
            .unwrap();
        assert_eq!(&c["status"], "504");
        assert_eq!(&c["upstream_addr"], "127.0.0.1:8000");
        assert!(compile(COMBINED).is_some());
    }

    #[test]
    fn measures_upstream_times() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("a.log");
        std::fs::write(&log, "504 a=127.0.0.1:8000 t=5.000\n200 a=127.0.0.1:8000 t=0.100\n502 a=127.0.0.1:8000, 127.0.0.1:8001 t=0.001, 0.020\n").unwrap();
        let s = analyze(&log, "$status a=$upstream_addr t=$upstream_response_time").unwrap();
        assert_eq!(s.matched, 3);
        let a = &s.upstreams[0];
        assert_eq!(
            (a.address.as_str(), a.requests, a.max_ms, a.gateway_timeouts),
            ("127.0.0.1:8000", 3, 5000, 1)
        );
        assert_eq!(s.upstreams[1].max_ms, 20);
    }
}
