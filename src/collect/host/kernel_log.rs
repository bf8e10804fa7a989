//! The kernel's messages that explain a 502: OOM kills, segfaults, "nf_conntrack: table full",
//! "Possible SYN flooding", "VFS: file-max limit reached", SELinux and AppArmor denials.
//!
//! Read from `/dev/kmsg` without blocking (the ring buffer since boot, or as much of it as the
//! kernel still holds), else from `journalctl -k -b`; each line is classified by the signature
//! database (`catalog::signatures()`), which knows the kernel's wording, so this module keeps
//! no patterns of its own. Reading `/dev/kmsg` needs root (or `CAP_SYSLOG`) when
//! `kernel.dmesg_restrict` is 1, and `journalctl` needs the `adm` or `systemd-journal` group.

use super::{GapKind, Gaps, HostRoot};
use crate::catalog::signatures;
use crate::redact::redact;
use serde::Serialize;
use std::collections::VecDeque;
use std::io::Read;
use std::time::{Duration, Instant};

/// The most events kept (the most recent ones).
const MAX_EVENTS: usize = 200;
/// The most records read from `/dev/kmsg` (its ring buffer holds a few thousand).
const MAX_RECORDS: u64 = 500_000;
const MAX_BYTES: u64 = 64 << 20;
const DEADLINE: Duration = Duration::from_millis(400);
/// How much of a line an event keeps.
const MAX_LINE: usize = 500;

#[derive(Debug, Clone, Serialize)]
pub struct KernelLog {
    /// `/dev/kmsg` or `journalctl -k -b`.
    pub source: String,
    pub lines_read: u64,
    /// True when a bound (count, size, time) stopped the reading before the end.
    pub truncated: bool,
    /// The lines a signature recognised, oldest first.
    pub events: Vec<KernelEvent>,
}

/// One recognised kernel message.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct KernelEvent {
    /// Seconds after boot (the kernel's own timestamp).
    pub at_boot_secs: Option<f64>,
    /// How long ago, from `/proc/uptime`.
    pub ago_secs: Option<u64>,
    pub line: String,
    pub signature: String,
    pub causes: Vec<String>,
    /// The process the line names (the OOM victim, the crashed process).
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// Reads and classifies the kernel log; `None` (with gaps saying why) when no source worked.
pub fn collect(root: &HostRoot, gaps: &mut Gaps) -> Option<KernelLog> {
    let uptime = root.read("/proc/uptime").ok().and_then(|t| {
        t.split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
    });
    let kmsg = root.path("/dev/kmsg");
    match read_kmsg(&kmsg) {
        Ok((records, truncated)) => {
            let lines = records.iter().map(|(ts, msg)| (Some(*ts), msg.as_str()));
            return Some(classify(
                kmsg.display().to_string(),
                lines,
                records.len() as u64,
                truncated,
                uptime,
            ));
        }
        Err(e) => gaps.io("the kernel log", &kmsg, &e),
    }
    if !root.is_live() {
        return None;
    }
    let source = "journalctl -k -b";
    if !super::have_program("journalctl") {
        gaps.add(
            "the kernel log",
            source,
            GapKind::CommandFailed,
            "journalctl is not installed",
        );
        return None;
    }
    let args = [
        "-k",
        "-b",
        "-q",
        "--no-pager",
        "-o",
        "short-monotonic",
        "-n",
        "20000",
    ];
    match super::run_command(
        "journalctl",
        &args,
        Duration::from_millis(700),
        16 << 20,
        false,
    ) {
        Ok(text) if !text.trim().is_empty() => {
            let lines: Vec<(Option<f64>, &str)> = text.lines().map(split_monotonic).collect();
            let n = lines.len() as u64;
            Some(classify(
                source.to_string(),
                lines.into_iter(),
                n,
                false,
                uptime,
            ))
        }
        Ok(_) => {
            gaps.add(
                "the kernel log",
                source,
                GapKind::PermissionDenied,
                "journalctl printed nothing (no journal, or not in the adm / systemd-journal group)",
            );
            None
        }
        Err(e) => {
            gaps.add("the kernel log", source, e.kind, e.message);
            None
        }
    }
}

