//! `gwdoctor host` on this machine, with the conditions created for real: a process at its
//! descriptor limit, listeners whose accept queues overflow (TCP and unix), a full tmpfs (space,
//! then inodes), real nginx, PHP-FPM and gunicorn from the lab for process discovery, and the
//! command run as `nobody`. Every process a test starts is stopped by its pid; every mount is
//! unmounted.
//!
//! What needs root (mounting, switching to `nobody`) is skipped with a message elsewhere.

use gwdoctor::collect::host::{
    self, find_app_servers, find_fpm_masters, find_nginx_masters, netstat, who_listens, Gaps,
    HostOptions, HostRoot, Role, SystemdSource, WatchedPath,
};
use gwdoctor::findings::Finding;
use gwdoctor::rules::host::findings;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn live(paths: Vec<WatchedPath>) -> HostOptions {
    HostOptions {
        paths,
        sample_interval: Duration::from_millis(50),
        kernel_log: false,
        systemd: SystemdSource::Off,
        ..HostOptions::default()
    }
}

fn finding<'a>(found: &'a [Finding], cause: &str) -> &'a Finding {
    found
        .iter()
        .find(|f| f.cause == cause)
        .unwrap_or_else(|| panic!("no {cause} finding in {found:#?}"))
}

/// A child process stopped (SIGKILL, then reaped) by its pid when dropped.
struct Stopped(Child);

