//! Process discovery, shared with `config` and `diagnose`: which nginx runs and with which
//! configuration, which PHP-FPM masters and pools, which app servers (gunicorn, uWSGI, node,
//! python, java, php …) listen where, and how close each is to its limits (open descriptors
//! against `RLIMIT_NOFILE`, threads, resident memory).
//!
//! Everything comes from `/proc/PID`: `cmdline` (nginx and PHP-FPM write their role and the
//! configuration path into their process title: `nginx: master process /usr/sbin/nginx -c
//! /etc/nginx/nginx.conf`, `php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`), `status`,
//! `stat`, `limits`, `cgroup` (the systemd unit) and `fd/` (descriptor count, and the socket
//! inodes that tie listening sockets to their owners). An unprivileged user can read all of it
//! except other users' `fd/`; that gap is reported once, with the processes it hides.
//!
//! The functions [`find_nginx_masters`], [`find_fpm_masters`] and [`find_app_servers`] work on
//! their own, on this machine; [`ProcessTable::scan`] + [`discover`] is what `collect` uses.

use super::sockets::Listener;
use super::{GapKind, Gaps, HostRoot};
use crate::redact::redact;
use procfs::process::Process;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The most descriptors whose targets are read per process; the count goes on beyond it.
const MAX_FD_LINKS: usize = 262_144;
/// The most processes looked at.
const MAX_PROCESSES: usize = 100_000;
/// A process outside the request path is listed when it uses this share of its fd limit.
const FD_LIST_SHARE: f64 = 0.8;

/// What a process is on the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    NginxMaster,
    NginxWorker,
    /// nginx's cache manager and cache loader: they hold no client connections.
    NginxHelper,
    FpmMaster,
    FpmWorker,
    /// The process that owns an app server's listening socket and has no owner of it above.
    AppServer,
    /// A process sharing an app server's listening socket under it (gunicorn, uWSGI workers).
    AppWorker,
    Other,
}

/// One process as the report shows it.
#[derive(Debug, Clone, Serialize)]
pub struct ProcessInfo {
    pub pid: u32,
    pub ppid: u32,
    /// The kernel's short name (`comm`).
    pub name: String,
    pub role: Role,
    /// For app servers: gunicorn, uwsgi, uvicorn, node, python, java, php, ruby, dotnet.
    pub kind: Option<String>,
    /// The command line, secrets redacted, at most 300 characters.
    pub cmdline: String,
    pub uid: Option<u32>,
    pub threads: u64,
    pub rss_bytes: Option<u64>,
    /// Unix seconds.
    pub started_at: Option<u64>,
    /// The systemd unit (from `/proc/PID/cgroup`).
    pub unit: Option<String>,
    /// Open descriptors; `None` when `/proc/PID/fd` could not be read.
    pub fds: Option<u64>,
    /// How many of them are sockets.
    pub sockets: Option<u64>,
    /// `RLIMIT_NOFILE`, soft (the one that fails `open`/`accept` with EMFILE) and hard.
    pub fd_soft_limit: Option<u64>,
    pub fd_hard_limit: Option<u64>,
    /// `/proc/PID`.
    pub source: String,
}

impl ProcessInfo {
    /// Open descriptors as a share of the soft limit (0..1).
    pub fn fd_share(&self) -> Option<f64> {
        match (self.fds, self.fd_soft_limit) {
            (Some(used), Some(limit)) if limit > 0 => Some(used as f64 / limit as f64),
            _ => None,
        }
    }
}

/// A running nginx master and how it was started.
#[derive(Debug, Clone, Serialize)]
pub struct NginxMaster {
    pub pid: u32,
    /// The main configuration file: from `-c` on the command line, else the binary's compiled-in
    /// default (`nginx -V`, `--conf-path`).
    pub conf_path: Option<PathBuf>,
    /// Where `conf_path` came from.
    pub conf_source: String,
    /// `-p`, else the compiled-in `--prefix`.
    pub prefix: Option<PathBuf>,
    /// The binary, as on the command line.
    pub binary: Option<String>,
    /// Unix seconds.
    pub started_at: Option<u64>,
    /// When the main configuration file was last changed (Unix seconds): newer than the master's
    /// start means a change that a reload may not have applied.
    pub conf_modified_at: Option<u64>,
    pub workers: Vec<u32>,
    /// `worker_connections` (per worker, counting client and upstream connections).
    pub worker_connections: Option<u64>,
    /// Where `worker_connections` came from (`/etc/nginx/nginx.conf:12`, "nginx's default").
    pub worker_connections_source: Option<String>,
    /// The addresses its sockets listen on.
    pub listens: Vec<String>,
}