fn classify<'a>(
    source: String,
    lines: impl Iterator<Item = (Option<f64>, &'a str)>,
    lines_read: u64,
    truncated: bool,
    uptime: Option<f64>,
) -> KernelLog {
    let db = signatures();
    let mut events = VecDeque::new();
    for (ts, message) in lines {
        let Some(m) = db.match_line(message) else {
            continue;
        };
        if m.causes.is_empty() {
            continue;
        }
        if events.len() == MAX_EVENTS {
            events.pop_front();
        }
        let process = m
            .field("value")
            .or_else(|| m.field("task"))
            .map(str::to_string);
        events.push_back(KernelEvent {
            at_boot_secs: ts,
            ago_secs: match (ts, uptime) {
                (Some(ts), Some(up)) if up >= ts => Some((up - ts) as u64),
                _ => None,
            },
            line: redact(message).chars().take(MAX_LINE).collect(),
            signature: m.signature.id.clone(),
            causes: m.causes.clone(),
            pid: m.field("pid").and_then(|p| p.parse().ok()),
            process: process.filter(|_| m.field("pid").is_some()),
        });
    }
    KernelLog {
        source,
        lines_read,
        truncated,
        events: events.into(),
    }
}

/// `[ 1234.567890] vm kernel: text` → (1234.56789, "vm kernel: text").
fn split_monotonic(line: &str) -> (Option<f64>, &str) {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((ts, text)) = rest.split_once(']') {
            return (ts.trim().parse().ok(), text.trim_start());
        }
    }
    (None, line)
}

/// Reads every record of a `/dev/kmsg`-format source without blocking: `PRI,SEQ,USEC,FLAGS;text`
/// one per line, continuation lines (starting with a space) skipped. The device returns one
/// record per `read` and EAGAIN at the end; a captured copy is a plain file of such lines.
pub fn read_kmsg(path: &std::path::Path) -> std::io::Result<(Vec<(f64, String)>, bool)> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let started = Instant::now();
    let mut records = Vec::new();
    let mut pending: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 16 << 10];
    let mut total = 0u64;
    let mut truncated = false;
    loop {
        if records.len() as u64 >= MAX_RECORDS || total >= MAX_BYTES || started.elapsed() > DEADLINE
        {
            truncated = true;
            break;
        }
        let n = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            // EPIPE: the ring buffer overwrote records we had not read yet; go on from the next.
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                if records.is_empty() {
                    return Err(e);
                }
                break;
            }
        };
        total += n as u64;
        pending.extend_from_slice(&buffer[..n]);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            if let Some(record) = parse_record(&String::from_utf8_lossy(&line[..line.len() - 1])) {
                records.push(record);
            }
        }
    }
    Ok((records, truncated))
}

/// One `/dev/kmsg` record: `6,1234,5678901,-;text` → (5.678901 s, "text").
fn parse_record(line: &str) -> Option<(f64, String)> {
    if line.starts_with(' ') {
        return None;
    }
    let (prefix, text) = line.split_once(';')?;
    let usec: u64 = prefix.split(',').nth(2)?.parse().ok()?;
    Some((usec as f64 / 1e6, unescape(text)))
}

/// `/dev/kmsg` escapes non-printable bytes as `\xNN`.
fn unescape(text: &str) -> String {
    if !text.contains("\\x") {
        return text.to_string();
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() && bytes[i + 1] == b'x' {
            if let Some(v) = std::str::from_utf8(&bytes[i + 2..i + 4])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_their_timestamps() {
        assert_eq!(
            parse_record("6,1234,5678901,-;Out of memory: Killed process 1 (x)"),
            Some((5.678901, "Out of memory: Killed process 1 (x)".to_string()))
        );
        assert_eq!(parse_record(" SUBSYSTEM=pci"), None);
        assert_eq!(parse_record("garbage"), None);
        assert_eq!(unescape("a\\x0ab"), "a\nb");
    }

    #[test]
    fn an_oom_kill_is_an_event_with_its_victim() {
        let line = "Out of memory: Killed process 4321 (gunicorn) total-vm:812344kB, anon-rss:512000kB, file-rss:0kB, shmem-rss:0kB, UID:33 pgtables:1200kB oom_score_adj:0";
        let log = classify(
            "test".into(),
            [(Some(100.0), line), (Some(101.0), "eth0: link up")].into_iter(),
            2,
            false,
            Some(160.0),
        );
        assert_eq!(log.events.len(), 1);
        let e = &log.events[0];
        assert!(e.causes.contains(&"oom-killed".to_string()));
        assert_eq!(e.pid, Some(4321));
        assert_eq!(e.process.as_deref(), Some("gunicorn"));
        assert_eq!(e.ago_secs, Some(60));
    }

    #[test]
    fn journal_lines_give_their_monotonic_time() {
        assert_eq!(
            split_monotonic("[  12.500000] vm kernel: x"),
            (Some(12.5), "vm kernel: x")
        );
        assert_eq!(split_monotonic("no stamp"), (None, "no stamp"));
    }
}
