//! Who listens where, how full each accept queue is, and how many local ports are in use.
//!
//! Listening sockets come from `/proc/net/tcp`, `/proc/net/tcp6` and `/proc/net/unix`; their
//! owners from the socket inodes in `/proc/PID/fd` (see [`ProcessTable`]); their backlogs from
//! netlink socket diagnostics ([`super::sock_diag`], live machine only). Without netlink (a
//! captured tree) a TCP listener still has its queue length from `/proc/net/tcp`.
//!
//! Ephemeral ports: every outgoing connection (nginx → upstream) takes a local port from
//! `net.ipv4.ip_local_port_range`, and keeps it for 60 s in `TIME_WAIT` after closing. A port can
//! be reused towards a different destination, so the limit bites per destination: the count
//! that matters is the local ports in the range held towards the busiest destination.

use super::processes::ProcessTable;
use super::{GapKind, Gaps, HostRoot};
use procfs::net::{TcpNetEntries, TcpState};
use procfs::{ExplicitSystemInfo, FromBufReadSI};
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// A listening socket and its owner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Listener {
    pub kind: ListenerKind,
    /// `127.0.0.1:8000`, `[::]:80`, `unix:/run/php/php8.2-fpm.sock`, `unix:@abstract`.
    pub addr: String,
    pub port: Option<u16>,
    pub inode: u64,
    /// The owning process: of the processes holding the socket, the one whose parent does not
    /// (the master, not its workers).
    pub pid: Option<u32>,
    /// Every process holding the socket.
    pub pids: Vec<u32>,
    pub process_name: Option<String>,
    /// The most connections the kernel queues for `accept()` (the `listen()` backlog, capped by
    /// `net.core.somaxconn`); known on the live machine only.
    pub backlog: Option<u32>,
    /// Connections waiting for `accept()` now (Recv-Q of `ss -l`).
    pub queue: Option<u32>,
    /// The table the socket was found in.
    pub source: String,
}

impl Listener {
    /// True when the queue is longer than the backlog: the kernel is dropping (TCP) or refusing
    /// (unix, EAGAIN) new connections right now.
    pub fn overflowing(&self) -> bool {
        matches!((self.queue, self.backlog), (Some(q), Some(b)) if q > b)
    }

    /// True when the listening address accepts connections from other hosts.
    pub fn is_loopback_only(&self) -> bool {
        self.addr.starts_with("127.") || self.addr.starts_with("[::1]")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerKind {
    Tcp,
    Unix,
}

/// Connection counts and ephemeral port use.
#[derive(Debug, Clone, Serialize)]
pub struct Connections {
    pub established: u64,
    pub time_wait: u64,
    pub close_wait: u64,
    pub syn_sent: u64,
    pub syn_recv: u64,
    /// All TCP sockets but listeners.
    pub total: u64,
    /// `net.ipv4.ip_local_port_range`.
    pub port_range: Option<(u16, u16)>,
    /// Non-listening sockets whose local port is in the range (outgoing connections).
    pub ephemeral_in_use: u64,
    /// The destination holding the most local ports of the range, and how many.
    pub busiest_destination: Option<(String, u64)>,
    /// The sockets in `TIME_WAIT` towards that destination.
    pub busiest_time_wait: u64,
    pub source: String,
}

impl Connections {
    /// How many local ports the range offers.
    pub fn range_size(&self) -> Option<u64> {
        self.port_range
            .map(|(lo, hi)| u64::from(hi.saturating_sub(lo)) + 1)
    }
}

/// What the socket tables gave.
#[derive(Debug, Default)]
pub struct SocketFacts {
    pub listeners: Vec<Listener>,
    pub connections: Option<Connections>,
}

/// The kernel's unix-socket flag for a listening socket (`__SO_ACCEPTCON`).
const SO_ACCEPTCON: u32 = 1 << 16;

/// Reads the socket tables and ties them to their owners.
pub fn collect(root: &HostRoot, table: &ProcessTable, gaps: &mut Gaps) -> SocketFacts {
    let info = ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    };
    let mut tcp = Vec::new();
    let mut read_any = false;
    let mut sources = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Some(text) = root.read_or_gap(file, "TCP sockets", gaps) else {
            continue;
        };
        match TcpNetEntries::from_buf_read(text.as_bytes(), &info) {
            Ok(entries) => {
                read_any = true;
                sources.push(root.path(file).display().to_string());
                tcp.extend(entries.0);
            }
            Err(e) => gaps.add(
                "TCP sockets",
                root.path(file).display().to_string(),
                GapKind::Malformed,
                e.to_string(),
            ),
        }
    }
    let queues = if root.is_live() {
        match super::sock_diag::listen_queues() {
            Ok(q) => q,
            Err(e) => {
                gaps.add(
                    "listen backlogs (netlink socket diagnostics)",
                    "NETLINK_SOCK_DIAG",
                    GapKind::of(&e),
                    e.to_string(),
                );
                HashMap::new()
            }
        }
    } else {
        HashMap::new()
    };

