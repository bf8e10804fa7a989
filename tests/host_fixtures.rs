//! `gwdoctor host` on captured `/proc` trees (tests/fixtures/host/, see its README): `vm-lab`
//! is this project's test VM with the lab's nginx, PHP-FPM and gunicorn running, `vm-loaded`
//! the same capture edited into a machine at its limits. Process discovery, every host rule,
//! unreadable and malformed files, and the command's text and JSON.

use assert_cmd::Command;
use gwdoctor::collect::host::{self, GapKind, HostOptions, HostSnapshot, Role, SystemdSource};
use gwdoctor::findings::{Finding, Status};
use gwdoctor::rules::host::findings;
use std::path::{Path, PathBuf};
use std::time::Duration;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/host")
        .join(name)
}

fn options(root: &Path) -> HostOptions {
    HostOptions {
        root: root.to_path_buf(),
        sample_interval: Duration::from_millis(10),
        systemd: SystemdSource::Off,
        ..HostOptions::default()
    }
}

fn snapshot(name: &str) -> HostSnapshot {
    let root = fixture(name);
    let mut o = options(&root);
    let show = root.join("systemctl-show.txt");
    if show.exists() {
        o.systemd = SystemdSource::Captured(show);
    }
    host::collect(&o)
}

fn finding<'a>(found: &'a [Finding], cause: &str) -> &'a Finding {
    found
        .iter()
        .find(|f| f.cause == cause)
        .unwrap_or_else(|| panic!("no {cause} finding in {found:#?}"))
}

#[test]
fn discovery_finds_nginx_php_fpm_and_the_app_server_with_their_configuration() {
    let s = snapshot("vm-lab");
    assert!(!s.live);
    assert_eq!(s.nginx.len(), 1, "{:#?}", s.nginx);
    let nginx = &s.nginx[0];
    assert_eq!(nginx.pid, 22537);
    assert_eq!(
        nginx.conf_path.as_deref(),
        Some(Path::new("/tmp/gwdoctor-lab-zLxx5g/nginx/nginx.conf"))
    );
    assert_eq!(
        nginx.prefix.as_deref(),
        Some(Path::new("/tmp/gwdoctor-lab-zLxx5g/nginx"))
    );
    assert_eq!(nginx.workers, vec![22538]);
    assert_eq!(nginx.listens, vec!["127.77.91.26:8080".to_string()]);
    assert!(nginx.started_at.is_some());

    assert_eq!(s.fpm.len(), 1);
    let fpm = &s.fpm[0];
    assert_eq!(fpm.name, "php-fpm8.2");
    assert_eq!(
        fpm.conf_path.as_deref(),
        Some(Path::new("/tmp/gwdoctor-lab-zLxx5g/php-fpm.conf"))
    );
    assert_eq!(fpm.pools, vec!["www".to_string()]);
    assert_eq!(
        fpm.listens,
        vec!["unix:/tmp/gwdoctor-lab-zLxx5g/php-fpm.sock".to_string()]
    );

    assert_eq!(s.app_servers.len(), 1, "{:#?}", s.app_servers);
    let app = &s.app_servers[0];
    assert_eq!((app.pid, app.kind.as_str()), (22531, "gunicorn"));
    assert_eq!(app.listens, vec!["127.77.91.28:39389".to_string()]);
    assert_eq!(app.workers, vec![22558]);

    let role = |pid| s.processes.iter().find(|p| p.pid == pid).map(|p| p.role);
    assert_eq!(role(22538), Some(Role::NginxWorker));
    assert_eq!(role(22536), Some(Role::FpmWorker));
    assert_eq!(role(22558), Some(Role::AppWorker));
    let gunicorn = s.processes.iter().find(|p| p.pid == 22531).unwrap();
    assert_eq!(
        (gunicorn.fds, gunicorn.fd_soft_limit),
        (Some(9), Some(20000))
    );
    assert!(gunicorn.rss_bytes.unwrap() > 1 << 20);
}

#[test]
fn listeners_have_their_owner_and_queue() {
    let s = snapshot("vm-lab");
    let by_addr = |a: &str| {
        s.listeners
            .iter()
            .find(|l| l.addr == a)
            .unwrap_or_else(|| panic!("no {a}"))
    };
    let gunicorn = by_addr("127.77.91.28:39389");
    assert_eq!(
        (gunicorn.pid, gunicorn.process_name.as_deref()),
        (Some(22531), Some("gunicorn"))
    );
    assert_eq!(gunicorn.pids, vec![22531, 22558]);
    assert_eq!(gunicorn.queue, Some(0));
    // Without netlink a captured tree has no backlogs.
    assert_eq!(gunicorn.backlog, None);
    // The second lab nginx was not captured: its socket has no owner.
    assert_eq!(by_addr("127.77.91.28:8080").pid, None);
    assert_eq!(
        by_addr("unix:/tmp/gwdoctor-lab-zLxx5g/php-fpm.sock").pid,
        Some(22534)
    );
}

