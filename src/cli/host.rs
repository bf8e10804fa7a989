//! `gwdoctor host`: the machine's limits that turn into 502s, and who listens where.
//!
//! One collection (`collect::host`), the host rules (`rules::host`), and a report: the findings
//! first, then who listens where, the processes on the request path, every check with its
//! numbers, and what could not be read with the reason and what would let it be read.

use super::{Common, Failure};
use gwdoctor::collect::host::{
    self, GapKind, HostOptions, HostSnapshot, Role, SystemdSource, WatchedPath,
};
use gwdoctor::findings::{Check, Finding};
use gwdoctor::i18n::Lang;
use gwdoctor::redact::redact;
use gwdoctor::report::findings::{check_json, checks_text, finding_json, finding_text};
use gwdoctor::report::text::{styled, table, BOLD, DIM};
use gwdoctor::report::Format;
use gwdoctor::rules::host::{findings, human_bytes};
use serde_json::json;
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct HostArgs {
    /// A path whose file system must have room: a log file, a temp path (proxy_temp …), a
    /// socket directory. Repeatable. The directories of listening unix sockets, the nginx
    /// prefix, /var/log and /tmp are looked at anyway.
    #[arg(long = "path", value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Read /proc, /sys and /dev/kmsg under this directory instead of / (a captured tree).
    #[arg(long, value_name = "DIR", default_value = "/")]
    root: PathBuf,
    /// Milliseconds between the two samples of the rate counters (CPU, pressure,
    /// ListenOverflows).
    #[arg(long, value_name = "MS", default_value_t = 200,
          value_parser = clap::value_parser!(u64).range(10..=10_000))]
    interval: u64,
    /// Read the unit states from this captured `systemctl show` output instead of systemctl.
    #[arg(long, value_name = "FILE")]
    systemctl_show: Option<PathBuf>,
    /// Do not read the kernel log.
    #[arg(long)]
    no_kernel_log: bool,
}

/// Exit status: 0 when no limit is reached, 1 when there are findings.
pub fn run(common: &Common, args: HostArgs) -> Result<u8, Failure> {
    if !args.root.join("proc").is_dir() {
        return Err(Failure::Usage(format!(
            "host: --root {}: there is no proc/ directory under it",
            args.root.display()
        )));
    }
    if let Some(file) = &args.systemctl_show {
        if !file.is_file() {
            return Err(Failure::Usage(format!(
                "host: --systemctl-show {}: not a readable file",
                file.display()
            )));
        }
    }
    let options = HostOptions {
        root: args.root.clone(),
        paths: args
            .paths
            .iter()
            .map(|p| WatchedPath::new(p, "given"))
            .collect(),
        sample_interval: Duration::from_millis(args.interval),
        kernel_log: !args.no_kernel_log,
        systemd: match &args.systemctl_show {
            Some(file) => SystemdSource::Captured(file.clone()),
            None => SystemdSource::Live,
        },
        worker_connections: None,
    };
    let snapshot = host::collect(&options);
    let (found, checks) = findings(&snapshot);
    let lang = common.lang();
    let rendered = match common.format {
        Format::Json => {
            let value = json!({
                "healthy": found.is_empty(),
                "findings": found.iter().map(|f| finding_json(f, lang)).collect::<Vec<_>>(),
                "checks": checks.iter().map(check_json).collect::<Vec<_>>(),
                "host": snapshot,
            });
            let mut s =
                serde_json::to_string_pretty(&value).map_err(|e| Failure::Internal(e.into()))?;
            s.push('\n');
            s
        }
        Format::Text => text(&snapshot, &found, &checks, lang),
        Format::Markdown | Format::Html | Format::Crossplane => {
            return Err(Failure::Usage("host: --format takes text or json".into()));
        }
    };
    common.print(&rendered)?;
    Ok(if found.is_empty() { 0 } else { 1 })
}