/// A running PHP-FPM master.
#[derive(Debug, Clone, Serialize)]
pub struct FpmMaster {
    pub pid: u32,
    /// The name of the binary (`php-fpm8.2`).
    pub name: String,
    /// From the process title `php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`.
    pub conf_path: Option<PathBuf>,
    pub started_at: Option<u64>,
    pub workers: Vec<u32>,
    /// Pool names, from the workers' titles (`php-fpm: pool www`).
    pub pools: Vec<String>,
    pub listens: Vec<String>,
}

/// An application server found by its listening sockets.
#[derive(Debug, Clone, Serialize)]
pub struct AppServer {
    pub pid: u32,
    /// gunicorn, uwsgi, uvicorn, node, python, java, php, ruby, dotnet.
    pub kind: String,
    pub name: String,
    pub cmdline: String,
    pub listens: Vec<String>,
    pub workers: Vec<u32>,
    pub unit: Option<String>,
}

/// One process as read from `/proc`, before any judgement.
#[derive(Debug, Clone)]
pub struct ProcEntry {
    pub pid: u32,
    pub ppid: u32,
    pub name: String,
    pub cmdline: Vec<String>,
    pub uid: Option<u32>,
    pub threads: u64,
    pub rss_bytes: Option<u64>,
    pub started_at: Option<u64>,
    pub unit: Option<String>,
    pub fds: Option<u64>,
    pub socket_inodes: Vec<u64>,
    pub fd_soft_limit: Option<u64>,
    pub fd_hard_limit: Option<u64>,
    pub source: String,
}

impl ProcEntry {
    /// The process title as one string (nginx and PHP-FPM rewrite theirs).
    pub fn title(&self) -> String {
        self.cmdline.join(" ")
    }
}

/// Every process of the machine, with the owners of each socket inode.
#[derive(Debug, Default)]
pub struct ProcessTable {
    pub entries: Vec<ProcEntry>,
    by_pid: HashMap<u32, usize>,
    inode_owners: HashMap<u64, Vec<u32>>,
}

impl ProcessTable {
    /// Reads every process under `ROOT/proc`, with their descriptor tables (`read_fds`).
    pub fn scan(root: &HostRoot, gaps: &mut Gaps) -> ProcessTable {
        ProcessTable::scan_with(root, true, gaps)
    }

