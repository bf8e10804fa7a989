//! The systemd state of the units on the request path: nginx, PHP-FPM and the app servers'
//! units (found from the processes' cgroups). A unit that failed, or that systemd restarted
//! many times, is an upstream that crashed (or a gateway that is down), which a 502 alone does
//! not say.
//!
//! From `systemctl show -p … UNIT…` on the live machine when systemd runs (`/run/systemd/system`
//! exists, as `sd_booted()` checks), or from a captured `systemctl show` output.

use super::processes::{Discovery, ProcessTable};
use super::{GapKind, Gaps, HostRoot, SystemdSource};
use serde::Serialize;
use std::time::Duration;

/// The properties asked for.
const PROPERTIES: &str = "Id,Description,LoadState,ActiveState,SubState,Result,NRestarts,MainPID,ExecMainCode,ExecMainStatus,ActiveEnterTimestamp,InactiveEnterTimestamp,StateChangeTimestamp";

#[derive(Debug, Clone, Serialize)]
pub struct Units {
    /// `systemctl show`, or the captured file.
    pub source: String,
    /// False when systemd does not run here (a container, a VM booted without it).
    pub systemd_running: bool,
    pub units: Vec<Unit>,
}

/// One unit's state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub id: String,
    /// `nginx`, `php-fpm` or `app`: what the unit runs.
    pub role: String,
    pub description: Option<String>,
    pub load_state: String,
    /// `active`, `inactive`, `failed`, `activating` (a restart loop sits here) …
    pub active_state: String,
    pub sub_state: String,
    /// `success`, `exit-code`, `signal`, `core-dump`, `timeout`, `oom-kill` …
    pub result: String,
    pub n_restarts: Option<u64>,
    pub main_pid: Option<u32>,
    /// How the main process last ended: `exited`, `killed`, `dumped`.
    pub exec_main_code: Option<String>,
    pub exec_main_status: Option<i64>,
    pub state_change: Option<String>,
}

impl Unit {
    /// Failed, or its last run ended badly.
    pub fn failed(&self) -> bool {
        self.active_state == "failed" || (!self.result.is_empty() && self.result != "success")
    }

    /// How the last run ended, in systemd's words: "exit-code (status 1)", "signal (SEGV)".
    pub fn how_it_ended(&self) -> String {
        let mut s = self.result.clone();
        if let (Some(code), Some(status)) = (&self.exec_main_code, self.exec_main_status) {
            if code != "0" && !(code == "exited" && status == 0) {
                s.push_str(&format!(" ({code}, status {status})"));
            }
        }
        s
    }
}

/// What a unit runs, from its name.
pub fn role_of_unit(id: &str) -> &'static str {
    let lower = id.to_ascii_lowercase();
    if lower.contains("nginx") || lower.contains("openresty") {
        "nginx"
    } else if lower.contains("fpm") {
        "php-fpm"
    } else {
        "app"
    }
}

/// Parses `systemctl show` output: `Key=value` lines, units separated by a blank line.
pub fn parse_show(text: &str) -> Vec<Unit> {
    let mut units = Vec::new();
    for block in text.split("\n\n") {
        let get = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix('='))
                    .map(str::to_string)
            })
        };
        let Some(id) = get("Id") else { continue };
        let nonempty = |v: Option<String>| v.filter(|s| !s.is_empty());
        units.push(Unit {
            role: role_of_unit(&id).to_string(),
            description: nonempty(get("Description")),
            load_state: get("LoadState").unwrap_or_default(),
            active_state: get("ActiveState").unwrap_or_default(),
            sub_state: get("SubState").unwrap_or_default(),
            result: get("Result").unwrap_or_default(),
            n_restarts: get("NRestarts").and_then(|v| v.parse().ok()),
            main_pid: get("MainPID")
                .and_then(|v| v.parse().ok())
                .filter(|&p| p != 0),
            exec_main_code: nonempty(get("ExecMainCode")),
            exec_main_status: get("ExecMainStatus").and_then(|v| v.parse().ok()),
            state_change: nonempty(get("StateChangeTimestamp"))
                .or_else(|| nonempty(get("InactiveEnterTimestamp"))),
            id,
        });
    }
    units
}

