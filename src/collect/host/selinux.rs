//! SELinux, where it exists: its mode and the booleans that decide whether a web server may
//! open network connections. On Red Hat family systems the httpd policy (which confines nginx
//! too) forbids connecting to any port not labelled `http_port_t` unless
//! `httpd_can_network_connect` is on, and nginx logs "(13: Permission denied) while connecting
//! to upstream": a 502 that file permissions do not explain.
//!
//! Read from selinuxfs (`/sys/fs/selinux/enforce`, `/sys/fs/selinux/booleans/NAME`, which hold
//! "current pending"), what `getenforce` and `getsebool` read too.

use super::HostRoot;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selinux {
    /// `enforcing` or `permissive`.
    pub mode: String,
    pub httpd_can_network_connect: Option<bool>,
    /// Lets httpd connect to the ports of databases and caches (`http_port_t` is not needed).
    pub httpd_can_network_connect_db: Option<bool>,
    pub source: String,
}

/// `None` when SELinux is not enabled here (no selinuxfs).
pub fn collect(root: &HostRoot) -> Option<Selinux> {
    let enforce_path = root.path("/sys/fs/selinux/enforce");
    let enforce = root.read("/sys/fs/selinux/enforce").ok()?;
    let mode = match enforce.trim() {
        "1" => "enforcing",
        _ => "permissive",
    };
    let boolean = |name: &str| {
        root.read(&format!("/sys/fs/selinux/booleans/{name}"))
            .ok()
            .and_then(|t| t.split_whitespace().next().map(|v| v == "1"))
    };
    Some(Selinux {
        mode: mode.to_string(),
        httpd_can_network_connect: boolean("httpd_can_network_connect"),
        httpd_can_network_connect_db: boolean("httpd_can_network_connect_db"),
        source: enforce_path
            .parent()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
    })
}