    pub fn scan_with(root: &HostRoot, read_fds: bool, gaps: &mut Gaps) -> ProcessTable {
        let proc_dir = root.path("/proc");
        let boot_time = root.read("/proc/stat").ok().and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("btime ").and_then(|v| v.trim().parse().ok()))
        });
        // SAFETY: sysconf(3) with a valid name has no preconditions.
        let ticks = match unsafe { libc::sysconf(libc::_SC_CLK_TCK) } {
            t if t > 0 => t as u64,
            _ => 100,
        };
        let mut table = ProcessTable::default();
        let iter = match procfs::process::all_processes_with_root(&proc_dir) {
            Ok(iter) => iter,
            Err(e) => {
                gaps.add(
                    "the process list",
                    proc_dir.display().to_string(),
                    GapKind::Missing,
                    e.to_string(),
                );
                return table;
            }
        };
        let mut fd_denied: Vec<(u32, String)> = Vec::new();
        for process in iter.take(MAX_PROCESSES) {
            let Ok(process) = process else { continue };
            let Some(entry) =
                read_entry(root, &process, boot_time, ticks, read_fds, &mut fd_denied)
            else {
                continue;
            };
            for &inode in &entry.socket_inodes {
                table.inode_owners.entry(inode).or_default().push(entry.pid);
            }
            table.by_pid.insert(entry.pid, table.entries.len());
            table.entries.push(entry);
        }
        if !fd_denied.is_empty() {
            let mut names: Vec<String> = fd_denied
                .iter()
                .take(8)
                .map(|(pid, name)| format!("{name} {pid}"))
                .collect();
            if fd_denied.len() > names.len() {
                names.push(format!("… {} more", fd_denied.len() - names.len()));
            }
            gaps.add(
                format!(
                    "open descriptors or socket owners of {} processes ({})",
                    fd_denied.len(),
                    names.join(", ")
                ),
                proc_dir.join("PID/fd").display().to_string(),
                GapKind::PermissionDenied,
                std::io::Error::from_raw_os_error(libc::EACCES).to_string(),
            );
        }
        if let Ok(mounts) = root.read("/proc/self/mounts") {
            let hidden = mounts.lines().any(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                f.len() > 3
                    && f[2] == "proc"
                    && f[3].contains("hidepid=")
                    && !f[3].contains("hidepid=0")
            });
            // SAFETY: geteuid(2) cannot fail.
            if hidden && unsafe { libc::geteuid() } != 0 {
                gaps.add(
                    "other users' processes (/proc is mounted with hidepid)",
                    proc_dir.display().to_string(),
                    GapKind::PermissionDenied,
                    "hidepid hides processes of other users",
                );
            }
        }
        table
    }

    pub fn get(&self, pid: u32) -> Option<&ProcEntry> {
        self.by_pid.get(&pid).map(|&i| &self.entries[i])
    }

    /// The processes holding a socket inode (several when a master shares it with workers).
    pub fn owners(&self, inode: u64) -> &[u32] {
        self.inode_owners
            .get(&inode)
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The children of a process.
    pub fn children(&self, pid: u32) -> impl Iterator<Item = &ProcEntry> {
        self.entries.iter().filter(move |e| e.ppid == pid)
    }
}

