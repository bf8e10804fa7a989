//! Rules over the host snapshot: which of the machine's limits is reached, or close enough to
//! explain a 502, and how sure we are. Each finding names a cause id of the catalog and carries
//! the number, the limit and the file it was read from; each area also gives a [`Check`], so a
//! report shows what was looked at and passed, not only what failed.
//!
//! The thresholds are an operator's rules of thumb, written down as constants: at 100 % of a
//! limit the kernel refuses (EMFILE, EADDRNOTAVAIL, a dropped SYN); a few percent below it a
//! burst gets there. Counters that grew during the sample interval count more than counters that
//! only grew at some time since boot, and kernel messages count less the older they are.

use crate::collect::host::processes::Role;
use crate::collect::host::{HostSnapshot, ProcessInfo};
use crate::findings::{Check, Evidence, Finding, Status};

/// A share of a limit at which a finding is raised (a burst reaches the limit).
const NEAR: f64 = 0.90;
/// A share at which a check warns.
const WARN: f64 = 0.75;
/// Free space below which a file system counts as full, whatever its size.
const MIN_FREE_BYTES: u64 = 16 << 20;

/// Findings and checks of the host rules.
pub fn findings(s: &HostSnapshot) -> (Vec<Finding>, Vec<Check>) {
    let mut out = Out::default();
    fd_exhaustion(s, &mut out);
    worker_connections(s, &mut out);
    listen_backlog(s, &mut out);
    ephemeral_ports(s, &mut out);
    conntrack(s, &mut out);
    memory(s, &mut out);
    cpu(s, &mut out);
    disks(s, &mut out);
    units(s, &mut out);
    kernel_log(s, &mut out);
    selinux(s, &mut out);
    (crate::findings::rank(out.findings), out.checks)
}

#[derive(Default)]
struct Out {
    findings: Vec<Finding>,
    checks: Vec<Check>,
}

impl Out {
    fn check(&mut self, name: &str, status: Status, detail: impl Into<String>, ms: u64) {
        self.checks.push(Check::new(name, status, detail, ms));
    }
}

fn host(location: &str, detail: String) -> Evidence {
    Evidence::new("host", location, detail)
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part * 1000.0 / whole).round() / 10.0
    }
}