#[test]
fn a_healthy_machine_gives_no_finding_and_passing_checks() {
    let s = snapshot("vm-lab");
    let (found, checks) = findings(&s);
    assert!(found.is_empty(), "{found:#?}");
    for name in [
        "file descriptors",
        "accept queues",
        "ephemeral ports",
        "conntrack",
        "memory",
        "CPU",
        "kernel log",
    ] {
        let check = checks
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no check {name}"));
        assert_eq!(check.status, Status::Pass, "{check:?}");
    }
    let cpu = s.cpu.as_ref().unwrap();
    assert_eq!((cpu.cores, cpu.load1), (2, 0.51));
    assert_eq!(s.sysctl.somaxconn.as_ref().unwrap().value, 4096);
    assert_eq!(
        s.connections.as_ref().unwrap().port_range,
        Some((32768, 60999))
    );
    assert_eq!(
        s.counters.as_ref().unwrap().listen_overflows.unwrap().total,
        23
    );
}

#[test]
fn a_loaded_machine_names_every_limit_with_the_number_and_the_limit() {
    let s = snapshot("vm-loaded");
    let (found, _) = findings(&s);

    let fd = finding(&found, "fd-exhaustion");
    assert!(fd.confidence >= 0.85);
    assert!(fd.evidence[0].location.ends_with("proc/22558/limits"));
    assert!(
        fd.evidence[0]
            .detail
            .contains("64 of 64 open file descriptors"),
        "{fd:?}"
    );

    let backlog = finding(&found, "listen-backlog-overflow");
    assert!(backlog.evidence[0]
        .detail
        .contains("127.77.91.28:39389 (gunicorn, pid 22531): 129 connections"));
    assert!(backlog.evidence[0].detail.contains("somaxconn = 128"));

    let ports = finding(&found, "ephemeral-port-exhaustion");
    assert!(ports.evidence[0]
        .detail
        .starts_with("97 of 100 local ports (40000–40099) held towards 127.0.0.1:8000"));

    let conntrack = finding(&found, "conntrack-full");
    assert!(conntrack.evidence[0].detail.contains("262000 of 262144"));
    assert!(conntrack.confidence >= 0.85);

    let memory = finding(&found, "host-memory-exhausted");
    assert!(memory.evidence[0].detail.contains("(1.7%)"));
    assert!(memory
        .evidence
        .iter()
        .any(|e| e.detail.contains("full 22%")));

    let cpu = finding(&found, "host-cpu-saturated");
    assert!(cpu.evidence[0].detail.contains("85%"));

    let oom = finding(&found, "oom-killed");
    assert!(
        oom.confidence >= 0.85,
        "a two-minute-old OOM kill is recent"
    );
    assert!(oom
        .evidence
        .iter()
        .any(|e| e.detail.contains("Killed process 22590 (gunicorn)")));
    assert_eq!(oom.evidence[0].source, "kernel-log");

    let crashed = finding(&found, "upstream-crashed");
    let details: Vec<&str> = crashed.evidence.iter().map(|e| e.detail.as_str()).collect();
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("php8.2-fpm.service: failed") && d.contains("core-dump")),
        "{details:?}"
    );
    assert!(details.iter().any(
        |d| d.starts_with("myapp.service: activating (auto-restart)")
            && d.contains("restarted 7 times")
    ));
    assert!(details.iter().any(|d| d.contains("segfault")));
    // nginx.service is running: not a finding.
    assert!(found.iter().all(|f| f.cause != "gateway-down"));

    // Most likely first.
    assert!(found.windows(2).all(|w| w[0].confidence >= w[1].confidence));
}

#[test]
fn the_kernel_log_events_carry_victim_and_age() {
    let s = snapshot("vm-loaded");
    let log = s.kernel_log.as_ref().unwrap();
    assert!(log.source.ends_with("dev/kmsg"));
    let kill = log
        .events
        .iter()
        .find(|e| e.signature == "kernel-oom-killed")
        .unwrap();
    assert_eq!(
        (kill.pid, kill.process.as_deref()),
        (Some(22590), Some("gunicorn"))
    );
    assert_eq!(kill.ago_secs, Some(119));
    // The continuation line (" SUBSYSTEM=memory") is not a record.
    assert!(log.events.iter().all(|e| !e.line.starts_with(' ')));
}

/// A copy of a fixture in a temporary directory, to break.
fn broken_copy(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", fixture(name).display()))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success());
    dir
}

