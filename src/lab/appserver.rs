//! Real Python app servers for the lab: gunicorn (worker timeout) and uWSGI (its binary
//! protocol, its request buffer), serving a tiny WSGI app from the scenario's directory.

use super::process::{have_program, wait_until, LabProcess};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// The lab's WSGI app: `/slow?s=N` sleeps N seconds, everything else answers "ok".
const APP: &str = r#"import time
from urllib.parse import parse_qs

def app(environ, start_response):
    if environ.get("PATH_INFO", "").startswith("/slow"):
        seconds = float(parse_qs(environ.get("QUERY_STRING", "")).get("s", ["3"])[0])
        time.sleep(min(seconds, 30))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok\n"]

application = app
"#;

/// Which app server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// gunicorn with `--timeout` seconds.
    Gunicorn { timeout: u32 },
    /// uWSGI speaking its binary protocol on a TCP socket, with `--buffer-size`.
    Uwsgi { buffer_size: u32 },
}

impl Kind {
    pub fn program(self) -> &'static str {
        match self {
            Kind::Gunicorn { .. } => "gunicorn",
            Kind::Uwsgi { .. } => "uwsgi",
        }
    }
}

/// A running app server.
#[derive(Debug)]
pub struct AppServer {
    pub log: PathBuf,
    pub addr: SocketAddr,
    process: LabProcess,
}

/// Why the app server cannot run here, if it cannot.
pub fn unavailable_reason(kind: Kind) -> Option<String> {
    if !have_program(kind.program()) {
        return Some(format!("{} is not installed", kind.program()));
    }
    if let Kind::Uwsgi { .. } = kind {
        if !Path::new("/usr/lib/uwsgi/plugins/python3_plugin.so").exists() {
            return Some("uWSGI's python3 plugin is not installed (uwsgi-plugin-python3)".into());
        }
    }
    None
}

impl AppServer {
    pub fn start(dir: &Path, kind: Kind, addr: SocketAddr) -> anyhow::Result<AppServer> {
        let app_dir = dir.join("app");
        std::fs::create_dir_all(&app_dir)?;
        std::fs::write(app_dir.join("labapp.py"), APP)?;
        let log = dir.join(format!("{}.log", kind.program()));
        let mut command = Command::new(kind.program());
        let signal = match kind {
            Kind::Gunicorn { timeout } => {
                command
                    .arg("--bind")
                    .arg(addr.to_string())
                    .args([
                        "--workers",
                        "1",
                        "--timeout",
                        &timeout.to_string(),
                        "--graceful-timeout",
                        "1",
                        "--chdir",
                    ])
                    .arg(&app_dir)
                    .arg("labapp:app");
                libc::SIGTERM
            }
            Kind::Uwsgi { buffer_size } => {
                command
                    .args(["--plugin", "python3", "--socket"])
                    .arg(addr.to_string())
                    .arg("--chdir")
                    .arg(&app_dir)
                    .args([
                        "--module",
                        "labapp:application",
                        "--buffer-size",
                        &buffer_size.to_string(),
                        "--processes",
                        "1",
                        "--die-on-term",
                    ]);
                if super::process::is_root() {
                    command.args(["--uid", "www-data", "--gid", "www-data"]);
                }
                libc::SIGTERM
            }
        };
        let mut process = LabProcess::spawn(kind.program(), command, &log, signal)?;
        let up = wait_until(Duration::from_secs(15), || {
            !process.is_running()
                || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
        if !up || !process.is_running() {
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            anyhow::bail!("{} did not start: {}", kind.program(), out.trim());
        }
        Ok(AppServer { log, addr, process })
    }

    pub fn log_lines(&self) -> Vec<String> {
        super::nginx::read_lines(&self.log)
    }

    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(3));
    }
}
