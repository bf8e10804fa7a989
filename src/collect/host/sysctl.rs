//! The kernel settings that cap a gateway: `net.core.somaxconn` (the largest accept backlog any
//! `listen()` gets, whatever the application asks for), `net.ipv4.tcp_max_syn_backlog`, the
//! connection-tracking table (`nf_conntrack_count` against `nf_conntrack_max`: when full, the
//! kernel drops the first packet of every new connection), the system-wide file table
//! (`fs.file-nr` against `fs.file-max`) and the ephemeral port range.
//!
//! A setting that does not exist here is `None` (conntrack only exists when the netfilter
//! module is loaded, which is normal on a host without NAT or a stateful firewall).

use super::{Gaps, HostRoot};
use serde::Serialize;

/// A kernel setting with the file it came from.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    /// The sysctl name: `net.core.somaxconn`.
    pub name: String,
    pub value: u64,
    pub source: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sysctls {
    pub somaxconn: Option<Setting>,
    pub tcp_max_syn_backlog: Option<Setting>,
    pub conntrack_count: Option<Setting>,
    pub conntrack_max: Option<Setting>,
    /// Allocated file handles, system-wide (first field of `fs.file-nr`).
    pub file_nr: Option<Setting>,
    pub file_max: Option<Setting>,
    pub tcp_max_tw_buckets: Option<Setting>,
    pub tcp_tw_reuse: Option<Setting>,
    /// `ip_local_port_range`, low and high.
    pub port_range_low: Option<Setting>,
    pub port_range_high: Option<Setting>,
}

fn setting(root: &HostRoot, name: &str, gaps: &mut Gaps, required: bool) -> Option<Setting> {
    let path = format!("/proc/sys/{}", name.replace('.', "/"));
    match root.read_u64(&path) {
        Ok(value) => Some(Setting {
            name: name.to_string(),
            value,
            source: root.path(&path).display().to_string(),
        }),
        Err(e) => {
            if required || e.kind() != std::io::ErrorKind::NotFound {
                gaps.io(name, &root.path(&path), &e);
            }
            None
        }
    }
}

/// Reads the settings; a missing conntrack table is normal and not reported as a gap.
pub fn read(root: &HostRoot, gaps: &mut Gaps) -> Sysctls {
    let mut s = Sysctls {
        somaxconn: setting(root, "net.core.somaxconn", gaps, true),
        tcp_max_syn_backlog: setting(root, "net.ipv4.tcp_max_syn_backlog", gaps, true),
        conntrack_count: setting(root, "net.netfilter.nf_conntrack_count", gaps, false),
        conntrack_max: setting(root, "net.netfilter.nf_conntrack_max", gaps, false),
        file_nr: setting(root, "fs.file-nr", gaps, true),
        file_max: setting(root, "fs.file-max", gaps, true),
        tcp_max_tw_buckets: setting(root, "net.ipv4.tcp_max_tw_buckets", gaps, false),
        tcp_tw_reuse: setting(root, "net.ipv4.tcp_tw_reuse", gaps, false),
        port_range_low: None,
        port_range_high: None,
    };
    let path = "/proc/sys/net/ipv4/ip_local_port_range";
    if let Some(text) = root.read_or_gap(path, "net.ipv4.ip_local_port_range", gaps) {
        if let Some((lo, hi)) = super::sockets::parse_port_range(&text) {
            let source = root.path(path).display().to_string();
            let make = |value: u16| Setting {
                name: "net.ipv4.ip_local_port_range".to_string(),
                value: u64::from(value),
                source: source.clone(),
            };
            s.port_range_low = Some(make(lo));
            s.port_range_high = Some(make(hi));
        }
    }
    s
}
