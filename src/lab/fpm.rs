//! Real PHP-FPM pools for the lab's PHP-FPM failures: a master with its own configuration, pid
//! and log in the scenario's directory, in the foreground, stopped by pid.

use super::process::{have_program, wait_until, LabProcess};
use std::fmt::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One pool of the lab's PHP-FPM.
#[derive(Debug, Clone)]
pub struct Pool {
    pub name: &'static str,
    /// Where it listens: a socket path.
    pub socket: PathBuf,
    /// `listen.mode`; `listen.owner`/`listen.group` are root when this is tighter than 0666.
    pub mode: u32,
    pub max_children: u32,
    /// `listen.backlog`.
    pub backlog: i32,
    /// `request_terminate_timeout` in seconds; 0 = off.
    pub terminate_after: u32,
}

impl Pool {
    pub fn new(socket: PathBuf) -> Pool {
        Pool {
            name: "www",
            socket,
            mode: 0o666,
            max_children: 2,
            backlog: 511,
            terminate_after: 0,
        }
    }
}

/// The PHP scripts the lab serves: `ok.php` answers at once, `sleep.php?s=N` sleeps N seconds.
pub const SCRIPTS: &[(&str, &str)] = &[
    ("ok.php", "<?php echo \"ok\\n\";\n"),
    (
        "sleep.php",
        "<?php sleep((int)($_GET['s'] ?? 3)); echo \"slept\\n\";\n",
    ),
];

/// A running PHP-FPM master.
#[derive(Debug)]
pub struct PhpFpm {
    pub log: PathBuf,
    pub docroot: PathBuf,
    process: LabProcess,
}

/// The PHP-FPM binary: `php-fpm` or Debian's versioned `php-fpmX.Y` in /usr/sbin.
pub fn binary() -> Option<PathBuf> {
    if have_program("php-fpm") {
        return Some(PathBuf::from("php-fpm"));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/sbin")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("php-fpm"))
        })
        .collect();
    found.sort();
    found.pop()
}

impl PhpFpm {
    /// Writes the configuration and scripts into `dir` and starts the master; waits until every
    /// pool's socket exists.
    pub fn start(dir: &Path, pools: &[Pool]) -> anyhow::Result<PhpFpm> {
        let bin = binary().ok_or_else(|| anyhow::anyhow!("PHP-FPM is not installed"))?;
        let docroot = dir.join("www");
        std::fs::create_dir_all(&docroot)?;
        for (name, body) in SCRIPTS {
            std::fs::write(docroot.join(name), body)?;
        }
        let log = dir.join("php-fpm.log");
        let d = dir.display();
        let mut conf = format!(
            "[global]\npid = {d}/php-fpm.pid\nerror_log = {}\nlog_level = notice\ndaemonize = no\n",
            log.display()
        );
        let root = super::process::is_root();
        for pool in pools {
            let _ = write!(
                conf,
                "\n[{name}]\nlisten = {socket}\nlisten.mode = {mode:04o}\nlisten.backlog = {backlog}\n\
                 pm = static\npm.max_children = {children}\nrequest_terminate_timeout = {term}\n\
                 catch_workers_output = yes\n",
                name = pool.name,
                socket = pool.socket.display(),
                mode = pool.mode,
                backlog = pool.backlog,
                children = pool.max_children,
                term = pool.terminate_after,
            );
            if root {
                let _ = writeln!(
                    conf,
                    "user = www-data\ngroup = www-data\nlisten.owner = root\nlisten.group = root"
                );
            }
        }
        let conf_path = dir.join("php-fpm.conf");
        std::fs::write(&conf_path, conf)?;
        let mut command = Command::new(bin);
        command
            .arg("--nodaemonize")
            .arg("--fpm-config")
            .arg(&conf_path)
            .arg("--prefix")
            .arg(dir);
        if root {
            command.arg("--allow-to-run-as-root");
        }
        let mut process =
            LabProcess::spawn("php-fpm", command, &dir.join("php-fpm.out"), libc::SIGQUIT)?;
        let ready = wait_until(Duration::from_secs(10), || {
            !process.is_running() || pools.iter().all(|p| p.socket.exists())
        });
        if !ready || !process.is_running() {
            let out = std::fs::read_to_string(dir.join("php-fpm.out")).unwrap_or_default();
            anyhow::bail!("PHP-FPM did not start: {}", out.trim());
        }
        Ok(PhpFpm {
            log,
            docroot,
            process,
        })
    }

    pub fn log_lines(&self) -> Vec<String> {
        let mut lines = super::nginx::read_lines(&self.log);
        lines.extend(super::nginx::read_lines(&self.process.output));
        lines
    }

    pub fn stop(mut self) {
        self.process.stop(Duration::from_secs(3));
    }
}