pub fn collect(
    root: &HostRoot,
    source: &SystemdSource,
    table: &ProcessTable,
    discovery: &Discovery,
    gaps: &mut Gaps,
) -> Option<Units> {
    match source {
        SystemdSource::Off => None,
        SystemdSource::Captured(path) => match super::read_bounded(path, 16 << 20) {
            Ok(text) => Some(Units {
                source: path.display().to_string(),
                systemd_running: true,
                units: parse_show(&text),
            }),
            Err(e) => {
                gaps.io("systemd unit states", path, &e);
                None
            }
        },
        SystemdSource::Live => {
            if !root.is_live() {
                return None;
            }
            if !root.path("/run/systemd/system").exists() || !super::have_program("systemctl") {
                return Some(Units {
                    source: "systemctl".to_string(),
                    systemd_running: false,
                    units: Vec::new(),
                });
            }
            live(table, discovery, gaps)
        }
    }
}

fn live(table: &ProcessTable, discovery: &Discovery, gaps: &mut Gaps) -> Option<Units> {
    let timeout = Duration::from_millis(500);
    let mut names: Vec<String> = Vec::new();
    let patterns = [
        "list-units",
        "--all",
        "--plain",
        "--no-legend",
        "--no-pager",
        "--type=service",
        "nginx*",
        "openresty*",
        "php*-fpm*",
        "gunicorn*",
        "uwsgi*",
    ];
    match super::run_command("systemctl", &patterns, timeout, 1 << 20, false) {
        Ok(text) => {
            for line in text.lines() {
                if let Some(name) = line.split_whitespace().next() {
                    names.push(name.trim_start_matches('●').to_string());
                }
            }
        }
        Err(e) => gaps.add(
            "systemd unit list",
            "systemctl list-units",
            e.kind,
            e.message,
        ),
    }
    for p in &discovery.processes {
        if let Some(unit) = p.unit.as_ref().filter(|u| u.ends_with(".service")) {
            names.push(unit.clone());
        }
    }
    for app in &discovery.app_servers {
        if let Some(unit) = table.get(app.pid).and_then(|e| e.unit.clone()) {
            names.push(unit);
        }
    }
    names.retain(|n| !n.is_empty() && !n.starts_with("user@") && !n.starts_with("session-"));
    names.sort();
    names.dedup();
    if names.is_empty() {
        return Some(Units {
            source: "systemctl".to_string(),
            systemd_running: true,
            units: Vec::new(),
        });
    }
    let mut args = vec!["show", "--no-pager", "-p", PROPERTIES, "--"];
    args.extend(names.iter().map(String::as_str));
    match super::run_command("systemctl", &args, timeout, 4 << 20, false) {
        Ok(text) => Some(Units {
            source: format!("systemctl show {}", names.join(" ")),
            systemd_running: true,
            units: parse_show(&text)
                .into_iter()
                .filter(|u| u.load_state != "not-found")
                .collect(),
        }),
        Err(e) => {
            gaps.add(
                "systemd unit states",
                "systemctl show",
                if e.kind == GapKind::TimedOut {
                    GapKind::TimedOut
                } else {
                    GapKind::CommandFailed
                },
                e.message,
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn show_blocks_become_units() {
        let text = "Id=nginx.service\nLoadState=loaded\nActiveState=active\nSubState=running\nResult=success\nNRestarts=0\nMainPID=812\nExecMainCode=0\nExecMainStatus=0\n\nId=myapp.service\nLoadState=loaded\nActiveState=failed\nSubState=failed\nResult=core-dump\nNRestarts=5\nMainPID=0\nExecMainCode=dumped\nExecMainStatus=11\n";
        let units = parse_show(text);
        assert_eq!(units.len(), 2);
        assert!(!units[0].failed());
        assert_eq!(units[0].role, "nginx");
        assert_eq!(units[0].main_pid, Some(812));
        assert!(units[1].failed());
        assert_eq!(units[1].role, "app");
        assert_eq!(units[1].how_it_ended(), "core-dump (dumped, status 11)");
    }
}