/// A label in the user's language.
fn t(lang: Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

fn advice(lang: Lang, kind: GapKind) -> &'static str {
    // SAFETY: geteuid(2) cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    match kind {
        GapKind::PermissionDenied if root => t(
            lang,
            "refused even to root: the process forbids inspection (ptrace protection, a sandbox \
             or another PID namespace)",
            "即使 root 也被拒绝：该进程禁止被检查（ptrace 保护、沙箱或位于其他 PID 命名空间）",
        ),
        GapKind::PermissionDenied => t(
            lang,
            "only root (or the owner) may read it: run `sudo gwdoctor host` for the detail",
            "只有 root（或其属主）可以读取：运行 `sudo gwdoctor host` 查看详情",
        ),
        GapKind::Missing => t(lang, "not present on this system", "本系统上不存在"),
        GapKind::Malformed => t(lang, "read, but could not be parsed", "已读取，但无法解析"),
        GapKind::CommandFailed => t(
            lang,
            "the command is missing or failed",
            "命令不存在或执行失败",
        ),
        GapKind::TimedOut => t(lang, "took too long and was stopped", "耗时过长，已中止"),
    }
}

fn role_name(lang: Lang, role: Role) -> &'static str {
    match role {
        Role::NginxMaster => t(lang, "nginx master", "nginx 主进程"),
        Role::NginxWorker => t(lang, "nginx worker", "nginx 工作进程"),
        Role::NginxHelper => t(lang, "nginx cache", "nginx 缓存进程"),
        Role::FpmMaster => t(lang, "PHP-FPM master", "PHP-FPM 主进程"),
        Role::FpmWorker => t(lang, "PHP-FPM worker", "PHP-FPM 工作进程"),
        Role::AppServer => t(lang, "app server", "应用服务器"),
        Role::AppWorker => t(lang, "app worker", "应用工作进程"),
        Role::Other => t(lang, "other", "其他"),
    }
}

/// A Unix time as `2024-05-02 14:02:11 UTC`.
fn when(unix: Option<u64>) -> String {
    unix.and_then(|s| time::OffsetDateTime::from_unix_timestamp(s as i64).ok())
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|| "?".to_string())
}

/// The most rows a table shows; JSON lists everything.
const MAX_ROWS: usize = 40;

fn text(s: &HostSnapshot, found: &[Finding], checks: &[Check], lang: Lang) -> String {
    let mut out = String::new();
    let cores = s.cpu.as_ref().map(|c| c.cores).unwrap_or(0);
    let _ = writeln!(
        out,
        "{} {}  {}",
        styled(BOLD, t(lang, "Host", "主机")),
        s.hostname.as_deref().unwrap_or("?"),
        styled(
            DIM,
            &format!(
                "Linux {} · {cores} CPU · {} ms ({} ms {})",
                s.kernel.as_deref().unwrap_or("?"),
                s.elapsed_ms,
                s.sampled_ms,
                t(lang, "between samples", "采样间隔")
            )
        )
    );
    if !s.live {
        let _ = writeln!(
            out,
            "  {} {}",
            t(lang, "captured tree:", "采集的目录树："),
            s.root
        );
    }
    out.push('\n');

    if found.is_empty() {
        let _ = writeln!(
            out,
            "{}\n",
            styled(
                BOLD,
                t(
                    lang,
                    "No limit of this host is reached.",
                    "本机没有达到任何资源上限。"
                )
            )
        );
    } else {
        let _ = writeln!(out, "{}", styled(BOLD, t(lang, "Findings", "发现的问题")));
        for f in found {
            finding_text(&mut out, f, lang);
        }
        out.push('\n');
    }

    listeners_text(&mut out, s, lang);
    processes_text(&mut out, s, lang);

    let _ = writeln!(out, "{}", styled(BOLD, t(lang, "Checks", "检查项")));
    checks_text(&mut out, checks);

    if !s.unreadable.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            styled(BOLD, t(lang, "Could not read", "无法读取"))
        );
        for u in &s.unreadable {
            let _ = writeln!(out, "  - {} ({}): {}", u.what, u.path, u.error);
            let _ = writeln!(out, "    {}", styled(DIM, advice(lang, u.kind)));
        }
    }
    out
}

