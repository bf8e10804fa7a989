//! The host collector: the machine's limits that turn into 502s, read the way an experienced
//! operator would, in one pass, from `/proc`, `/sys`, the kernel log and systemd.
//!
//! [`collect`] returns a [`HostSnapshot`]: facts only, each with the file or command it came
//! from, and a list of what could not be read and why ([`Unreadable`]). Judging the facts (is
//! 1021 of 1024 descriptors a problem?) is the job of `rules::host`.
//!
//! Counters whose rate matters (CPU time, pressure stall totals, TCP `ListenOverflows` and
//! retransmits) are sampled twice: once at the start, once after everything else was read and at
//! least [`HostOptions::sample_interval`] has passed, so the interval costs no extra time when the
//! rest of the scan is slower than it.
//!
//! Everything is read below [`HostOptions::root`] (default `/`): tests point it at captured
//! `/proc` trees (`tests/fixtures/host/<machine>/proc/…`). What only exists on the live machine
//! (netlink socket diagnostics for listen backlogs, `statvfs` of paths, `systemctl`, `journalctl`,
//! `nginx -V`) is used only when the root is `/`.
//!
//! The parts:
//! - [`pressure`]: load, CPU time and pressure stall information (PSI);
//! - [`memory`]: memory, swap, memory pressure;
//! - [`disk`]: space and inodes of the file systems holding given paths;
//! - [`processes`]: process discovery shared with the other commands (nginx and PHP-FPM masters,
//!   app servers found by their listening sockets), open fds against `RLIMIT_NOFILE`;
//! - [`sockets`] (+ [`sock_diag`]): who listens where, accept queues against backlogs,
//!   `TIME_WAIT` and ephemeral ports;
//! - [`netstat`]: `ListenOverflows` / `ListenDrops` and retransmit counters;
//! - [`sysctl`]: somaxconn, SYN backlog, conntrack, file-max;
//! - [`kernel_log`]: OOM kills and other kernel messages, classified by the signature database;
//! - [`systemd`]: the state of the nginx, PHP-FPM and app units;
//! - [`selinux`]: SELinux mode and `httpd_can_network_connect`.

pub mod disk;
pub mod kernel_log;
pub mod memory;
pub mod netstat;
pub mod pressure;
pub mod processes;
pub mod selinux;
pub mod sock_diag;
pub mod sockets;
pub mod sysctl;
pub mod systemd;

pub use disk::{Disk, WatchedPath};
pub use processes::{
    find_app_servers, find_fpm_masters, find_nginx_masters, AppServer, FpmMaster, NginxMaster,
    ProcessInfo, Role,
};
pub use sockets::{listeners, who_listens, Listener};

use serde::Serialize;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The biggest file the collector reads whole. `/proc/net/tcp` of a host with 300 000 sockets is
/// about 45 MB; anything bigger is cut and said so.
pub const MAX_FILE: u64 = 64 << 20;

/// What to collect and from where.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// The directory holding `proc/`, `sys/`, `dev/kmsg` and `run/`: `/` for this machine, a
    /// captured tree in tests.
    pub root: PathBuf,
    /// Paths whose file systems must have room: logs, temp paths (proxy_temp …), socket
    /// directories. The directories of unix sockets that are listened on and the nginx prefixes
    /// found are added on their own.
    pub paths: Vec<WatchedPath>,
    /// The shortest time between the two samples of the rate counters.
    pub sample_interval: Duration,
    /// Read the kernel log (`/dev/kmsg`, else `journalctl -k`).
    pub kernel_log: bool,
    /// Where the systemd unit states come from.
    pub systemd: SystemdSource,
    /// nginx's `worker_connections`, when the caller knows it from the parsed configuration.
    /// When `None`, the main configuration file of each running master is scanned for it.
    pub worker_connections: Option<u64>,
}

impl Default for HostOptions {
    fn default() -> HostOptions {
        HostOptions {
            root: PathBuf::from("/"),
            paths: Vec::new(),
            sample_interval: Duration::from_millis(200),
            kernel_log: true,
            systemd: SystemdSource::Live,
            worker_connections: None,
        }
    }
}