    let mut listeners = Vec::new();
    let mut listening_ports = HashSet::new();
    for entry in tcp.iter().filter(|e| e.state == TcpState::Listen) {
        listening_ports.insert(entry.local_address.port());
        let q = queues.get(&entry.inode);
        listeners.push(owned(
            table,
            Listener {
                kind: ListenerKind::Tcp,
                addr: entry.local_address.to_string(),
                port: Some(entry.local_address.port()),
                inode: entry.inode,
                pid: None,
                pids: Vec::new(),
                process_name: None,
                backlog: q.map(|q| q.backlog),
                queue: Some(q.map(|q| q.queue).unwrap_or(entry.rx_queue)),
                source: if entry.local_address.is_ipv4() {
                    root.path("/proc/net/tcp").display().to_string()
                } else {
                    root.path("/proc/net/tcp6").display().to_string()
                },
            },
        ));
    }
    if let Some(text) = root.read_or_gap("/proc/net/unix", "unix sockets", gaps) {
        let source = root.path("/proc/net/unix").display().to_string();
        for (inode, path) in parse_unix_listeners(&text) {
            let q = queues.get(&inode);
            listeners.push(owned(
                table,
                Listener {
                    kind: ListenerKind::Unix,
                    addr: format!("unix:{path}"),
                    port: None,
                    inode,
                    pid: None,
                    pids: Vec::new(),
                    process_name: None,
                    backlog: q.map(|q| q.backlog),
                    queue: q.map(|q| q.queue),
                    source: source.clone(),
                },
            ));
        }
    }
    listeners.sort_by(|a, b| (a.kind as u8, a.port, &a.addr).cmp(&(b.kind as u8, b.port, &b.addr)));

    let connections = read_any.then(|| {
        let port_range = root
            .read("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|t| parse_port_range(&t));
        connections(&tcp, port_range, &listening_ports, sources.join(", "))
    });
    SocketFacts {
        listeners,
        connections,
    }
}

fn owned(table: &ProcessTable, mut listener: Listener) -> Listener {
    let pids = table.owners(listener.inode).to_vec();
    let main = pids
        .iter()
        .copied()
        .filter(|p| table.get(*p).is_none_or(|e| !pids.contains(&e.ppid)))
        .min()
        .or_else(|| pids.iter().copied().min());
    listener.process_name = main.and_then(|p| table.get(p)).map(|e| e.name.clone());
    listener.pid = main;
    listener.pids = pids;
    listener
}

/// `32768\t60999` → (32768, 60999).
pub fn parse_port_range(text: &str) -> Option<(u16, u16)> {
    let mut words = text.split_whitespace();
    let lo = words.next()?.parse().ok()?;
    let hi = words.next()?.parse().ok()?;
    (lo <= hi).then_some((lo, hi))
}

/// The listening stream sockets of `/proc/net/unix`: (inode, path). A path may contain spaces;
/// an abstract name starts with `@`; an unnamed listener is shown by its inode.
pub fn parse_unix_listeners(text: &str) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        // Num RefCount Protocol Flags Type St Inode [Path]
        let fields: Vec<&str> = line.split_whitespace().take(7).collect();
        let [_num, _refs, _proto, flags, kind, _state, inode] = fields[..] else {
            continue;
        };
        let (Ok(flags), Ok(inode)) = (u32::from_str_radix(flags, 16), inode.parse::<u64>()) else {
            continue;
        };
        // SOCK_STREAM (1) and SOCK_SEQPACKET (5) listen; datagram sockets do not.
        if flags & SO_ACCEPTCON == 0 || !matches!(kind, "0001" | "0005") {
            continue;
        }
        let path = after_fields(line, 7);
        out.push((
            inode,
            if path.is_empty() {
                format!("(unnamed, inode {inode})")
            } else {
                path.to_string()
            },
        ));
    }
    out
}