fn read_entry(
    root: &HostRoot,
    process: &Process,
    boot_time: Option<u64>,
    ticks: u64,
    read_fds: bool,
    fd_denied: &mut Vec<(u32, String)>,
) -> Option<ProcEntry> {
    let pid = u32::try_from(process.pid).ok()?;
    let stat = process.stat().ok()?;
    // Kernel threads (children of kthreadd, pid 2) have no files, limits or command line.
    if pid == 2 || stat.ppid == 2 {
        return None;
    }
    let status = process.status().ok();
    let cmdline = process.cmdline().unwrap_or_default();
    let dir = root.path(&format!("/proc/{pid}"));
    let (fd_soft_limit, fd_hard_limit) = root
        .read(&format!("/proc/{pid}/limits"))
        .map(|t| parse_nofile(&t))
        .unwrap_or((None, None));
    let mut entry = ProcEntry {
        pid,
        ppid: u32::try_from(stat.ppid).unwrap_or(0),
        name: status
            .as_ref()
            .map(|s| s.name.clone())
            .unwrap_or(stat.comm.clone()),
        cmdline,
        uid: status.as_ref().map(|s| s.ruid),
        threads: status
            .as_ref()
            .map(|s| s.threads)
            .unwrap_or(stat.num_threads.max(0) as u64),
        rss_bytes: status.as_ref().and_then(|s| s.vmrss).map(|kb| kb * 1024),
        started_at: boot_time.map(|b| b + stat.starttime / ticks),
        unit: root
            .read(&format!("/proc/{pid}/cgroup"))
            .ok()
            .and_then(|t| unit_of_cgroup(&t)),
        fds: None,
        socket_inodes: Vec::new(),
        fd_soft_limit,
        fd_hard_limit,
        source: dir.display().to_string(),
    };
    if read_fds {
        match read_fd_table(&dir.join("fd")) {
            Ok(fd_table) => {
                entry.fds = Some(fd_table.count);
                entry.socket_inodes = fd_table.socket_inodes;
                if fd_table.links_denied {
                    fd_denied.push((pid, entry.name.clone()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                fd_denied.push((pid, entry.name.clone()));
            }
            Err(_) => {}
        }
    }
    Some(entry)
}

/// `RLIMIT_NOFILE` from `/proc/PID/limits`: the `Max open files` line, soft then hard
/// (`unlimited` → `None`). Parsed here rather than by procfs, whose parser of this file panics
/// on a malformed one.
pub fn parse_nofile(text: &str) -> (Option<u64>, Option<u64>) {
    let Some(rest) = text.lines().find_map(|l| l.strip_prefix("Max open files")) else {
        return (None, None);
    };
    let mut values = rest.split_whitespace().map(|v| v.parse::<u64>().ok());
    (values.next().flatten(), values.next().flatten())
}

/// What a `/proc/PID/fd` directory holds.
struct FdTable {
    count: u64,
    /// Inodes of the sockets (links read `socket:[12345]`).
    socket_inodes: Vec<u64>,
    /// The directory could be listed but its links not read (a process that forbids ptrace
    /// access even to root): the count is right, its sockets are unknown.
    links_denied: bool,
}

fn read_fd_table(dir: &Path) -> std::io::Result<FdTable> {
    let mut table = FdTable {
        count: 0,
        socket_inodes: Vec::new(),
        links_denied: false,
    };
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        table.count += 1;
        if table.count as usize > MAX_FD_LINKS || table.links_denied {
            continue;
        }
        match std::fs::read_link(entry.path()) {
            Ok(target) => {
                if let Some(inode) = target
                    .to_str()
                    .and_then(|t| t.strip_prefix("socket:["))
                    .and_then(|t| t.strip_suffix(']'))
                    .and_then(|t| t.parse().ok())
                {
                    table.socket_inodes.push(inode);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => table.links_denied = true,
            Err(_) => {}
        }
    }
    Ok(table)
}

/// The systemd unit of a process from its cgroup path: `0::/system.slice/nginx.service` →
/// `nginx.service`. Only `.service` and `.scope` components count (a user session's
/// `user@1000.service` is not an app unit, but the innermost one wins).
pub fn unit_of_cgroup(text: &str) -> Option<String> {
    let line = text
        .lines()
        .find(|l| l.starts_with("0::"))
        .or_else(|| text.lines().find(|l| l.contains(":name=systemd:")))?;
    let path = line.splitn(3, ':').nth(2)?;
    path.split('/')
        .rev()
        .find(|c| c.ends_with(".service") || c.ends_with(".scope"))
        .map(str::to_string)
}

/// What `discover` found.
#[derive(Debug, Default, Clone)]
pub struct Discovery {
    pub processes: Vec<ProcessInfo>,
    pub nginx: Vec<NginxMaster>,
    pub fpm: Vec<FpmMaster>,
    pub app_servers: Vec<AppServer>,
}

/// The role a process title and name give, before listening sockets are known.
pub fn role_of(entry: &ProcEntry, table: &ProcessTable) -> Role {
    let title = entry.title();
    if title.starts_with("nginx: master process") {
        return Role::NginxMaster;
    }
    if title.starts_with("nginx: worker process") {
        return Role::NginxWorker;
    }
    if title.starts_with("nginx: cache ") {
        return Role::NginxHelper;
    }
    if title.starts_with("php-fpm: master process") {
        return Role::FpmMaster;
    }
    if title.starts_with("php-fpm: pool ") {
        return Role::FpmWorker;
    }
    // nginx with `master_process off` (or an unusual title): the plain binary name.
    if matches!(entry.name.as_str(), "nginx" | "openresty") {
        let parent_is_nginx = table
            .get(entry.ppid)
            .is_some_and(|p| matches!(p.name.as_str(), "nginx" | "openresty"));
        return if parent_is_nginx {
            Role::NginxWorker
        } else {
            Role::NginxMaster
        };
    }
    Role::Other
}

/// The kind of app server a process is, from its name and command line.
pub fn app_kind(entry: &ProcEntry) -> Option<&'static str> {
    let name = entry.name.to_ascii_lowercase();
    let words: Vec<String> = entry
        .cmdline
        .iter()
        .take(6)
        .flat_map(|a| a.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        .map(|a| {
            Path::new(&a)
                .file_name()
                .map(|f| f.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default()
        })
        .collect();
    let has = |needle: &str| name.contains(needle) || words.iter().any(|w| w.starts_with(needle));
    for (needle, kind) in [
        ("gunicorn", "gunicorn"),
        ("uwsgi", "uwsgi"),
        ("uvicorn", "uvicorn"),
        ("hypercorn", "hypercorn"),
        ("puma", "ruby"),
        ("unicorn", "ruby"),
    ] {
        if has(needle) {
            return Some(kind);
        }
    }
    if name.starts_with("php-fpm") {
        return None;
    }
    for (prefix, kind) in [
        ("node", "node"),
        ("python", "python"),
        ("java", "java"),
        ("php", "php"),
        ("ruby", "ruby"),
        ("dotnet", "dotnet"),
        ("bun", "node"),
        ("deno", "node"),
    ] {
        if name.starts_with(prefix) {
            return Some(kind);
        }
    }
    None
}

/// Finds nginx and PHP-FPM masters and lists the processes on the request path.
/// App servers need the listening sockets: see [`attach_listeners`].
pub fn discover(
    root: &HostRoot,
    table: &ProcessTable,
    worker_connections: Option<u64>,
    gaps: &mut Gaps,
) -> Discovery {
    let mut discovery = Discovery::default();
    let mut nginx_v: HashMap<String, Option<CompiledPaths>> = HashMap::new();
    for entry in &table.entries {
        let role = role_of(entry, table);
        match role {
            Role::NginxMaster => {
                let master =
                    nginx_master(root, table, entry, worker_connections, &mut nginx_v, gaps);
                discovery.nginx.push(master);
            }
            Role::FpmMaster => discovery.fpm.push(fpm_master(table, entry)),
            _ => {}
        }
        let described = info(entry, role, None);
        let near_limit = described.fd_share().is_some_and(|s| s >= FD_LIST_SHARE);
        if role != Role::Other || near_limit {
            discovery.processes.push(described);
        }
    }
    discovery
}

/// Adds what the listening sockets tell: the addresses nginx and PHP-FPM listen on, and the app
/// servers (processes of a known kind that own a listening socket, with the workers sharing it).
pub fn attach_listeners(discovery: &mut Discovery, table: &ProcessTable, listeners: &[Listener]) {
    for master in &mut discovery.nginx {
        master.listens = addresses_of(listeners, master.pid, &master.workers);
    }
    for master in &mut discovery.fpm {
        master.listens = addresses_of(listeners, master.pid, &master.workers);
    }
    let mut apps: Vec<AppServer> = Vec::new();
    for listener in listeners {
        let owners: Vec<&ProcEntry> = listener.pids.iter().filter_map(|&p| table.get(p)).collect();
        // nginx's and PHP-FPM's own sockets are not app servers.
        if owners.iter().any(|o| role_of(o, table) != Role::Other) {
            continue;
        }
        let Some(main) = listener.pid.and_then(|p| table.get(p)) else {
            continue;
        };
        let Some(kind) = app_kind(main).or_else(|| owners.iter().find_map(|o| app_kind(o))) else {
            continue;
        };
        match apps.iter_mut().find(|a| a.pid == main.pid) {
            Some(app) => {
                if !app.listens.contains(&listener.addr) {
                    app.listens.push(listener.addr.clone());
                }
            }
            None => apps.push(AppServer {
                pid: main.pid,
                kind: kind.to_string(),
                name: main.name.clone(),
                cmdline: shown_cmdline(main),
                listens: vec![listener.addr.clone()],
                workers: Vec::new(),
                unit: main.unit.clone(),
            }),
        }
        let app = apps
            .iter_mut()
            .find(|a| a.pid == main.pid)
            .expect("just added");
        for o in &owners {
            if o.pid != main.pid && !app.workers.contains(&o.pid) {
                app.workers.push(o.pid);
            }
        }
    }
    for app in &apps {
        let members = std::iter::once((app.pid, Role::AppServer))
            .chain(app.workers.iter().map(|&w| (w, Role::AppWorker)));
        for (pid, role) in members {
            let Some(entry) = table.get(pid) else {
                continue;
            };
            let described = info(entry, role, Some(&app.kind));
            // A process listed already (as near its fd limit) gets its role.
            match discovery.processes.iter_mut().find(|p| p.pid == pid) {
                Some(existing) => *existing = described,
                None => discovery.processes.push(described),
            }
        }
    }
    discovery.processes.sort_by_key(|p| p.pid);
    discovery.app_servers = apps;
}

fn addresses_of(listeners: &[Listener], master: u32, workers: &[u32]) -> Vec<String> {
    let mut out: Vec<String> = listeners
        .iter()
        .filter(|l| l.pids.iter().any(|p| *p == master || workers.contains(p)))
        .map(|l| l.addr.clone())
        .collect();
    out.dedup();
    out
}

fn shown_cmdline(entry: &ProcEntry) -> String {
    redact(&entry.title()).chars().take(300).collect()
}

fn info(entry: &ProcEntry, role: Role, kind: Option<&str>) -> ProcessInfo {
    ProcessInfo {
        pid: entry.pid,
        ppid: entry.ppid,
        name: entry.name.clone(),
        role,
        kind: kind.map(str::to_string),
        cmdline: shown_cmdline(entry),
        uid: entry.uid,
        threads: entry.threads,
        rss_bytes: entry.rss_bytes,
        started_at: entry.started_at,
        unit: entry.unit.clone(),
        fds: entry.fds,
        sockets: entry.fds.map(|_| entry.socket_inodes.len() as u64),
        fd_soft_limit: entry.fd_soft_limit,
        fd_hard_limit: entry.fd_hard_limit,
        source: entry.source.clone(),
    }
}

/// The options an nginx master was started with, from its title:
/// `nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf -g daemon on;`.
#[derive(Debug, Default, PartialEq)]
pub struct NginxCommand {
    pub binary: Option<String>,
    pub conf: Option<String>,
    pub prefix: Option<String>,
}

pub fn parse_nginx_title(title: &str) -> NginxCommand {
    let rest = title
        .strip_prefix("nginx: master process")
        .unwrap_or(title)
        .trim();
    let words: Vec<&str> = rest.split_whitespace().collect();
    let mut cmd = NginxCommand {
        binary: words.first().map(|w| w.to_string()),
        ..NginxCommand::default()
    };
    let mut i = 1;
    while i < words.len() {
        let w = words[i];
        let mut value = |attached: &str| -> Option<String> {
            if attached.is_empty() {
                i += 1;
                words.get(i).map(|v| v.to_string())
            } else {
                Some(attached.to_string())
            }
        };
        if let Some(attached) = w.strip_prefix("-c") {
            cmd.conf = value(attached);
        } else if let Some(attached) = w.strip_prefix("-p") {
            cmd.prefix = value(attached);
        }
        i += 1;
    }
    cmd
}

/// The paths an nginx binary was built with (`nginx -V`).
#[derive(Debug, Clone)]
struct CompiledPaths {
    prefix: Option<String>,
    conf: Option<String>,
}

/// `--prefix` and `--conf-path` of an nginx binary (`nginx -V`), on the live machine only.
fn compiled_paths(binary: &str) -> Option<CompiledPaths> {
    let out =
        super::run_command(binary, &["-V"], Duration::from_millis(500), 64 << 10, true).ok()?;
    let arg = |name: &str| {
        out.split_whitespace()
            .find_map(|w| w.strip_prefix(name))
            .map(|v| v.trim_matches('\'').to_string())
    };
    Some(CompiledPaths {
        prefix: arg("--prefix="),
        conf: arg("--conf-path="),
    })
}

fn nginx_master(
    root: &HostRoot,
    table: &ProcessTable,
    entry: &ProcEntry,
    worker_connections: Option<u64>,
    nginx_v: &mut HashMap<String, Option<CompiledPaths>>,
    gaps: &mut Gaps,
) -> NginxMaster {
    let cmd = parse_nginx_title(&entry.title());
    let workers: Vec<u32> = table
        .children(entry.pid)
        .filter(|c| role_of(c, table) == Role::NginxWorker)
        .map(|c| c.pid)
        .collect();
    // The compiled-in defaults matter only when -c or -p is missing, and only the live binary
    // can tell them.
    let compiled = if root.is_live() && (cmd.conf.is_none() || cmd.prefix.is_none()) {
        let binary = std::fs::read_link(root.path(&format!("/proc/{}/exe", entry.pid)))
            .ok()
            .map(|p| p.display().to_string())
            .filter(|p| !p.ends_with(" (deleted)"))
            .or_else(|| cmd.binary.clone());
        binary.and_then(|b| {
            nginx_v
                .entry(b.clone())
                .or_insert_with(|| compiled_paths(&b))
                .clone()
        })
    } else {
        None
    };
    let prefix = cmd
        .prefix
        .clone()
        .or_else(|| compiled.as_ref().and_then(|c| c.prefix.clone()))
        .map(PathBuf::from);
    let (conf_path, conf_source) = match (&cmd.conf, compiled.as_ref().and_then(|c| c.conf.clone()))
    {
        (Some(c), _) => (
            Some(c.clone()),
            format!("-c on the command line ({})", entry.source),
        ),
        (None, Some(c)) => (
            Some(c),
            "the binary's compiled-in --conf-path (nginx -V)".to_string(),
        ),
        (None, None) => (
            None,
            "not on the command line; the compiled-in default (see `nginx -V`)".to_string(),
        ),
    };
    let conf_path = conf_path.map(|c| match (&prefix, Path::new(&c).is_relative()) {
        (Some(p), true) => p.join(c),
        _ => PathBuf::from(c),
    });
    let conf_file = conf_path.as_ref().map(|c| root.path(&c.to_string_lossy()));
    let conf_modified_at = conf_file
        .as_ref()
        .and_then(|f| std::fs::metadata(f).ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    let (wc, wc_source) = match (worker_connections, &conf_file) {
        (Some(n), _) => (Some(n), Some("given".to_string())),
        (None, Some(file)) => match super::read_bounded(file, 4 << 20) {
            Ok(text) => match find_worker_connections(&text) {
                Some((n, line)) => (Some(n), Some(format!("{}:{line}", file.display()))),
                None => (
                    Some(NGINX_DEFAULT_WORKER_CONNECTIONS),
                    Some(format!("nginx's default (not set in {})", file.display())),
                ),
            },
            Err(e) => {
                gaps.io("nginx's worker_connections", file, &e);
                (None, None)
            }
        },
        (None, None) => (None, None),
    };
    NginxMaster {
        pid: entry.pid,
        conf_path,
        conf_source,
        prefix,
        binary: cmd.binary,
        started_at: entry.started_at,
        conf_modified_at,
        workers,
        worker_connections: wc,
        worker_connections_source: wc_source,
        listens: Vec::new(),
    }
}

/// nginx's default when `worker_connections` is not set.
pub const NGINX_DEFAULT_WORKER_CONNECTIONS: u64 = 512;

/// The value and line number of the first `worker_connections N;` outside a comment. A quick
/// scan of the main file only, for when no parsed configuration is at hand (the directive lives
/// in the `events` block, which is almost always in the main file).
pub fn find_worker_connections(text: &str) -> Option<(u64, usize)> {
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or("");
        let mut words = code.split(|c: char| c.is_whitespace() || c == ';' || c == '{' || c == '}');
        while let Some(w) = words.next() {
            if w == "worker_connections" {
                if let Some(n) = words.find(|w| !w.is_empty()).and_then(|n| n.parse().ok()) {
                    return Some((n, i + 1));
                }
            }
        }
    }
    None
}

fn fpm_master(table: &ProcessTable, entry: &ProcEntry) -> FpmMaster {
    let title = entry.title();
    let conf_path = title
        .strip_prefix("php-fpm: master process")
        .map(str::trim)
        .and_then(|r| r.strip_prefix('('))
        .and_then(|r| r.strip_suffix(')'))
        .map(PathBuf::from);
    let mut pools = Vec::new();
    let mut workers = Vec::new();
    for child in table.children(entry.pid) {
        if let Some(pool) = child.title().strip_prefix("php-fpm: pool ") {
            workers.push(child.pid);
            let pool = pool.trim().to_string();
            if !pools.contains(&pool) {
                pools.push(pool);
            }
        }
    }
    FpmMaster {
        pid: entry.pid,
        name: entry.name.clone(),
        conf_path,
        started_at: entry.started_at,
        workers,
        pools,
        listens: Vec::new(),
    }
}

/// The nginx masters running on this machine, with their configuration file and prefix.
pub fn find_nginx_masters() -> Vec<NginxMaster> {
    let root = HostRoot::live();
    let mut gaps = Gaps::default();
    let table = ProcessTable::scan_with(&root, false, &mut gaps);
    discover(&root, &table, None, &mut gaps).nginx
}

/// The PHP-FPM masters running on this machine, with their configuration file and pools.
pub fn find_fpm_masters() -> Vec<FpmMaster> {
    let root = HostRoot::live();
    let mut gaps = Gaps::default();
    let table = ProcessTable::scan_with(&root, false, &mut gaps);
    discover(&root, &table, None, &mut gaps).fpm
}

/// The app servers running on this machine, found by their listening sockets (root sees all;
/// an unprivileged user only the sockets of its own processes).
pub fn find_app_servers() -> Vec<AppServer> {
    let root = HostRoot::live();
    let mut gaps = Gaps::default();
    let table = ProcessTable::scan(&root, &mut gaps);
    let mut discovery = discover(&root, &table, None, &mut gaps);
    let sockets = super::sockets::collect(&root, &table, &mut gaps);
    attach_listeners(&mut discovery, &table, &sockets.listeners);
    discovery.app_servers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nginx_titles_give_conf_and_prefix() {
        let c = parse_nginx_title(
            "nginx: master process /usr/sbin/nginx -c /etc/nginx/nginx.conf -g daemon on; master_process on;",
        );
        assert_eq!(c.binary.as_deref(), Some("/usr/sbin/nginx"));
        assert_eq!(c.conf.as_deref(), Some("/etc/nginx/nginx.conf"));
        assert_eq!(c.prefix, None);
        let c = parse_nginx_title("nginx: master process nginx -p/srv/site/ -cconf/site.conf");
        assert_eq!(c.prefix.as_deref(), Some("/srv/site/"));
        assert_eq!(c.conf.as_deref(), Some("conf/site.conf"));
        assert_eq!(
            parse_nginx_title("nginx: master process /usr/sbin/nginx").conf,
            None
        );
    }

    #[test]
    fn open_file_limits() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n";
        assert_eq!(parse_nofile(limits), (Some(1024), Some(524288)));
        assert_eq!(
            parse_nofile("Max open files  unlimited unlimited files"),
            (None, None)
        );
        assert_eq!(parse_nofile("garbage"), (None, None));
    }

    #[test]
    fn worker_connections_outside_comments() {
        let conf = "user www-data;\n# worker_connections 9;\nevents {\n    worker_connections  768; # busy\n}\n";
        assert_eq!(find_worker_connections(conf), Some((768, 4)));
        assert_eq!(
            find_worker_connections("events{worker_connections 64;}"),
            Some((64, 1))
        );
        assert_eq!(find_worker_connections("events {}"), None);
    }

    #[test]
    fn units_from_cgroup_paths() {
        assert_eq!(
            unit_of_cgroup("0::/system.slice/php8.2-fpm.service\n").as_deref(),
            Some("php8.2-fpm.service")
        );
        assert_eq!(
            unit_of_cgroup("12:pids:/x\n1:name=systemd:/system.slice/nginx.service\n").as_deref(),
            Some("nginx.service")
        );
        assert_eq!(unit_of_cgroup("0::/\n"), None);
    }
}