/// Where unit states come from.
#[derive(Debug, Clone, PartialEq)]
pub enum SystemdSource {
    /// Ask `systemctl` when systemd runs here (only when the root is `/`).
    Live,
    /// Parse a captured `systemctl show` output (tests, or a support bundle).
    Captured(PathBuf),
    /// Do not look.
    Off,
}

/// Everything the host collector found, each fact with where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct HostSnapshot {
    /// The root the files were read under (`/` for this machine).
    pub root: String,
    /// True when the root is `/`: the facts are this machine's, now.
    pub live: bool,
    pub hostname: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    pub kernel: Option<String>,
    /// When the collection started, Unix seconds.
    pub collected_at: u64,
    /// How long the whole collection took.
    pub elapsed_ms: u64,
    /// The time between the two samples of the rate counters.
    pub sampled_ms: u64,
    pub cpu: Option<pressure::Cpu>,
    pub memory: Option<memory::Memory>,
    pub disks: Vec<Disk>,
    /// The processes on the request path (nginx, PHP-FPM, app servers) and any other process
    /// near its descriptor limit.
    pub processes: Vec<ProcessInfo>,
    pub nginx: Vec<NginxMaster>,
    pub fpm: Vec<FpmMaster>,
    pub app_servers: Vec<AppServer>,
    pub listeners: Vec<Listener>,
    pub connections: Option<sockets::Connections>,
    pub counters: Option<netstat::NetCounters>,
    pub sysctl: sysctl::Sysctls,
    pub kernel_log: Option<kernel_log::KernelLog>,
    pub units: Option<systemd::Units>,
    pub selinux: Option<selinux::Selinux>,
    /// What could not be read, and why.
    pub unreadable: Vec<Unreadable>,
    /// How long each part took, in the order they ran.
    pub steps: Vec<Step>,
}

impl HostSnapshot {
    /// How long the named part of the collection took (0 when it did not run).
    pub fn step_ms(&self, name: &str) -> u64 {
        self.steps
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.ms)
            .unwrap_or(0)
    }
}

/// One part of the collection and its duration.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: &'static str,
    pub ms: u64,
}

/// Something the collector could not read: what it is, where, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unreadable {
    /// What was missed: "open file descriptors of 12 processes (nginx 812, …)".
    pub what: String,
    /// The file or command: `/proc/812/fd`, `journalctl -k`.
    pub path: String,
    pub kind: GapKind,
    /// The system's own words: "Permission denied (os error 13)".
    pub error: String,
}

/// Why something could not be read; the report turns it into advice in the user's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GapKind {
    /// Only root (or the owner) may read it: run as root for the detail.
    PermissionDenied,
    /// It does not exist here (an older kernel, a module not loaded, a feature off).
    Missing,
    /// It was read but did not parse.
    Malformed,
    /// A command that was needed is not installed or did not run.
    CommandFailed,
    /// A command or read did not finish within its deadline.
    TimedOut,
}

impl GapKind {
    pub fn of(error: &std::io::Error) -> GapKind {
        match error.kind() {
            std::io::ErrorKind::PermissionDenied => GapKind::PermissionDenied,
            std::io::ErrorKind::NotFound => GapKind::Missing,
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => GapKind::TimedOut,
            std::io::ErrorKind::InvalidData => GapKind::Malformed,
            _ => match error.raw_os_error() {
                Some(libc::EPERM) | Some(libc::EACCES) => GapKind::PermissionDenied,
                Some(libc::ENOENT) | Some(libc::ESRCH) => GapKind::Missing,
                _ => GapKind::CommandFailed,
            },
        }
    }
}

/// The list of gaps, filled as the collectors run.
#[derive(Debug, Default)]
pub struct Gaps(pub Vec<Unreadable>);

impl Gaps {
    pub fn add(
        &mut self,
        what: impl Into<String>,
        path: impl Into<String>,
        kind: GapKind,
        error: impl Into<String>,
    ) {
        self.0.push(Unreadable {
            what: what.into(),
            path: path.into(),
            kind,
            error: error.into(),
        });
    }

