//! Finding the configuration and the processes that run it: the running nginx master (its
//! `-c`, `-p` and `-g`, when it and its workers started, which user the workers run as), what
//! `nginx -V` was built with, `nginx -t`, and the running PHP-FPM masters' configuration files.
//!
//! Everything here reads `/proc` and runs `nginx -V` / `nginx -t` with a deadline; nothing is
//! changed.

use serde::Serialize;
use std::ffi::CString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// How long `nginx -t` / `nginx -V` may take before they are stopped.
pub const COMMAND_DEADLINE: Duration = Duration::from_secs(20);
/// At most this many processes are looked at in /proc.
const MAX_PROCS: usize = 100_000;

/// A user and the groups it is in, as the kernel checks permissions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    pub user: String,
    pub uid: u32,
    pub gid: u32,
    pub groups: Vec<u32>,
    /// Where this identity comes from: `running worker 1234`, `user directive at …`,
    /// `nginx's default (nobody)`.
    pub source: String,
}

/// A running nginx master and its workers.
#[derive(Debug, Clone, Serialize)]
pub struct RunningNginx {
    pub pid: u32,
    pub cmdline: String,
    pub binary: Option<PathBuf>,
    pub conf: Option<PathBuf>,
    pub prefix: Option<PathBuf>,
    /// `-g` directives.
    pub globals: Option<String>,
    pub master_started: Option<SystemTime>,
    /// The newest worker's start: workers are replaced at each successful reload, so this is
    /// when the configuration in force was last loaded.
    pub workers_started: Option<SystemTime>,
    pub worker: Option<Identity>,
}

/// What `nginx -V` says.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NginxBuild {
    pub version: String,
    pub prefix: Option<String>,
    pub conf_path: Option<String>,
    pub user: Option<String>,
    pub group: Option<String>,
}

/// The result of `nginx -t`.
#[derive(Debug, Clone, Serialize)]
pub struct NginxTest {
    pub command: String,
    pub ok: bool,
    pub output: String,
    pub ms: u64,
}

/// A running PHP-FPM master.
#[derive(Debug, Clone, Serialize)]
pub struct RunningFpm {
    pub pid: u32,
    pub conf: PathBuf,
}

fn read_proc(path: &Path, limit: u64) -> Option<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .ok()?
        .take(limit)
        .read_to_end(&mut bytes)
        .ok()?;
    Some(bytes)
}

fn pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .take(MAX_PROCS)
        .collect()
}

/// A process's command line as one string (NULs as spaces).
fn cmdline(pid: u32) -> Option<String> {
    let bytes = read_proc(&PathBuf::from(format!("/proc/{pid}/cmdline")), 64 * 1024)?;
    let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
    let text = text.trim().to_string();
    (!text.is_empty()).then_some(text)
}

/// The parent pid and start time (clock ticks after boot) from /proc/PID/stat.
fn stat(pid: u32) -> Option<(u32, u64)> {
    let bytes = read_proc(&PathBuf::from(format!("/proc/{pid}/stat")), 4096)?;
    let text = String::from_utf8_lossy(&bytes);
    // The command name is in parentheses and may hold spaces: read after the last ')'.
    let after = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ppid = fields.get(1)?.parse().ok()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((ppid, start))
}

fn boot_time() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse().ok())
}

/// When a process started.
pub fn started(pid: u32) -> Option<SystemTime> {
    let (_, ticks) = stat(pid)?;
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz <= 0 {
        return None;
    }
    let millis = ticks * 1000 / hz as u64;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(boot_time()?) + Duration::from_millis(millis))
}

/// The real uid, gid and supplementary groups of a process.
fn process_identity(pid: u32) -> Option<Identity> {
    let bytes = read_proc(&PathBuf::from(format!("/proc/{pid}/status")), 64 * 1024)?;
    let text = String::from_utf8_lossy(&bytes);
    let field = |name: &str| -> Option<Vec<u32>> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        Some(
            line[name.len()..]
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect(),
        )
    };
    let uid = *field("Uid:")?.get(1)?;
    let gid = *field("Gid:")?.get(1)?;
    let groups = field("Groups:").unwrap_or_default();
    Some(Identity {
        user: user_name(uid).unwrap_or_else(|| uid.to_string()),
        uid,
        gid,
        groups,
        source: format!("running worker {pid}"),
    })
}

