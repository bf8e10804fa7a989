//! Space and inodes of the file systems that hold the paths a gateway writes to: its logs, its
//! temp paths (`proxy_temp_path`, `client_body_temp_path`, `fastcgi_temp_path` …, where nginx
//! buffers big bodies and responses) and its sockets. When one of them is full, nginx answers
//! 500/502 ("No space left on device (28)") even though nothing else is wrong; a full inode table
//! gives the same error with free bytes left.
//!
//! Numbers are those of `df`: `used% = used / (used + available to non-root)`, because nginx's
//! workers and the app servers write as an ordinary user and cannot use the blocks reserved for
//! root.

use super::processes::Discovery;
use super::sockets::{Listener, ListenerKind};
use super::{Gaps, HostRoot};
use serde::Serialize;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A path whose file system must have room, and why it matters.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WatchedPath {
    pub path: PathBuf,
    /// What is written there: `log`, `temp`, `socket`, `nginx prefix`, `given`.
    pub purpose: String,
    /// A usual location looked at in case it is used (`/var/log`, `/tmp`): skipped silently
    /// when it does not exist, where a given path is looked up at its nearest parent.
    #[serde(skip)]
    pub optional: bool,
}

impl WatchedPath {
    pub fn new(path: impl Into<PathBuf>, purpose: &str) -> WatchedPath {
        WatchedPath {
            path: path.into(),
            purpose: purpose.to_string(),
            optional: false,
        }
    }

    fn usual(path: &str, purpose: &str) -> WatchedPath {
        WatchedPath {
            optional: true,
            ..WatchedPath::new(path, purpose)
        }
    }
}

/// One file system and the watched paths on it.
#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    pub mount_point: String,
    pub fstype: Option<String>,
    /// The watched paths on this file system, with their purpose.
    pub paths: Vec<WatchedPath>,
    pub total_bytes: u64,
    /// Free space an ordinary user can use.
    pub available_bytes: u64,
    pub used_pct: f64,
    /// 0 on file systems without an inode table (btrfs reports 0, as does tmpfs with nr_inodes=0).
    pub inodes_total: u64,
    pub inodes_available: u64,
    pub inodes_used_pct: Option<f64>,
    /// How the numbers were read: `statvfs(/var/log)`.
    pub source: String,
}

/// The paths a running gateway implies: the directories of the unix sockets that are listened
/// on, the nginx prefixes, and the usual log and temp directories when they exist.
pub fn implied_paths(discovery: &Discovery, listeners: &[Listener]) -> Vec<WatchedPath> {
    let mut paths = Vec::new();
    for listener in listeners {
        if listener.kind == ListenerKind::Unix {
            if let Some(dir) = listener
                .addr
                .strip_prefix("unix:")
                .filter(|p| p.starts_with('/'))
                .and_then(|p| Path::new(p).parent())
            {
                paths.push(WatchedPath::new(dir, "socket"));
            }
        }
    }
    for master in &discovery.nginx {
        if let Some(prefix) = &master.prefix {
            paths.push(WatchedPath::new(prefix, "nginx prefix"));
        }
    }
    for (dir, purpose) in [
        ("/var/log", "log"),
        ("/var/lib/nginx", "temp"),
        ("/var/cache/nginx", "temp"),
        ("/tmp", "temp"),
    ] {
        paths.push(WatchedPath::usual(dir, purpose));
    }
    paths
}

