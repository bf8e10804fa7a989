//! The kernel's TCP counters (`/proc/net/netstat` and `/proc/net/snmp`, what `nstat` and
//! `netstat -s` print), sampled twice so that a counter that grows now is told apart from one
//! that grew last month:
//!
//! - `TcpExt.ListenOverflows`: a connection completed its handshake but the listener's accept
//!   queue was full, so it was dropped; `TcpExt.ListenDrops` counts those plus other drops at a
//!   listener (SYN queue full, no memory). Rising: some app does not accept fast enough.
//! - `Tcp.RetransSegs` against `Tcp.OutSegs`: the retransmitted share of what was sent; above a
//!   few percent the network (or a peer) loses packets.
//! - `Tcp.AttemptFails` (connects that failed: refused, reset in SYN-RECV) and `Tcp.EstabResets`.

use super::{GapKind, Gaps, HostRoot};
use serde::Serialize;
use std::collections::HashMap;
use std::time::Duration;

/// The raw values of one sample: `"TcpExt.ListenOverflows" → 12`.
#[derive(Debug, Clone, Default)]
pub struct RawCounters {
    values: HashMap<String, u64>,
    source: String,
}

impl RawCounters {
    pub fn get(&self, name: &str) -> Option<u64> {
        self.values.get(name).copied()
    }
}

/// One counter: its value since boot and how much it grew between the two samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Counter {
    pub total: u64,
    pub delta: u64,
}

/// The counters that matter for a gateway, over the sample interval.
#[derive(Debug, Clone, Serialize)]
pub struct NetCounters {
    pub listen_overflows: Option<Counter>,
    pub listen_drops: Option<Counter>,
    pub retrans_segs: Option<Counter>,
    pub out_segs: Option<Counter>,
    pub attempt_fails: Option<Counter>,
    pub estab_resets: Option<Counter>,
    /// Retransmitted segments as a share of sent segments during the interval, in percent.
    pub retransmit_pct: Option<f64>,
    pub interval_ms: u64,
    pub source: String,
}

/// Parses the header/value line pairs of `/proc/net/netstat` and `/proc/net/snmp`:
/// `TcpExt: SyncookiesSent ListenOverflows …` followed by `TcpExt: 0 12 …`.
pub fn parse_pairs(text: &str, into: &mut HashMap<String, u64>) {
    let mut lines = text.lines();
    while let (Some(header), Some(values)) = (lines.next(), lines.next()) {
        let (Some((section, names)), Some((section2, numbers))) =
            (header.split_once(':'), values.split_once(':'))
        else {
            continue;
        };
        if section != section2 {
            continue;
        }
        for (name, number) in names.split_whitespace().zip(numbers.split_whitespace()) {
            // Some Tcp fields (MaxConn) are -1; they are not counters.
            if let Ok(n) = number.parse::<u64>() {
                into.insert(format!("{section}.{name}"), n);
            }
        }
    }
}

/// Reads one sample of the counters; `None` (and a gap) when neither file is readable.
pub fn read_counters(root: &HostRoot, gaps: &mut Gaps) -> Option<RawCounters> {
    let mut values = HashMap::new();
    let mut sources = Vec::new();
    for file in ["/proc/net/netstat", "/proc/net/snmp"] {
        match root.read(file) {
            Ok(text) => {
                parse_pairs(&text, &mut values);
                sources.push(root.path(file).display().to_string());
            }
            Err(e) => gaps.io("TCP counters", &root.path(file), &e),
        }
    }
    if values.is_empty() {
        if !sources.is_empty() {
            gaps.add(
                "TCP counters",
                sources.join(", "),
                GapKind::Malformed,
                "no counters found",
            );
        }
        return None;
    }
    Some(RawCounters {
        values,
        source: sources.join(", "),
    })
}

impl NetCounters {
    pub fn between(first: &RawCounters, second: &RawCounters, interval: Duration) -> NetCounters {
        let counter = |name: &str| {
            let b = second.get(name)?;
            let a = first.get(name).unwrap_or(b);
            Some(Counter {
                total: b,
                delta: b.saturating_sub(a),
            })
        };
        let retrans = counter("Tcp.RetransSegs");
        let out = counter("Tcp.OutSegs");
        let retransmit_pct = match (retrans, out) {
            (Some(r), Some(o)) if o.delta > 0 => Some(super::pressure::round1(
                r.delta as f64 * 100.0 / o.delta as f64,
            )),
            _ => None,
        };
        NetCounters {
            listen_overflows: counter("TcpExt.ListenOverflows"),
            listen_drops: counter("TcpExt.ListenDrops"),
            retrans_segs: retrans,
            out_segs: out,
            attempt_fails: counter("Tcp.AttemptFails"),
            estab_resets: counter("Tcp.EstabResets"),
            retransmit_pct,
            interval_ms: interval.as_millis() as u64,
            source: second.source.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_value_lines_pair_up() {
        let mut values = HashMap::new();
        parse_pairs(
            "TcpExt: SyncookiesSent ListenOverflows ListenDrops\nTcpExt: 0 12 14\nIpExt: InNoRoutes\nIpExt: 3\n",
            &mut values,
        );
        parse_pairs(
            "Tcp: RtoAlgorithm MaxConn RetransSegs\nTcp: 1 -1 77\n",
            &mut values,
        );
        assert_eq!(values.get("TcpExt.ListenOverflows"), Some(&12));
        assert_eq!(values.get("TcpExt.ListenDrops"), Some(&14));
        assert_eq!(values.get("IpExt.InNoRoutes"), Some(&3));
        assert_eq!(values.get("Tcp.RetransSegs"), Some(&77));
        assert_eq!(values.get("Tcp.MaxConn"), None);
    }
}