impl Drop for Stopped {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
        unsafe { libc::kill(self.0.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

/// The first line the child prints, waiting at most `timeout`.
fn first_line(child: &mut Child, timeout: Duration) -> String {
    let stdout = child.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    rx.recv_timeout(timeout)
        .expect("the child did not get ready in time")
}

#[test]
fn a_process_at_its_descriptor_limit_is_found_with_its_numbers() {
    // An app server (it listens) whose RLIMIT_NOFILE is 64 and which opened files until EMFILE.
    let script = r#"
import resource, socket, time
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
held = []
try:
    while len(held) < 1000:
        held.append(open("/dev/null"))
except OSError:
    pass
print(s.getsockname()[1], flush=True)
time.sleep(60)
"#;
    let child = Command::new("python3")
        .args(["-c", script])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut child = Stopped(child);
    let pid = child.0.id();
    let port: u16 = first_line(&mut child.0, Duration::from_secs(20))
        .trim()
        .parse()
        .unwrap();

    let s = host::collect(&live(Vec::new()));
    let p = s
        .processes
        .iter()
        .find(|p| p.pid == pid)
        .unwrap_or_else(|| panic!("pid {pid} not listed: {:#?}", s.processes));
    // A descriptor inherited before setrlimit (a shim's shell may leave one) can put it above.
    assert!(p.fds.unwrap() >= 64, "{p:?}");
    assert_eq!((p.fd_soft_limit, p.fd_hard_limit), (Some(64), Some(64)));
    assert_eq!(p.role, Role::AppServer);
    assert_eq!(p.kind.as_deref(), Some("python"));

    let (found, checks) = findings(&s);
    let fd = finding(&found, "fd-exhaustion");
    let evidence = fd
        .evidence
        .iter()
        .find(|e| e.location == format!("/proc/{pid}/limits"))
        .unwrap_or_else(|| panic!("no evidence for pid {pid}: {fd:#?}"));
    let used = p.fds.unwrap();
    assert!(
        evidence
            .detail
            .contains(&format!("{used} of 64 open file descriptors")),
        "{evidence:?}"
    );
    assert!(fd.confidence >= 0.85);
    let check = checks
        .iter()
        .find(|c| c.name == "file descriptors")
        .unwrap();
    assert_eq!(check.status, gwdoctor::findings::Status::Fail);

    let listening = who_listens(port);
    assert_eq!(listening.len(), 1, "{listening:#?}");
    assert_eq!(listening[0].pid, Some(pid));
}

fn listen_overflows() -> u64 {
    netstat::read_counters(&HostRoot::live(), &mut Gaps::default())
        .and_then(|c| c.get("TcpExt.ListenOverflows"))
        .expect("TcpExt.ListenOverflows")
}

#[test]
fn a_tcp_listener_that_never_accepts_overflows_its_backlog() {
    let listener =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    listener.listen(1).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let before = listen_overflows();
    // With a backlog of 1 the kernel queues 2 connections; the SYNs of the others are dropped
    // and counted in ListenOverflows. Each attempt is bounded.
    let mut clients = Vec::new();
    for _ in 0..6 {
        if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            clients.push(c);
        }
    }
    assert!(clients.len() >= 2, "the first connections complete");

    let s = host::collect(&live(Vec::new()));
    let l = s
        .listeners
        .iter()
        .find(|l| l.addr == addr.to_string())
        .unwrap_or_else(|| panic!("{addr} not listed: {:#?}", s.listeners));
    assert_eq!(l.backlog, Some(1));
    assert!(l.queue.unwrap() > 1, "{l:?}");
    assert!(l.overflowing());
    assert_eq!(l.pid, Some(std::process::id()));
    assert!(listen_overflows() > before, "ListenOverflows did not grow");

    let (found, _) = findings(&s);
    let f = finding(&found, "listen-backlog-overflow");
    let e = f
        .evidence
        .iter()
        .find(|e| e.detail.starts_with(&addr.to_string()))
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        e.detail.contains("with a backlog of 1") || e.detail.contains("backlog 1"),
        "{e:?}"
    );
    drop(clients);
}

#[test]
fn a_unix_listener_that_never_accepts_overflows_its_backlog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.sock");
    let listener =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
    listener
        .bind(&socket2::SockAddr::unix(&path).unwrap())
        .unwrap();
    listener.listen(1).unwrap();
    // A full unix listener refuses at once with EAGAIN (what nginx logs as "(11: Resource
    // temporarily unavailable) while connecting to upstream" for PHP-FPM).
    let mut clients = Vec::new();
    let mut refused = 0;
    for _ in 0..5 {
        let c = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&socket2::SockAddr::unix(&path).unwrap()) {
            Ok(()) => clients.push(c),
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => refused += 1,
            Err(e) => panic!("connect: {e}"),
        }
    }
    assert!(refused > 0, "the queue never filled");

    let s = host::collect(&live(Vec::new()));
    let addr = format!("unix:{}", path.display());
    let l = s
        .listeners
        .iter()
        .find(|l| l.addr == addr)
        .unwrap_or_else(|| panic!("{addr} not listed"));
    assert_eq!((l.queue, l.backlog), (Some(2), Some(1)));
    let (found, _) = findings(&s);
    assert!(finding(&found, "listen-backlog-overflow")
        .evidence
        .iter()
        .any(|e| e.detail.starts_with(&addr)));
    // The socket's directory is watched for space without being asked.
    assert!(s.disks.iter().any(|d| d
        .paths
        .iter()
        .any(|p| p.path == dir.path() && p.purpose == "socket")));
}

/// A tmpfs mounted for a test and unmounted when dropped.
struct Mount(tempfile::TempDir);