#[test]
fn unreadable_and_malformed_files_are_named_with_the_reason_and_nothing_panics() {
    let dir = broken_copy("vm-lab");
    let proc_dir = dir.path().join("proc");
    // A directory where a file should be: read() fails with EISDIR, as root too.
    std::fs::remove_file(proc_dir.join("meminfo")).unwrap();
    std::fs::create_dir(proc_dir.join("meminfo")).unwrap();
    std::fs::remove_file(proc_dir.join("net/tcp6")).unwrap();
    std::fs::write(proc_dir.join("loadavg"), b"\x00\xff binary junk\n").unwrap();
    std::fs::write(proc_dir.join("net/netstat"), "TcpExt: A B\nnot a pair\n").unwrap();
    std::fs::write(proc_dir.join("22537/limits"), "garbage").unwrap();
    std::fs::write(proc_dir.join("22538/stat"), "22538 (nginx").unwrap();
    std::fs::write(proc_dir.join("22536/status"), b"\xff\xfe\x00Name").unwrap();
    std::fs::write(
        proc_dir.join("net/unix"),
        "Num RefCount\n: 1 2\nffff: zz 00 00010000 0001 01 x /a\n",
    )
    .unwrap();

    let s = host::collect(&options(dir.path()));
    let gap = |what: &str| {
        s.unreadable
            .iter()
            .find(|u| u.what == what && u.path.contains(dir.path().to_str().unwrap()))
            .unwrap_or_else(|| panic!("no gap for {what}: {:#?}", s.unreadable))
    };
    assert!(gap("memory and swap").path.ends_with("proc/meminfo"));
    assert_eq!(gap("TCP sockets").kind, GapKind::Missing);
    assert_eq!(gap("load average").kind, GapKind::Malformed);
    assert!(s.memory.is_none());
    assert!(s.cpu.is_none());
    // What could be read still is.
    assert_eq!(s.nginx.len(), 1);
    assert!(s.listeners.iter().any(|l| l.addr == "127.77.91.26:8080"));
    let nginx = s.processes.iter().find(|p| p.pid == 22537).unwrap();
    assert_eq!(
        nginx.fd_soft_limit, None,
        "unparsable limits give no limit, not a wrong one"
    );
    // A process whose stat does not parse is skipped, not guessed at.
    assert!(s.processes.iter().all(|p| p.pid != 22538));
    assert!(s.listeners.iter().all(|l| !l.addr.starts_with("unix:")));
    let (_, checks) = findings(&s);
    let memory = checks.iter().find(|c| c.name == "memory").unwrap();
    assert_eq!(memory.status, Status::Skip);
}

#[test]
fn selinux_enforcing_without_httpd_can_network_connect_is_suspected() {
    let dir = broken_copy("vm-lab");
    let selinux = dir.path().join("sys/fs/selinux");
    std::fs::create_dir_all(selinux.join("booleans")).unwrap();
    std::fs::write(selinux.join("enforce"), "1").unwrap();
    // selinuxfs booleans hold "current pending".
    std::fs::write(selinux.join("booleans/httpd_can_network_connect"), "0 0").unwrap();
    let s = host::collect(&options(dir.path()));
    let se = s.selinux.as_ref().unwrap();
    assert_eq!(
        (se.mode.as_str(), se.httpd_can_network_connect),
        ("enforcing", Some(false))
    );
    let (found, checks) = findings(&s);
    let f = finding(&found, "selinux-denied");
    assert!(f.confidence < 0.5, "a setting, not a denial seen: {f:?}");
    assert!(!f.confirm.is_empty());
    let check = checks.iter().find(|c| c.name == "SELinux").unwrap();
    assert_eq!(check.status, Status::Warn);

    std::fs::write(selinux.join("booleans/httpd_can_network_connect"), "1 1").unwrap();
    let (found, _) = findings(&host::collect(&options(dir.path())));
    assert!(found.iter().all(|f| f.cause != "selinux-denied"));
}

#[test]
fn the_command_prints_text_and_json_and_exits_by_its_findings() {
    let loaded = fixture("vm-loaded");
    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args([
            "--lang",
            "en",
            "host",
            "--interval",
            "10",
            "--format",
            "json",
            "--root",
        ])
        .arg(&loaded)
        .arg("--systemctl-show")
        .arg(loaded.join("systemctl-show.txt"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["healthy"], false);
    let causes: Vec<&str> = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["cause"].as_str().unwrap())
        .collect();
    for cause in [
        "fd-exhaustion",
        "listen-backlog-overflow",
        "ephemeral-port-exhaustion",
        "conntrack-full",
        "oom-killed",
        "host-memory-exhausted",
        "host-cpu-saturated",
        "upstream-crashed",
    ] {
        assert!(causes.contains(&cause), "{cause} missing from {causes:?}");
    }
    assert!(json["findings"][0]["title"].is_string());
    assert!(json["host"]["listeners"].as_array().unwrap().len() >= 4);
    assert_eq!(json["host"]["nginx"][0]["pid"], 22537);

    let out = Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["--lang", "zh", "host", "--interval", "10", "--root"])
        .arg(fixture("vm-lab"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("谁在监听哪里"), "{text}");
    assert!(text.contains("127.77.91.28:39389"));
    assert!(text.contains("gunicorn"));
}

#[test]
fn a_root_without_proc_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    Command::cargo_bin("gwdoctor")
        .unwrap()
        .args(["host", "--root"])
        .arg(dir.path())
        .assert()
        .code(2)
        .stderr(predicates::str::contains("no proc/ directory"));
}