/// 1.5 GiB, 300 MiB, 12 KiB.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else if value >= 10.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// 45 s, 12 min, 3 h, 2 d.
pub fn human_age(secs: u64) -> String {
    match secs {
        0..=119 => format!("{secs} s"),
        120..=7199 => format!("{} min", secs / 60),
        7200..=172_799 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

fn on_request_path(p: &ProcessInfo) -> bool {
    !matches!(p.role, Role::Other | Role::NginxHelper)
}

fn describe(p: &ProcessInfo) -> String {
    let role = match p.role {
        Role::NginxMaster => "nginx master",
        Role::NginxWorker => "nginx worker",
        Role::NginxHelper => "nginx cache process",
        Role::FpmMaster => "PHP-FPM master",
        Role::FpmWorker => "PHP-FPM worker",
        Role::AppServer => "app server",
        Role::AppWorker => "app worker",
        Role::Other => "",
    };
    if role.is_empty() {
        format!("{} (pid {})", p.name, p.pid)
    } else {
        format!("{} (pid {}, {role})", p.name, p.pid)
    }
}

/// Processes against `RLIMIT_NOFILE`, and the system-wide file table against `fs.file-max`.
fn fd_exhaustion(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("processes");
    let mut worst: Option<(&ProcessInfo, f64)> = None;
    let mut measured = 0;
    for p in &s.processes {
        let (Some(share), Some(fds), Some(limit)) = (p.fd_share(), p.fds, p.fd_soft_limit) else {
            continue;
        };
        measured += 1;
        if worst.is_none_or(|(_, w)| share > w) {
            worst = Some((p, share));
        }
        if share < NEAR {
            continue;
        }
        // At the limit every accept() and connect() fails with EMFILE ("24: Too many open files").
        let at_limit = fds + 2 >= limit;
        let confidence = match (at_limit, on_request_path(p)) {
            (true, true) => 0.9,
            (true, false) => 0.75,
            (false, true) => 0.6,
            (false, false) => 0.4,
        };
        let hard = p
            .fd_hard_limit
            .map(|h| h.to_string())
            .unwrap_or_else(|| "unlimited".into());
        out.findings.push(
            Finding::new(
                "fd-exhaustion",
                confidence,
                vec![host(
                    &format!("{}/limits", p.source),
                    format!(
                        "{}: {fds} of {limit} open file descriptors ({}%); RLIMIT_NOFILE soft {limit}, hard {hard}",
                        describe(p),
                        pct(fds as f64, limit as f64)
                    ),
                )],
            )
            .confirm(format!(
                "ls /proc/{pid}/fd | wc -l; grep 'open files' /proc/{pid}/limits",
                pid = p.pid
            )),
        );
    }
    let mut status = Status::Pass;
    let mut detail = match worst {
        Some((p, share)) => {
            if share >= NEAR {
                status = Status::Fail;
            } else if share >= WARN {
                status = Status::Warn;
            }
            format!(
                "highest: {} uses {} of {} descriptors ({}%)",
                describe(p),
                p.fds.unwrap_or(0),
                p.fd_soft_limit.unwrap_or(0),
                pct(
                    p.fds.unwrap_or(0) as f64,
                    p.fd_soft_limit.unwrap_or(0) as f64
                )
            )
        }
        None => String::new(),
    };
    if let (Some(nr), Some(max)) = (&s.sysctl.file_nr, &s.sysctl.file_max) {
        let share = nr.value as f64 / max.value.max(1) as f64;
        if share >= NEAR {
            status = Status::Fail;
            out.findings.push(Finding::new(
                "fd-exhaustion",
                0.85,
                vec![host(
                    &nr.source,
                    format!(
                        "system-wide: {} of {} file handles allocated (fs.file-max)",
                        nr.value, max.value
                    ),
                )],
            ));
        }
        if !detail.is_empty() {
            detail.push_str("; ");
        }
        detail.push_str(&format!(
            "system: {} of {} file handles",
            nr.value, max.value
        ));
    }
    let hidden = s.unreadable.iter().any(|u| {
        u.path.ends_with("PID/fd") && u.kind == crate::collect::host::GapKind::PermissionDenied
    });
    if hidden {
        detail.push_str("; the descriptor tables of some processes could not be read (see below)");
    }
    if measured == 0 && s.processes.iter().any(|p| p.fds.is_none()) {
        out.check(
            "file descriptors",
            Status::Skip,
            format!("could not read the descriptor tables (run as root); {detail}"),
            ms,
        );
    } else {
        out.check("file descriptors", status, detail, ms);
    }
}

/// nginx's `worker_connections` counts client and upstream connections of one worker; when all
/// are taken nginx logs "worker_connections are not enough" and drops new connections.
fn worker_connections(s: &HostSnapshot, out: &mut Out) {
    for master in &s.nginx {
        let Some(limit) = master.worker_connections else {
            continue;
        };
        let source = master.worker_connections_source.clone().unwrap_or_default();
        let mut busiest: Option<(u32, u64)> = None;
        for &w in &master.workers {
            let Some(sockets) = s
                .processes
                .iter()
                .find(|p| p.pid == w)
                .and_then(|p| p.sockets)
            else {
                continue;
            };
            if busiest.is_none_or(|(_, b)| sockets > b) {
                busiest = Some((w, sockets));
            }
        }
        let Some((pid, used)) = busiest else {
            continue;
        };
        let share = used as f64 / limit.max(1) as f64;
        let detail = format!(
            "nginx worker pid {pid}: {used} sockets open of worker_connections {limit} ({source})"
        );
        let status = if share >= NEAR {
            out.findings.push(
                Finding::new(
                    "fd-exhaustion",
                    0.8,
                    vec![host(&format!("/proc/{pid}/fd"), detail.clone())],
                )
                .confirm("grep 'worker_connections are not enough' /var/log/nginx/error.log"),
            );
            Status::Fail
        } else if share >= WARN {
            Status::Warn
        } else {
            Status::Pass
        };
        out.check(
            "nginx worker_connections",
            status,
            detail,
            s.step_ms("processes"),
        );
    }
}

/// Accept queues against backlogs, and the kernel's ListenOverflows counter.
fn listen_backlog(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("sockets");
    let somaxconn = s.sysctl.somaxconn.as_ref().map(|v| v.value);
    let rising = s
        .counters
        .as_ref()
        .and_then(|c| c.listen_overflows)
        .filter(|c| c.delta > 0);
    let mut full = Vec::new();
    let mut near = Vec::new();
    for l in &s.listeners {
        let Some(queue) = l.queue else { continue };
        // Without netlink the backlog is unknown, but it is never above somaxconn.
        let (limit, known) = match (l.backlog, somaxconn) {
            (Some(b), _) => (u64::from(b), true),
            (None, Some(m)) => (m, false),
            (None, None) => continue,
        };
        let owner = match (&l.process_name, l.pid) {
            (Some(name), Some(pid)) => format!("{name}, pid {pid}"),
            _ => "owner unknown".to_string(),
        };
        let what = if known {
            format!("backlog {limit}")
        } else {
            format!("backlog unknown, at most net.core.somaxconn = {limit}")
        };
        let detail = format!(
            "{} ({owner}): {queue} connections waiting for accept(), {what}",
            l.addr
        );
        if u64::from(queue) > limit {
            full.push(host(&l.source, detail));
        } else if known && limit >= 8 && u64::from(queue) as f64 >= limit as f64 * WARN {
            near.push(host(&l.source, detail));
        }
    }
    let counters_source = s
        .counters
        .as_ref()
        .map(|c| c.source.clone())
        .unwrap_or_default();
    if !full.is_empty() {
        let mut evidence = full.clone();
        if let Some(c) = rising {
            evidence.push(host(
                &counters_source,
                format!(
                    "TcpExt.ListenOverflows grew by {} in {} ms (total {})",
                    c.delta, s.sampled_ms, c.total
                ),
            ));
        }
        out.findings.push(
            Finding::new(
                "listen-backlog-overflow",
                if rising.is_some() { 0.95 } else { 0.85 },
                evidence,
            )
            .confirm("ss -ltnx  # Recv-Q above Send-Q on a listener"),
        );
    } else if let Some(c) = rising {
        out.findings.push(
            Finding::new(
                "listen-backlog-overflow",
                0.65,
                vec![host(
                    &counters_source,
                    format!(
                        "TcpExt.ListenOverflows grew by {} in {} ms (total {}); no listener was full at the moment it was looked at",
                        c.delta, s.sampled_ms, c.total
                    ),
                )],
            )
            .confirm("nstat -az TcpExtListenOverflows; ss -ltn  # which listener has Recv-Q near Send-Q"),
        );
    }
    let status = if !full.is_empty() || rising.is_some() {
        Status::Fail
    } else if !near.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    let mut detail = if let Some(e) = full.first().or(near.first()) {
        e.detail.clone()
    } else {
        let with_backlog = s.listeners.iter().filter(|l| l.backlog.is_some()).count();
        format!(
            "{} listeners, every accept queue below its backlog{}",
            s.listeners.len(),
            if with_backlog == 0 && !s.listeners.is_empty() {
                " (backlogs unknown: compared with somaxconn)"
            } else {
                ""
            }
        )
    };
    if let Some(c) = s.counters.as_ref().and_then(|c| c.listen_overflows) {
        detail.push_str(&format!(
            "; ListenOverflows {} since boot, +{} in {} ms",
            c.total, c.delta, s.sampled_ms
        ));
    }
    out.check("accept queues", status, detail, ms);
}

/// Local ports towards the busiest destination against the ephemeral port range.
fn ephemeral_ports(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("sockets");
    let Some(c) = &s.connections else {
        out.check(
            "ephemeral ports",
            Status::Skip,
            "the TCP tables could not be read",
            ms,
        );
        return;
    };
    let (Some(range), Some((lo, hi))) = (c.range_size(), c.port_range) else {
        out.check(
            "ephemeral ports",
            Status::Skip,
            "ip_local_port_range could not be read",
            ms,
        );
        return;
    };
    let (dest, used) = c
        .busiest_destination
        .clone()
        .unwrap_or_else(|| ("-".to_string(), 0));
    let share = used as f64 / range as f64;
    let detail = format!(
        "{used} of {range} local ports ({lo}–{hi}) held towards {dest}, {} of them in TIME_WAIT; {} sockets in TIME_WAIT in all",
        c.busiest_time_wait, c.time_wait
    );
    let status = if share >= NEAR {
        out.findings.push(
            Finding::new(
                "ephemeral-port-exhaustion",
                if share >= 0.98 { 0.9 } else { 0.7 },
                vec![host(&c.source, detail.clone())],
            )
            .confirm(format!("ss -tan state time-wait dst {dest} | wc -l")),
        );
        Status::Fail
    } else if share >= WARN {
        Status::Warn
    } else {
        Status::Pass
    };
    out.check("ephemeral ports", status, detail, ms);
}

fn conntrack(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("sysctl");
    let (Some(count), Some(max)) = (&s.sysctl.conntrack_count, &s.sysctl.conntrack_max) else {
        out.check(
            "conntrack",
            Status::Skip,
            "no connection tracking here (nf_conntrack not loaded)",
            ms,
        );
        return;
    };
    let share = count.value as f64 / max.value.max(1) as f64;
    let detail = format!(
        "{} of {} tracked connections ({}%)",
        count.value,
        max.value,
        pct(count.value as f64, max.value as f64)
    );
    let status = if share >= NEAR {
        out.findings.push(
            Finding::new(
                "conntrack-full",
                if share >= 0.98 { 0.9 } else { 0.65 },
                vec![host(&count.source, detail.clone())],
            )
            .confirm("dmesg | grep 'nf_conntrack: table full'"),
        );
        Status::Fail
    } else if share >= WARN {
        Status::Warn
    } else {
        Status::Pass
    };
    out.check("conntrack", status, detail, ms);
}

fn memory(s: &HostSnapshot, out: &mut Out) {
    let Some(m) = &s.memory else {
        out.check("memory", Status::Skip, "/proc/meminfo could not be read", 0);
        return;
    };
    let mut evidence = Vec::new();
    let low = m.available_pct < 5.0 || m.available_bytes < (64 << 20);
    let mut detail = format!(
        "{} available of {} ({}%)",
        human_bytes(m.available_bytes),
        human_bytes(m.total_bytes),
        m.available_pct
    );
    if m.swap_total_bytes > 0 {
        detail.push_str(&format!(
            ", swap {} used of {}",
            human_bytes(m.swap_used_bytes()),
            human_bytes(m.swap_total_bytes)
        ));
    }
    if low {
        evidence.push(host(&m.source, detail.clone()));
    }
    let mut stalled = false;
    if let Some(psi) = &m.psi {
        let full = psi
            .full_avg10
            .unwrap_or(0.0)
            .max(psi.full_sampled_pct.unwrap_or(0.0));
        detail.push_str(&format!(
            "; memory pressure some {}% full {}% (avg10)",
            psi.some_avg10,
            psi.full_avg10.unwrap_or(0.0)
        ));
        if full >= 5.0 || psi.some_avg10 >= 40.0 {
            stalled = true;
            evidence.push(host(
                &psi.source,
                format!(
                    "tasks stalled waiting for memory: some {}%, full {}% of the last 10 s",
                    psi.some_avg10,
                    psi.full_avg10.unwrap_or(0.0)
                ),
            ));
        }
    }
    let status = if low || stalled {
        let confidence = match (low, stalled) {
            (true, true) => 0.85,
            _ => 0.6,
        };
        out.findings.push(
            Finding::new("host-memory-exhausted", confidence, evidence)
                .confirm("free -m; ps aux --sort=-rss | head"),
        );
        Status::Fail
    } else if m.available_pct < 10.0 {
        Status::Warn
    } else {
        Status::Pass
    };
    out.check("memory", status, detail, 0);
}

fn cpu(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("samples");
    let Some(c) = &s.cpu else {
        out.check("CPU", Status::Skip, "/proc/loadavg could not be read", ms);
        return;
    };
    let per_core = c.load1 / f64::from(c.cores.max(1));
    let mut detail = format!(
        "load {} {} {} on {} CPUs",
        c.load1, c.load5, c.load15, c.cores
    );
    if let Some(busy) = c.busy_pct {
        detail.push_str(&format!(
            ", {busy}% busy over {} ms (iowait {}%, steal {}%)",
            s.sampled_ms,
            c.iowait_pct.unwrap_or(0.0),
            c.steal_pct.unwrap_or(0.0)
        ));
    }
    let mut evidence = Vec::new();
    let mut confidence: f64 = 0.0;
    if let Some(psi) = &c.psi {
        let some = psi.some_avg10.max(psi.some_sampled_pct.unwrap_or(0.0));
        detail.push_str(&format!("; CPU pressure some {}% (avg10)", psi.some_avg10));
        if some >= 50.0 {
            confidence = confidence.max(if some >= 80.0 { 0.8 } else { 0.65 });
            evidence.push(host(
                &psi.source,
                format!(
                    "runnable tasks waited for a CPU {some}% of the time (some avg10 {}%, avg60 {}%)",
                    psi.some_avg10, psi.some_avg60
                ),
            ));
        }
    }
    let busy = c.busy_pct.unwrap_or(0.0);
    if per_core >= 2.0 && busy >= 95.0 {
        confidence = confidence.max(0.6);
        evidence.push(host(
            &c.source,
            format!("load {} on {} CPUs, {busy}% busy", c.load1, c.cores),
        ));
    }
    if let Some(steal) = c.steal_pct.filter(|&st| st >= 20.0) {
        confidence = confidence.max(0.6);
        evidence.push(host(
            &c.source,
            format!("{steal}% of CPU time stolen by the hypervisor"),
        ));
    }
    let status = if confidence > 0.0 {
        out.findings.push(
            Finding::new("host-cpu-saturated", confidence, evidence)
                .confirm("top -b -n1 | head -20; cat /proc/pressure/cpu"),
        );
        Status::Fail
    } else if per_core >= 1.5 || c.psi.as_ref().is_some_and(|p| p.some_avg10 >= 20.0) {
        Status::Warn
    } else {
        Status::Pass
    };
    out.check("CPU", status, detail, ms);
}

fn disks(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("disks");
    for d in &s.disks {
        let paths: Vec<String> = d
            .paths
            .iter()
            .map(|p| format!("{} ({})", p.path.display(), p.purpose))
            .collect();
        let fs = d.fstype.as_deref().unwrap_or("file system");
        let space = format!(
            "{} free of {} ({}% used)",
            human_bytes(d.available_bytes),
            human_bytes(d.total_bytes),
            d.used_pct
        );
        let inodes = d
            .inodes_used_pct
            .map(|p| {
                format!(
                    "; inodes {} free of {} ({p}% used)",
                    d.inodes_available, d.inodes_total
                )
            })
            .unwrap_or_default();
        let detail = format!(
            "{fs} at {} holding {}: {space}{inodes}",
            d.mount_point,
            paths.join(", ")
        );
        let space_full = d.total_bytes > 0
            && (d.available_bytes == 0
                || d.used_pct >= 98.0
                || d.available_bytes < MIN_FREE_BYTES.min(d.total_bytes / 10));
        let inodes_full = d.inodes_total > 0
            && (d.inodes_available == 0 || d.inodes_used_pct.is_some_and(|p| p >= 98.0));
        let status = if space_full || inodes_full {
            let confidence =
                if d.available_bytes == 0 || (d.inodes_available == 0 && d.inodes_total > 0) {
                    0.9
                } else {
                    0.75
                };
            out.findings.push(
                Finding::new(
                    "host-disk-full",
                    confidence,
                    vec![host(&d.source, detail.clone())],
                )
                .confirm(format!("df -h {mp}; df -i {mp}", mp = d.mount_point)),
            );
            Status::Fail
        } else if d.used_pct >= 90.0 || d.inodes_used_pct.is_some_and(|p| p >= 90.0) {
            Status::Warn
        } else {
            Status::Pass
        };
        out.check(&format!("disk {}", d.mount_point), status, detail, ms);
    }
}

fn units(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("systemd");
    let Some(units) = &s.units else {
        return;
    };
    if !units.systemd_running {
        out.check(
            "systemd units",
            Status::Skip,
            "systemd does not run here",
            ms,
        );
        return;
    }
    let mut bad = Vec::new();
    for u in &units.units {
        let restarts = u.n_restarts.unwrap_or(0);
        let looping = u.active_state == "activating" && u.sub_state == "auto-restart";
        if !(u.failed() || looping || restarts >= 3) {
            continue;
        }
        let detail = format!(
            "{}: {} ({}), last result {}, restarted {restarts} times{}",
            u.id,
            u.active_state,
            u.sub_state,
            u.how_it_ended(),
            u.state_change
                .as_ref()
                .map(|t| format!(", since {t}"))
                .unwrap_or_default()
        );
        let cause = if u.role == "nginx" {
            "gateway-down"
        } else {
            "upstream-crashed"
        };
        let confidence = if u.active_state == "failed" || looping {
            0.85
        } else if u.failed() {
            0.7
        } else {
            0.55
        };
        out.findings.push(
            Finding::new(
                cause,
                confidence,
                vec![Evidence::new("host", &units.source, detail.clone())],
            )
            .confirm(format!("journalctl -u {} -n 50 --no-pager", u.id)),
        );
        bad.push(detail);
    }
    let (status, detail) = if bad.is_empty() {
        let names: Vec<&str> = units.units.iter().map(|u| u.id.as_str()).collect();
        (
            Status::Pass,
            if names.is_empty() {
                "no nginx, PHP-FPM or app units".to_string()
            } else {
                format!("{} running normally", names.join(", "))
            },
        )
    } else {
        (Status::Fail, bad.join("; "))
    };
    out.check("systemd units", status, detail, ms);
}

/// Kernel messages the signature database recognised: one finding per cause, more confident
/// the more recent the message.
fn kernel_log(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("kernel-log");
    let Some(log) = &s.kernel_log else {
        let why = s
            .unreadable
            .iter()
            .find(|u| u.what == "the kernel log")
            .map(|u| format!("could not be read: {}", u.error))
            .unwrap_or_else(|| "not read".to_string());
        out.check("kernel log", Status::Skip, why, ms);
        return;
    };
    let mut causes: Vec<(&str, Vec<&crate::collect::host::kernel_log::KernelEvent>)> = Vec::new();
    for e in &log.events {
        let Some(cause) = e.causes.first() else {
            continue;
        };
        match causes.iter_mut().find(|(c, _)| c == cause) {
            Some((_, events)) => events.push(e),
            None => causes.push((cause, vec![e])),
        }
    }
    for (cause, events) in &causes {
        let newest = events.iter().filter_map(|e| e.ago_secs).min();
        let confidence = match newest {
            None => 0.7,
            Some(a) if a <= 3600 => 0.9,
            Some(a) if a <= 86_400 => 0.75,
            Some(_) => 0.45,
        };
        let evidence = events
            .iter()
            .rev()
            .take(5)
            .map(|e| {
                let when = match (e.ago_secs, e.at_boot_secs) {
                    (Some(a), _) => format!(" ({} ago)", human_age(a)),
                    (None, Some(b)) => format!(" ({b:.0} s after boot)"),
                    _ => String::new(),
                };
                Evidence::new("kernel-log", &log.source, format!("{}{when}", e.line))
            })
            .collect();
        out.findings.push(Finding::new(cause, confidence, evidence));
    }
    let detail = if causes.is_empty() {
        format!(
            "{} lines from {}, none about a limit or a crash",
            log.lines_read, log.source
        )
    } else {
        let list: Vec<String> = causes
            .iter()
            .map(|(c, e)| format!("{c} ×{}", e.len()))
            .collect();
        format!(
            "{} lines from {}: {}",
            log.lines_read,
            log.source,
            list.join(", ")
        )
    };
    out.check(
        "kernel log",
        if causes.is_empty() {
            Status::Pass
        } else {
            Status::Fail
        },
        detail,
        ms,
    );
}

fn selinux(s: &HostSnapshot, out: &mut Out) {
    let ms = s.step_ms("selinux");
    let Some(se) = &s.selinux else {
        out.check(
            "SELinux",
            Status::Skip,
            "not enabled here (no /sys/fs/selinux)",
            ms,
        );
        return;
    };
    let blocked = se.mode == "enforcing" && se.httpd_can_network_connect == Some(false);
    let detail = format!(
        "SELinux {}, httpd_can_network_connect {}",
        se.mode,
        match se.httpd_can_network_connect {
            Some(true) => "on",
            Some(false) => "off",
            None => "unknown",
        }
    );
    if blocked && !s.nginx.is_empty() {
        out.findings.push(
            Finding::new(
                "selinux-denied",
                0.4,
                vec![host(&se.source, detail.clone())],
            )
            .confirm(
                "ausearch -m avc -ts recent -c nginx  # a denial names the port nginx dialled",
            ),
        );
    }
    out.check(
        "SELinux",
        if blocked { Status::Warn } else { Status::Pass },
        detail,
        ms,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_ages_read_like_a_person_writes_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(300 << 20), "300 MiB");
        assert_eq!(human_age(59), "59 s");
        assert_eq!(human_age(3 * 3600), "3 h");
    }
}