fn listeners_text(out: &mut String, s: &HostSnapshot, lang: Lang) {
    let _ = writeln!(
        out,
        "{}",
        styled(BOLD, t(lang, "Who listens where", "谁在监听哪里"))
    );
    if s.listeners.is_empty() {
        let _ = writeln!(
            out,
            "  {}\n",
            t(lang, "no listening sockets found", "没有找到监听套接字")
        );
        return;
    }
    let width = s
        .listeners
        .iter()
        .take(MAX_ROWS)
        .map(|l| l.addr.chars().count())
        .max()
        .unwrap_or(10)
        .clamp(10, 48);
    let header = format!(
        "{:<width$}  {:>7}  {:<16}  {}",
        t(lang, "ADDRESS", "地址"),
        "PID",
        t(lang, "PROCESS", "进程"),
        t(lang, "QUEUE/BACKLOG", "队列/积压上限")
    );
    table(out, &header, &s.listeners, MAX_ROWS, lang, |l| {
        let queue = match (l.queue, l.backlog) {
            (Some(q), Some(b)) => format!("{q}/{b}{}", if q > b { "  ← FULL" } else { "" }),
            (Some(q), None) => format!("{q}/?"),
            _ => "-".to_string(),
        };
        let mut addr: String = l.addr.chars().take(width).collect();
        if l.addr.chars().count() > width {
            addr.pop();
            addr.push('…');
        }
        format!(
            "{addr:<width$}  {:>7}  {:<16}  {queue}",
            l.pid.map(|p| p.to_string()).unwrap_or_else(|| "?".into()),
            l.process_name.as_deref().unwrap_or("?"),
        )
    });
    if s.listeners.iter().any(|l| l.pid.is_none()) {
        let note = if s.live {
            t(
                lang,
                "? = no process found holding the socket (another user's, or in another PID namespace)",
                "? = 没有找到持有该套接字的进程（属于其他用户，或位于其他 PID 命名空间）",
            )
        } else {
            t(
                lang,
                "? = the process holding the socket is not in the captured tree",
                "? = 持有该套接字的进程不在采集的目录树中",
            )
        };
        let _ = writeln!(out, "  {}", styled(DIM, note));
    }
    out.push('\n');
}

fn processes_text(out: &mut String, s: &HostSnapshot, lang: Lang) {
    if s.processes.is_empty() && s.nginx.is_empty() && s.fpm.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "{}",
        styled(
            BOLD,
            t(lang, "Processes on the request path", "请求路径上的进程")
        )
    );
    for m in &s.nginx {
        let conf = m
            .conf_path
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "  nginx {} {}: {conf} ({}), {} {}, {} {}",
            t(lang, "master", "主进程"),
            m.pid,
            m.conf_source,
            m.workers.len(),
            t(lang, "workers", "个工作进程"),
            t(lang, "started", "启动于"),
            when(m.started_at)
        );
        if let (Some(wc), Some(src)) = (m.worker_connections, &m.worker_connections_source) {
            let _ = writeln!(out, "    worker_connections {wc} ({src})");
        }
    }
    for m in &s.fpm {
        let conf = m
            .conf_path
            .as_ref()
            .map(|c| c.display().to_string())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "  {} {} {}: {conf}, {} {}, {} {}",
            m.name,
            t(lang, "master", "主进程"),
            m.pid,
            t(lang, "pools", "进程池"),
            m.pools.join(", "),
            m.workers.len(),
            t(lang, "workers", "个工作进程"),
        );
    }
    for a in &s.app_servers {
        let _ = writeln!(
            out,
            "  {} {} ({}): {} {}, {} {}{}",
            a.kind,
            a.pid,
            a.name,
            t(lang, "listens on", "监听"),
            a.listens.join(", "),
            a.workers.len(),
            t(lang, "workers", "个工作进程"),
            a.unit
                .as_ref()
                .map(|u| format!(", {u}"))
                .unwrap_or_default()
        );
    }
    let header = format!(
        "{:>7}  {:<16}  {:<16}  {:>13}  {:>7}  {:>9}",
        "PID",
        t(lang, "ROLE", "角色"),
        t(lang, "NAME", "名称"),
        t(lang, "FDS/LIMIT", "描述符/上限"),
        t(lang, "THREADS", "线程"),
        "RSS"
    );
    table(out, &header, &s.processes, MAX_ROWS, lang, |p| {
        let fds = match (p.fds, p.fd_soft_limit) {
            (Some(f), Some(l)) => format!("{f}/{l}"),
            (None, Some(l)) => format!("?/{l}"),
            (Some(f), None) => format!("{f}/∞"),
            (None, None) => "?".to_string(),
        };
        let name: String = redact(&p.name).chars().take(16).collect();
        format!(
            "{:>7}  {:<16}  {:<16}  {:>13}  {:>7}  {:>9}",
            p.pid,
            role_name(lang, p.role),
            name,
            fds,
            p.threads,
            p.rss_bytes.map(human_bytes).unwrap_or_else(|| "?".into())
        )
    });
    out.push('\n');
}