    pub fn io(&mut self, what: impl Into<String>, path: &Path, error: &std::io::Error) {
        self.add(
            what,
            path.display().to_string(),
            GapKind::of(error),
            error.to_string(),
        );
    }
}

/// The directory `/proc` and `/sys` are read under, and the bounded reads every collector uses.
#[derive(Debug, Clone)]
pub struct HostRoot {
    dir: PathBuf,
}

impl HostRoot {
    pub fn new(dir: impl Into<PathBuf>) -> HostRoot {
        HostRoot { dir: dir.into() }
    }

    /// The running machine.
    pub fn live() -> HostRoot {
        HostRoot::new("/")
    }

    /// True when the root is this machine's `/`, so live-only sources (netlink, commands,
    /// `statvfs`) describe the same machine as the files.
    pub fn is_live(&self) -> bool {
        self.dir == Path::new("/")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of an absolute host path under the root: `/proc/meminfo` → `ROOT/proc/meminfo`.
    pub fn path(&self, host_path: &str) -> PathBuf {
        self.dir.join(host_path.trim_start_matches('/'))
    }

    /// Reads a text file of the root, at most [`MAX_FILE`] bytes.
    pub fn read(&self, host_path: &str) -> std::io::Result<String> {
        read_bounded(&self.path(host_path), MAX_FILE)
    }

    /// Reads a file, recording a gap (with `what`) when it cannot be read.
    pub fn read_or_gap(&self, host_path: &str, what: &str, gaps: &mut Gaps) -> Option<String> {
        match self.read(host_path) {
            Ok(text) => Some(text),
            Err(e) => {
                gaps.io(what, &self.path(host_path), &e);
                None
            }
        }
    }

    /// A one-number file such as `/proc/sys/net/core/somaxconn`.
    pub fn read_u64(&self, host_path: &str) -> std::io::Result<u64> {
        let text = self.read(host_path)?;
        text.split_whitespace()
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("not a number: {:?}", text.trim()),
                )
            })
    }
}

/// Reads at most `max` bytes of a file as text (invalid UTF-8 replaced). `/proc` files report a
/// size of 0, so the bound is applied while reading, not from the metadata.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    })
}

/// Why a command gave no output.
#[derive(Debug)]
pub struct CommandError {
    pub kind: GapKind,
    pub message: String,
}

/// Runs a command with a deadline and a bound on its output; stdout (and stderr when
/// `with_stderr`) is returned as text. The child is killed by its pid at the deadline.
pub fn run_command(
    program: &str,
    args: &[&str],
    timeout: Duration,
    max_bytes: u64,
    with_stderr: bool,
) -> Result<String, CommandError> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(if with_stderr {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .env("LC_ALL", "C")
        .env("SYSTEMD_PAGER", "")
        .spawn()
        .map_err(|e| CommandError {
            kind: GapKind::CommandFailed,
            message: format!("{program}: {e}"),
        })?;
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let read_all = move |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                let _ = pipe.take(max_bytes).read_to_end(&mut buf);
            }
            buf
        })
    };
    let out = read_all(stdout.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let err = read_all(stderr.map(|p| Box::new(p) as Box<dyn Read + Send>));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut text = out.join().unwrap_or_default();
    text.extend(err.join().unwrap_or_default());
    let text = String::from_utf8_lossy(&text).into_owned();
    match status {
        None => Err(CommandError {
            kind: GapKind::TimedOut,
            message: format!("{program} did not finish within {} ms", timeout.as_millis()),
        }),
        Some(status) if !status.success() && text.trim().is_empty() => Err(CommandError {
            kind: GapKind::CommandFailed,
            message: format!("{program} {}: {status}", args.join(" ")),
        }),
        Some(_) => Ok(text),
    }
}

