//! A real nginx (the system's binary) run by the lab: its own prefix, configuration, pid file and
//! logs in the scenario's directory, in the foreground (`daemon off`) as a child of the lab so
//! that it is stopped by pid.

use super::netns::Netns;
use super::process::{wait_until, LabProcess};
use std::fmt::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The nginx binary the lab runs.
pub const NGINX: &str = "nginx";

/// The access-log format of the lab: combined, plus what a 502 hunt needs.
pub const LAB_LOG_FORMAT: &str = r#"$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent "$http_referer" "$http_user_agent" upstream_addr="$upstream_addr" upstream_status="$upstream_status" upstream_response_time="$upstream_response_time" request_time=$request_time"#;

/// The scenario-specific parts of an nginx configuration.
#[derive(Debug, Clone, Default)]
pub struct NginxParts {
    /// Main-context directives (e.g. `worker_rlimit_nofile`).
    pub main: String,
    /// `events {}` directives; `worker_connections 256;` when empty.
    pub events: String,
    /// http-context directives (upstream blocks, resolver …).
    pub http: String,
    /// The body of the lab's `server {}` (locations).
    pub server: String,
}

/// A running nginx.
#[derive(Debug)]
pub struct Nginx {
    pub conf: PathBuf,
    pub error_log: PathBuf,
    pub access_log: PathBuf,
    pub listen: SocketAddr,
    process: LabProcess,
}

/// Renders the whole configuration for a prefix directory.
pub fn render(dir: &Path, listen: SocketAddr, parts: &NginxParts) -> String {
    let d = dir.display();
    let mut conf = String::new();
    let _ = writeln!(conf, "# gwdoctor lab: rendered for one scenario run");
    if super::process::is_root() {
        // Workers drop to www-data, as on a Debian install, so socket permissions matter.
        let _ = writeln!(conf, "user www-data www-data;");
    }
    let _ = writeln!(
        conf,
        "worker_processes 1;\npid {d}/nginx.pid;\nerror_log {d}/error.log warn;"
    );
    conf.push_str(&parts.main);
    let events = if parts.events.is_empty() {
        "worker_connections 256;"
    } else {
        parts.events.as_str()
    };
    let _ = writeln!(conf, "events {{ {events} }}");
    let _ = writeln!(
        conf,
        "http {{\n  log_format lab '{LAB_LOG_FORMAT}';\n  access_log {d}/access.log lab;\n  \
         client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  fastcgi_temp_path {d}/tmp/fastcgi;\n  \
         uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n  proxy_connect_timeout 2s;\n  \
         proxy_read_timeout 5s;\n  fastcgi_read_timeout 5s;\n  uwsgi_read_timeout 5s;"
    );
    conf.push_str(&parts.http);
    let _ = writeln!(
        conf,
        "  server {{\n    listen {listen};\n    server_name lab.test;"
    );
    conf.push_str(&parts.server);
    conf.push_str("  }\n}\n");
    conf
}

impl Nginx {
    /// Writes the configuration into `dir`, starts nginx (inside `netns` when given) and waits
    /// until it listens or exits. An nginx that refuses to start is returned too (check
    /// [`Nginx::is_running`]): that is the gateway-down scenario.
    pub fn start(
        dir: &Path,
        listen: SocketAddr,
        parts: &NginxParts,
        netns: Option<&Netns>,
    ) -> anyhow::Result<Nginx> {
        std::fs::create_dir_all(dir.join("tmp"))?;
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, render(dir, listen, parts))?;
        let error_log = dir.join("error.log");
        let mut command = match netns {
            Some(ns) => ns.command(NGINX),
            None => Command::new(NGINX),
        };
        command
            .arg("-p")
            .arg(dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(&error_log)
            .args(["-g", "daemon off;"]);
        let mut process =
            LabProcess::spawn("nginx", command, &dir.join("nginx.out"), libc::SIGTERM)?;
        // The master writes its pid file after it has opened the listening sockets.
        let pid_file = dir.join("nginx.pid");
        wait_until(Duration::from_secs(10), || {
            !process.is_running()
                || std::fs::read_to_string(&pid_file).is_ok_and(|p| !p.trim().is_empty())
        });
        Ok(Nginx {
            conf,
            error_log,
            access_log: dir.join("access.log"),
            listen,
            process,
        })
    }

    pub fn is_running(&mut self) -> bool {
        self.process.is_running()
    }

    pub fn pid(&self) -> u32 {
        self.process.pid()
    }

    /// The error log's lines (and what nginx printed on its own stderr before it had a log).
    pub fn error_lines(&self) -> Vec<String> {
        let mut lines = read_lines(&self.error_log);
        lines.extend(read_lines(&self.process.output));
        lines
    }

    pub fn access_lines(&self) -> Vec<String> {
        read_lines(&self.access_log)
    }

    /// Stops nginx by pid and waits for it (and its workers) to be gone.
    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(3));
    }
}

/// The lines of a text file; empty when it does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read(path)
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}