/// A user's name by uid.
pub fn user_name(uid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into our buffers only; the result points into them.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: pw_name is a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// A user by name, with its primary and supplementary groups (`getpwnam_r` + `getgrouplist`).
pub fn identity_of(user: &str, group: Option<&str>, source: String) -> Option<Identity> {
    let name = CString::new(user).ok()?;
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwnam_r writes into our buffers only.
    let rc = unsafe {
        libc::getpwnam_r(
            name.as_ptr(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() {
        return None;
    }
    let uid = pwd.pw_uid;
    let mut gid = pwd.pw_gid;
    if let Some(g) = group {
        if let Some(id) = group_id(g) {
            gid = id;
        }
    }
    let mut groups = vec![0 as libc::gid_t; 256];
    let mut n = groups.len() as libc::c_int;
    // SAFETY: getgrouplist fills at most `n` entries of `groups`.
    let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
    groups.truncate(if rc >= 0 { n.max(0) as usize } else { 0 });
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Some(Identity {
        user: user.to_string(),
        uid,
        gid,
        groups,
        source,
    })
}

/// A group's name by gid.
pub fn group_name(gid: u32) -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrgid_r writes into our buffers only; the result points into them.
    let rc = unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    // SAFETY: gr_name is a NUL-terminated string inside `buf`.
    Some(
        unsafe { std::ffi::CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// A group's id by name (or a number).
pub fn group_id(group: &str) -> Option<u32> {
    if let Ok(n) = group.parse() {
        return Some(n);
    }
    let name = CString::new(group).ok()?;
    let mut buf = vec![0 as libc::c_char; 64 * 1024];
    let mut grp: libc::group = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::group = std::ptr::null_mut();
    // SAFETY: getgrnam_r writes into our buffers only.
    let rc = unsafe {
        libc::getgrnam_r(
            name.as_ptr(),
            &mut grp,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    (rc == 0 && !result.is_null()).then_some(grp.gr_gid)
}

/// A user's id by name (or a number).
pub fn user_id(user: &str) -> Option<u32> {
    if let Ok(n) = user.parse() {
        return Some(n);
    }
    identity_of(user, None, String::new()).map(|i| i.uid)
}

/// The value after a flag in a command line split into words (`-c FILE` or `-cFILE`).
fn flag_value(words: &[&str], flag: &str) -> Option<String> {
    let mut it = words.iter();
    while let Some(w) = it.next() {
        if *w == flag {
            return it.next().map(|s| s.to_string());
        }
        if let Some(v) = w.strip_prefix(flag) {
            if !v.is_empty() {
                return Some(v.to_string());
            }
        }
    }
    None
}

/// The running nginx masters.
pub fn running_nginx() -> Vec<RunningNginx> {
    let mut masters = Vec::new();
    let mut children: Vec<(u32, u32)> = Vec::new();
    for pid in pids() {
        let Some(cmd) = cmdline(pid) else { continue };
        if let Some(rest) = cmd.strip_prefix("nginx: master process") {
            let words: Vec<&str> = rest.split_whitespace().collect();
            let globals = words
                .iter()
                .position(|w| *w == "-g")
                .map(|i| words[i + 1..].join(" "));
            masters.push(RunningNginx {
                pid,
                cmdline: cmd.clone(),
                binary: std::fs::read_link(format!("/proc/{pid}/exe")).ok(),
                conf: flag_value(&words, "-c").map(PathBuf::from),
                prefix: flag_value(&words, "-p").map(PathBuf::from),
                globals: globals.map(|g| g.split(" -").next().unwrap_or("").to_string()),
                master_started: started(pid),
                workers_started: None,
                worker: None,
            });
        } else if cmd.starts_with("nginx: worker process") {
            if let Some((ppid, _)) = stat(pid) {
                children.push((pid, ppid));
            }
        }
    }
    for m in &mut masters {
        for &(pid, ppid) in &children {
            if ppid != m.pid {
                continue;
            }
            let t = started(pid);
            if t > m.workers_started {
                m.workers_started = t;
            }
            if m.worker.is_none() {
                m.worker = process_identity(pid);
            }
        }
    }
    masters
}

/// The running PHP-FPM masters and their configuration files
/// (`php-fpm: master process (/etc/php/8.2/fpm/php-fpm.conf)`).
pub fn running_fpm() -> Vec<RunningFpm> {
    let mut out = Vec::new();
    for pid in pids() {
        let Some(cmd) = cmdline(pid) else { continue };
        if let Some(rest) = cmd.strip_prefix("php-fpm: master process (") {
            if let Some(conf) = rest.strip_suffix(')') {
                out.push(RunningFpm {
                    pid,
                    conf: PathBuf::from(conf),
                });
            }
        }
    }
    out
}

/// Runs a command with a deadline; stops it by pid when the deadline passes.
fn run_bounded(mut command: Command) -> Option<(bool, String, u64)> {
    let start = Instant::now();
    let dir = tempfile::tempdir().ok()?;
    let out_path = dir.path().join("out");
    let out = std::fs::File::create(&out_path).ok()?;
    let err = out.try_clone().ok()?;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .ok()?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() > COMMAND_DEADLINE => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let bytes = read_proc(&out_path, 256 * 1024).unwrap_or_default();
    let mut output = String::from_utf8_lossy(&bytes).trim().to_string();
    if status.is_none() {
        output.push_str(&format!(
            "\n(stopped after {} s)",
            COMMAND_DEADLINE.as_secs()
        ));
    }
    Some((
        status.is_some_and(|s| s.success()),
        output,
        start.elapsed().as_millis() as u64,
    ))
}

/// `nginx -V`.
pub fn nginx_build(binary: &Path) -> Option<NginxBuild> {
    let mut command = Command::new(binary);
    command.arg("-V");
    let (_, output, _) = run_bounded(command)?;
    let mut build = NginxBuild::default();
    for line in output.lines() {
        if let Some(v) = line.strip_prefix("nginx version: ") {
            build.version = v.trim().to_string();
        }
        if line.starts_with("configure arguments:") {
            for word in line.split_whitespace() {
                let take = |flag: &str, into: &mut Option<String>| {
                    if let Some(v) = word.strip_prefix(flag) {
                        *into = Some(v.trim_matches('\'').to_string());
                    }
                };
                take("--prefix=", &mut build.prefix);
                take("--conf-path=", &mut build.conf_path);
                take("--user=", &mut build.user);
                take("--group=", &mut build.group);
            }
        }
    }
    (!build.version.is_empty()).then_some(build)
}

/// `nginx -t -p PREFIX -c FILE [-g GLOBALS]`.
pub fn nginx_test(
    binary: &Path,
    conf: &Path,
    prefix: Option<&Path>,
    globals: Option<&str>,
) -> Option<NginxTest> {
    let mut command = Command::new(binary);
    command.arg("-t");
    if let Some(p) = prefix {
        let mut p = p.as_os_str().to_owned();
        // nginx appends file names to the prefix as strings: it must end with a slash.
        if !p.to_string_lossy().ends_with('/') {
            p.push("/");
        }
        command.arg("-p").arg(p);
    }
    command.arg("-c").arg(conf);
    if let Some(g) = globals.filter(|g| !g.trim().is_empty()) {
        command.arg("-g").arg(g);
    }
    let shown = format!("{:?}", command).replace('"', "");
    let (ok, output, ms) = run_bounded(command)?;
    Some(NginxTest {
        command: shown,
        ok,
        output,
        ms,
    })
}

/// The nginx binary: the running master's, else `nginx` on the PATH (or /usr/sbin/nginx).
pub fn nginx_binary(running: Option<&RunningNginx>) -> Option<PathBuf> {
    if let Some(b) = running
        .and_then(|r| r.binary.clone())
        .filter(|b| b.exists())
    {
        return Some(b);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([
            PathBuf::from("/usr/sbin"),
            PathBuf::from("/usr/local/sbin"),
            PathBuf::from("/usr/local/nginx/sbin"),
        ])
        .map(|d| d.join("nginx"))
        .find(|p| p.is_file())
}

/// Where the configuration is when none was named: the running master's `-c` (relative to its
/// prefix), else what `nginx -V` was built with, else /etc/nginx/nginx.conf. Also says how it
/// was found.
pub fn default_config(running: &[RunningNginx], build: Option<&NginxBuild>) -> (PathBuf, String) {
    for r in running {
        if let Some(c) = &r.conf {
            let path = match (&r.prefix, c.is_absolute()) {
                (Some(p), false) => p.join(c),
                _ => c.clone(),
            };
            return (
                path,
                format!(
                    "the running nginx master (pid {}) was started with -c",
                    r.pid
                ),
            );
        }
    }
    if let Some(r) = running.first() {
        if let Some(conf) = build.and_then(|b| b.conf_path.clone()) {
            return (
                PathBuf::from(conf),
                format!(
                    "the running nginx master (pid {}) uses its built-in path",
                    r.pid
                ),
            );
        }
    }
    if let Some(conf) = build.and_then(|b| b.conf_path.clone()) {
        return (PathBuf::from(conf), "nginx -V --conf-path".into());
    }
    (
        PathBuf::from("/etc/nginx/nginx.conf"),
        "the usual path".into(),
    )
}

/// Whether gwdoctor runs inside a container (where loopback is the container's own): the
/// cgroup names a container runtime, or a runtime's marker file is there and the root file
/// system is not a block device (an image built from a container keeps `/.dockerenv` even when
/// it boots as a VM).
pub fn in_container() -> bool {
    let cgroup = std::fs::read_to_string("/proc/1/cgroup").unwrap_or_default();
    if ["docker", "kubepods", "containerd", "libpod", "lxc"]
        .iter()
        .any(|r| cgroup.contains(r))
    {
        return true;
    }
    let marker = Path::new("/.dockerenv").exists() || Path::new("/run/.containerenv").exists();
    let root_on_device = std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(4) == Some(&"/")
                && l.split(" - ")
                    .nth(1)
                    .and_then(|r| r.split_whitespace().nth(1))
                    .is_some_and(|src| src.starts_with("/dev/"))
        })
    });
    marker && !root_on_device
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_of_a_master_command_line() {
        let words: Vec<&str> = "/usr/sbin/nginx -p /srv/x/ -c conf/nginx.conf -g daemon off;"
            .split_whitespace()
            .collect();
        assert_eq!(flag_value(&words, "-c").as_deref(), Some("conf/nginx.conf"));
        assert_eq!(flag_value(&words, "-p").as_deref(), Some("/srv/x/"));
    }

    #[test]
    fn knows_root_and_this_process() {
        let root = identity_of("root", None, "test".into()).unwrap();
        assert_eq!(root.uid, 0);
        assert!(started(std::process::id()).is_some());
    }
}