impl Mount {
    fn tmpfs(options: &str) -> Option<Mount> {
        if !is_root() {
            eprintln!("skipped: mounting a tmpfs needs root");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("skipped: mount -t tmpfs -o {options} does not work here");
            return None;
        }
        Some(Mount(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_tmpfs_is_a_full_disk() {
    let Some(mount) = Mount::tmpfs("size=1m") else {
        return;
    };
    // Fill it: 64 KiB at a time, bounded, until the file system says ENOSPC.
    let mut file = std::fs::File::create(mount.path().join("fill")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut full = false;
    for _ in 0..64 {
        if let Err(e) = std::io::Write::write_all(&mut file, &chunk) {
            assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
            full = true;
            break;
        }
    }
    assert!(full, "1 MiB tmpfs never filled");
    let temp = mount.path().join("proxy_temp");
    let s = host::collect(&live(vec![WatchedPath::new(&temp, "temp")]));
    let disk = s
        .disks
        .iter()
        .find(|d| d.mount_point == mount.path().display().to_string())
        .unwrap_or_else(|| panic!("{:#?}", s.disks));
    assert_eq!(disk.fstype.as_deref(), Some("tmpfs"));
    assert_eq!(disk.available_bytes, 0);
    assert_eq!(disk.paths[0].path, temp);

    let (found, _) = findings(&s);
    let f = finding(&found, "host-disk-full");
    let e = f
        .evidence
        .iter()
        .find(|e| e.location == format!("statvfs({})", mount.path().display()))
        .unwrap_or_else(|| panic!("{f:#?}"));
    assert!(
        e.detail.contains("0 B free of 1.0 MiB (100% used)"),
        "{e:?}"
    );
    assert!(f.confidence >= 0.85);
}

#[test]
fn a_tmpfs_out_of_inodes_is_a_full_disk_with_space_left() {
    let Some(mount) = Mount::tmpfs("size=1m,nr_inodes=16") else {
        return;
    };
    let mut created = 0;
    for i in 0..64 {
        match std::fs::File::create(mount.path().join(format!("f{i}"))) {
            Ok(_) => created += 1,
            Err(e) => {
                assert_eq!(e.raw_os_error(), Some(libc::ENOSPC), "{e}");
                break;
            }
        }
    }
    assert!(created < 64, "16 inodes never ran out");
    let s = host::collect(&live(vec![WatchedPath::new(mount.path(), "log")]));
    let disk = s
        .disks
        .iter()
        .find(|d| d.mount_point == mount.path().display().to_string())
        .unwrap();
    assert_eq!(disk.inodes_available, 0);
    assert!(disk.available_bytes > 0);
    let (found, _) = findings(&s);
    let f = finding(&found, "host-disk-full");
    assert!(
        f.evidence
            .iter()
            .any(|e| e.detail.contains("inodes 0 free of 16")),
        "{f:#?}"
    );
}

#[test]
fn systemd_unit_states_come_from_systemctl_when_systemd_runs() {
    if !Path::new("/run/systemd/system").exists() {
        eprintln!(
            "skipped: systemd does not run here; tests/host_fixtures.rs covers failed units with a \
             captured `systemctl show`"
        );
        return;
    }
    if !is_root() {
        eprintln!("skipped: starting a transient unit needs root");
        return;
    }
    let unit = format!("gwdoctor-test-{}", std::process::id());
    let started = Command::new("systemd-run")
        .args(["--unit", &unit, "-p", "Restart=no", "--", "/bin/false"])
        .status()
        .unwrap();
    assert!(started.success());
    std::thread::sleep(Duration::from_millis(500));
    let units = host::systemd::parse_show(
        &String::from_utf8(
            Command::new("systemctl")
                .args([
                    "show",
                    "-p",
                    "Id,ActiveState,SubState,Result,NRestarts,ExecMainCode,ExecMainStatus",
                    &unit,
                ])
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap(),
    );
    let _ = Command::new("systemctl")
        .args(["reset-failed", &unit])
        .status();
    assert_eq!(units.len(), 1);
    assert!(units[0].failed(), "{:?}", units[0]);
    assert_eq!(units[0].how_it_ended(), "exit-code (exited, status 1)");
}

#[test]
fn discovery_finds_the_labs_nginx_php_fpm_and_gunicorn() {
    use gwdoctor::lab::{runner, scenarios};
    for name in ["fpm-max-children", "gunicorn-timeout"] {
        let scenario = scenarios::find(name).unwrap();
        if let Some(why) = runner::skip_reason(&scenario) {
            eprintln!("skipped {name}: {why}");
            if std::env::var_os("CI").is_some() {
                panic!("{name} cannot run in CI: {why}");
            }
            continue;
        }
        let started = runner::start(&scenario).unwrap();
        let masters = find_nginx_masters();
        let master = masters
            .iter()
            .find(|m| m.pid == started.nginx.pid())
            .unwrap_or_else(|| panic!("the lab's nginx is not found: {masters:#?}"));
        assert_eq!(
            master.conf_path.as_deref(),
            Some(started.nginx.conf.as_path())
        );
        assert_eq!(master.workers.len(), 1);
        assert_eq!(master.worker_connections, Some(256));
        assert!(master
            .worker_connections_source
            .as_deref()
            .is_some_and(|s| s.starts_with(&started.nginx.conf.display().to_string())));
        let listening = who_listens(started.gateway.port());
        assert!(
            listening
                .iter()
                .any(|l| l.addr == started.gateway.to_string() && l.pid == Some(master.pid)),
            "{listening:#?}"
        );
        if name == "fpm-max-children" {
            let fpm = find_fpm_masters();
            let bench_dir = started.bench.dir().to_path_buf();
            let ours = fpm
                .iter()
                .find(|m| {
                    m.conf_path
                        .as_ref()
                        .is_some_and(|c| c.starts_with(&bench_dir))
                })
                .unwrap_or_else(|| panic!("the lab's PHP-FPM is not found: {fpm:#?}"));
            assert!(!ours.pools.is_empty());
        } else {
            let apps = find_app_servers();
            assert!(
                apps.iter().any(|a| a.kind == "gunicorn"
                    && a.listens
                        .iter()
                        .any(|l| l.starts_with(&started.bench.ip.to_string()))),
                "{apps:#?}"
            );
        }
        drop(started);
    }
}

#[test]
fn unprivileged_it_says_what_it_could_not_read_and_why() {
    if !is_root() {
        eprintln!("skipped: switching to nobody needs root");
        return;
    }
    // A root-owned listener whose owner `nobody` cannot see.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // nobody must be able to run the binary: a copy in a world-readable directory.
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("gwdoctor");
    std::fs::copy(env!("CARGO_BIN_EXE_gwdoctor"), &bin).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();

    let run = |format: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(&bin)
            .args([
                "--lang",
                "en",
                "host",
                "--interval",
                "20",
                "--format",
                format,
            ])
            .current_dir("/")
            .output()
            .expect("setpriv")
    };
    let out = run("json");
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let gaps = json["host"]["unreadable"].as_array().unwrap();
    let fd_gap = gaps
        .iter()
        .find(|g| g["path"] == "/proc/PID/fd")
        .unwrap_or_else(|| panic!("{gaps:#?}"));
    assert_eq!(fd_gap["kind"], "permission-denied");
    assert!(fd_gap["what"]
        .as_str()
        .unwrap()
        .starts_with("open descriptors or socket owners of"));
    let restricted = std::fs::read_to_string("/proc/sys/kernel/dmesg_restrict")
        .map(|v| v.trim() == "1")
        .unwrap_or(false);
    if restricted {
        let kmsg = gaps
            .iter()
            .find(|g| g["what"] == "the kernel log" && g["path"] == "/dev/kmsg")
            .unwrap_or_else(|| panic!("{gaps:#?}"));
        assert_eq!(kmsg["kind"], "permission-denied");
    }
    // The listener is still listed, its owner unknown.
    let ours = json["host"]["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["port"] == port)
        .unwrap_or_else(|| panic!("port {port} not listed"));
    assert!(ours["pid"].is_null());
    assert!(ours["backlog"].is_number(), "netlink needs no privilege");

    let text = String::from_utf8(run("text").stdout).unwrap();
    assert!(text.contains("Could not read"), "{text}");
    assert!(text.contains("sudo gwdoctor host"), "{text}");
    drop(listener);
}