/// What follows the first `n` whitespace-separated fields of a line, trimmed.
fn after_fields(line: &str, n: usize) -> &str {
    let mut rest = line;
    for _ in 0..n {
        rest = rest.trim_start();
        match rest.find(char::is_whitespace) {
            Some(i) => rest = &rest[i..],
            None => return "",
        }
    }
    rest.trim()
}

fn connections(
    tcp: &[procfs::net::TcpNetEntry],
    port_range: Option<(u16, u16)>,
    listening_ports: &HashSet<u16>,
    source: String,
) -> Connections {
    let mut c = Connections {
        established: 0,
        time_wait: 0,
        close_wait: 0,
        syn_sent: 0,
        syn_recv: 0,
        total: 0,
        port_range,
        ephemeral_in_use: 0,
        busiest_destination: None,
        busiest_time_wait: 0,
        source,
    };
    let mut per_destination: HashMap<std::net::SocketAddr, (u64, u64)> = HashMap::new();
    for e in tcp {
        match e.state {
            TcpState::Listen => continue,
            TcpState::Established => c.established += 1,
            TcpState::TimeWait => c.time_wait += 1,
            TcpState::CloseWait => c.close_wait += 1,
            TcpState::SynSent => c.syn_sent += 1,
            TcpState::SynRecv => c.syn_recv += 1,
            _ => {}
        }
        c.total += 1;
        let local = e.local_address.port();
        // The server side of an accepted connection keeps its listening port: not ephemeral.
        if listening_ports.contains(&local) {
            continue;
        }
        if let Some((lo, hi)) = port_range {
            if (lo..=hi).contains(&local) {
                c.ephemeral_in_use += 1;
                let slot = per_destination.entry(e.remote_address).or_default();
                slot.0 += 1;
                if e.state == TcpState::TimeWait {
                    slot.1 += 1;
                }
            }
        }
    }
    if let Some((addr, (ports, tw))) = per_destination
        .into_iter()
        .max_by_key(|(a, (n, _))| (*n, *a))
    {
        c.busiest_destination = Some((addr.to_string(), ports));
        c.busiest_time_wait = tw;
    }
    c
}

/// The listening sockets of this machine, with their owners and queues.
pub fn listeners() -> Vec<Listener> {
    let root = HostRoot::live();
    let mut gaps = Gaps::default();
    let table = ProcessTable::scan(&root, &mut gaps);
    collect(&root, &table, &mut gaps).listeners
}

/// Who listens on TCP port `port` (every address: `0.0.0.0`, `127.0.0.1`, `[::]` …).
pub fn who_listens(port: u16) -> Vec<Listener> {
    listeners()
        .into_iter()
        .filter(|l| l.port == Some(port))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNIX: &str = "Num       RefCount Protocol Flags    Type St Inode Path
ffff8e5a0b3c4000: 00000002 00000000 00010000 0001 01 21345 /run/php/php8.2-fpm.sock
ffff8e5a0b3c4400: 00000002 00000000 00000000 0001 03 21346
ffff8e5a0b3c4800: 00000002 00000000 00010000 0001 01 21347 @/tmp/.X11-unix/X0
ffff8e5a0b3c4c00: 00000002 00000000 00000000 0002 01 21348 /run/systemd/notify
ffff8e5a0b3c5000: 00000002 00000000 00010000 0001 01 21349 /srv/my app/app.sock
";

    #[test]
    fn unix_listeners_are_stream_sockets_with_the_accept_flag() {
        let found = parse_unix_listeners(UNIX);
        assert_eq!(
            found,
            vec![
                (21345, "/run/php/php8.2-fpm.sock".to_string()),
                (21347, "@/tmp/.X11-unix/X0".to_string()),
                (21349, "/srv/my app/app.sock".to_string()),
            ]
        );
    }

    #[test]
    fn port_range() {
        assert_eq!(parse_port_range("32768\t60999\n"), Some((32768, 60999)));
        assert_eq!(parse_port_range("9 1"), None);
        assert_eq!(parse_port_range("junk"), None);
    }
}