/// `statvfs` of each path (resolved under the root), grouped by file system. A path that does
/// not exist is looked up at its nearest existing parent, where it would be created; the
/// implied defaults that do not exist at all are skipped silently, given paths are reported.
pub fn collect(root: &HostRoot, watched: &[WatchedPath], gaps: &mut Gaps) -> Vec<Disk> {
    let mounts = mount_table(root);
    let mut disks: Vec<(u64, Disk)> = Vec::new();
    let mut seen: Vec<&Path> = Vec::new();
    for w in watched {
        if seen.contains(&w.path.as_path()) {
            continue;
        }
        seen.push(&w.path);
        let full = root.path(&w.path.to_string_lossy());
        let Some(existing) = nearest_existing(&full) else {
            continue;
        };
        if existing != full && w.optional {
            continue;
        }
        let meta = match std::fs::metadata(&existing) {
            Ok(m) => m,
            Err(e) => {
                gaps.io(
                    format!("free space for {}", w.path.display()),
                    &existing,
                    &e,
                );
                continue;
            }
        };
        if let Some((_, disk)) = disks.iter_mut().find(|(dev, _)| *dev == meta.dev()) {
            disk.paths.push(w.clone());
            continue;
        }
        let stat = match statvfs(&existing) {
            Ok(s) => s,
            Err(e) => {
                gaps.io(
                    format!("free space for {}", w.path.display()),
                    &existing,
                    &e,
                );
                continue;
            }
        };
        let mount_point = mount_point_of(&existing, meta.dev());
        let shown = mount_point
            .strip_prefix(root.dir())
            .map(|p| Path::new("/").join(p))
            .unwrap_or_else(|_| mount_point.clone());
        let fstype = mounts
            .iter()
            .rev()
            .find(|(dir, _)| Path::new(dir) == shown)
            .map(|(_, t)| t.clone());
        let frsize = stat.f_frsize.max(1);
        let total = stat.f_blocks.saturating_mul(frsize);
        let avail = stat.f_bavail.saturating_mul(frsize);
        let used = stat
            .f_blocks
            .saturating_sub(stat.f_bfree)
            .saturating_mul(frsize);
        let used_pct = percent(used, used + avail);
        let inodes_used = stat.f_files.saturating_sub(stat.f_ffree);
        disks.push((
            meta.dev(),
            Disk {
                mount_point: shown.display().to_string(),
                fstype,
                paths: vec![w.clone()],
                total_bytes: total,
                available_bytes: avail,
                used_pct,
                inodes_total: stat.f_files,
                inodes_available: stat.f_favail,
                inodes_used_pct: (stat.f_files > 0)
                    .then(|| percent(inodes_used, inodes_used + stat.f_favail)),
                source: format!("statvfs({})", existing.display()),
            },
        ));
    }
    disks.into_iter().map(|(_, d)| d).collect()
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    (part as f64 * 1000.0 / whole as f64).ceil() / 10.0
}

fn nearest_existing(path: &Path) -> Option<PathBuf> {
    let mut p = path;
    loop {
        if p.exists() {
            return Some(p.to_path_buf());
        }
        p = p.parent()?;
    }
}

/// The highest ancestor on the same device: where the file system is mounted.
fn mount_point_of(path: &Path, dev: u64) -> PathBuf {
    let mut mount = path.to_path_buf();
    let mut p = path;
    while let Some(parent) = p.parent() {
        match std::fs::metadata(parent) {
            Ok(m) if m.dev() == dev => {
                mount = parent.to_path_buf();
                p = parent;
            }
            _ => break,
        }
    }
    mount
}

/// (mount point, file system type) of `/proc/self/mounts`, octal escapes (`\040`) decoded.
fn mount_table(root: &HostRoot) -> Vec<(String, String)> {
    let Ok(text) = root.read("/proc/self/mounts") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            let _device = fields.next()?;
            let dir = fields.next()?;
            let fstype = fields.next()?;
            Some((unescape_octal(dir), fstype.to_string()))
        })
        .collect()
}

fn unescape_octal(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(v) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
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

struct StatVfs {
    f_frsize: u64,
    f_blocks: u64,
    f_bfree: u64,
    f_bavail: u64,
    f_files: u64,
    f_ffree: u64,
    f_favail: u64,
}

fn statvfs(path: &Path) -> std::io::Result<StatVfs> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: statvfs(3) writes into the zeroed struct we own; the path is a valid C string.
    let mut buf: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(StatVfs {
        f_frsize: buf.f_frsize as u64,
        f_blocks: buf.f_blocks as u64,
        f_bfree: buf.f_bfree as u64,
        f_bavail: buf.f_bavail as u64,
        f_files: buf.f_files as u64,
        f_ffree: buf.f_ffree as u64,
        f_favail: buf.f_favail as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_with_spaces_are_decoded() {
        assert_eq!(unescape_octal("/mnt/my\\040disk"), "/mnt/my disk");
        assert_eq!(unescape_octal("/plain"), "/plain");
        assert_eq!(unescape_octal("/end\\"), "/end\\");
    }

    #[test]
    fn the_root_file_system_is_found_for_a_missing_path() {
        let disks = collect(
            &HostRoot::live(),
            &[WatchedPath::new("/definitely/not/here", "given")],
            &mut Gaps::default(),
        );
        assert_eq!(disks.len(), 1);
        assert_eq!(disks[0].mount_point, "/");
        assert!(disks[0].total_bytes > 0);
    }
}