/// True when `program` is found on PATH.
pub fn have_program(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// The counters sampled twice, for rates.
struct Sample {
    at: Instant,
    cpu: Option<pressure::CpuSample>,
    psi: pressure::PsiTotals,
    net: Option<netstat::RawCounters>,
}

fn sample(root: &HostRoot, gaps: &mut Gaps) -> Sample {
    Sample {
        at: Instant::now(),
        cpu: pressure::cpu_sample(root, gaps),
        psi: pressure::psi_totals(root),
        net: netstat::read_counters(root, gaps),
    }
}

/// The same gap reported by two parts of the collection (the two samples, tcp and tcp6) once.
fn dedupe(gaps: Vec<Unreadable>) -> Vec<Unreadable> {
    let mut out: Vec<Unreadable> = Vec::new();
    for g in gaps {
        if !out.contains(&g) {
            out.push(g);
        }
    }
    out
}

/// Collects the snapshot. Never fails: what cannot be read is listed in
/// [`HostSnapshot::unreadable`] with the reason.
pub fn collect(options: &HostOptions) -> HostSnapshot {
    let started = Instant::now();
    let collected_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let root = HostRoot::new(&options.root);
    let mut gaps = Gaps::default();
    let mut steps = Vec::new();
    let mut step = |name: &'static str, since: Instant| {
        steps.push(Step {
            name,
            ms: since.elapsed().as_millis() as u64,
        })
    };

    let t = Instant::now();
    let first = sample(&root, &mut gaps);

    let t_proc = Instant::now();
    let table = processes::ProcessTable::scan(&root, &mut gaps);
    let mut discovery = processes::discover(&root, &table, options.worker_connections, &mut gaps);
    step("processes", t_proc);

    let t_sock = Instant::now();
    let sockets = sockets::collect(&root, &table, &mut gaps);
    processes::attach_listeners(&mut discovery, &table, &sockets.listeners);
    step("sockets", t_sock);

    let t_sys = Instant::now();
    let sysctl = sysctl::read(&root, &mut gaps);
    step("sysctl", t_sys);

    let t_disk = Instant::now();
    let mut watched = options.paths.clone();
    watched.extend(disk::implied_paths(&discovery, &sockets.listeners));
    let disks = disk::collect(&root, &watched, &mut gaps);
    step("disks", t_disk);

    let t_klog = Instant::now();
    let kernel_log = if options.kernel_log {
        kernel_log::collect(&root, &mut gaps)
    } else {
        None
    };
    step("kernel-log", t_klog);

    let t_units = Instant::now();
    let units = systemd::collect(&root, &options.systemd, &table, &discovery, &mut gaps);
    step("systemd", t_units);

    let t_se = Instant::now();
    let selinux = selinux::collect(&root);
    step("selinux", t_se);

    let memory = memory::collect(&root, &mut gaps);

    // The second sample: wait out what is left of the interval.
    let since_first = first.at.elapsed();
    if since_first < options.sample_interval {
        std::thread::sleep(options.sample_interval - since_first);
    }
    // The second sample's gaps are the first one's again: recorded once.
    let second = sample(&root, &mut Gaps::default());
    let interval = second.at.duration_since(first.at);
    let cpu = pressure::cpu(
        &root,
        first.cpu.as_ref(),
        second.cpu.as_ref(),
        &first.psi,
        &second.psi,
        interval,
        &mut gaps,
    );
    let memory = memory.map(|mut m| {
        m.psi = pressure::psi(
            &root,
            "memory",
            first.psi.memory,
            second.psi.memory,
            interval,
        );
        m
    });
    let counters = match (first.net, second.net) {
        (Some(a), Some(b)) => Some(netstat::NetCounters::between(&a, &b, interval)),
        _ => None,
    };
    step("samples", t);

    let hostname = root
        .read("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string());
    let kernel = root
        .read("/proc/sys/kernel/osrelease")
        .ok()
        .map(|s| s.trim().to_string());

    HostSnapshot {
        root: root.dir().display().to_string(),
        live: root.is_live(),
        hostname,
        kernel,
        collected_at,
        elapsed_ms: started.elapsed().as_millis() as u64,
        sampled_ms: interval.as_millis() as u64,
        cpu,
        memory,
        disks,
        processes: discovery.processes,
        nginx: discovery.nginx,
        fpm: discovery.fpm,
        app_servers: discovery.app_servers,
        listeners: sockets.listeners,
        connections: sockets.connections,
        counters,
        sysctl,
        kernel_log,
        units,
        selinux,
        unreadable: dedupe(gaps.0),
        steps,
    }
}
