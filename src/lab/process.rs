//! Child processes of the lab (nginx, PHP-FPM, gunicorn, uWSGI): started in their own process
//! group with output to files, and always stopped by pid: a polite signal first, then SIGKILL to
//! the whole group, so that no worker outlives its master.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A started child process, stopped when dropped.
#[derive(Debug)]
pub struct LabProcess {
    pub name: String,
    child: std::process::Child,
    /// Where its stdout and stderr go.
    pub output: PathBuf,
    stop_signal: libc::c_int,
    stopped: bool,
}

impl LabProcess {
    /// Starts `command` with stdin closed and stdout/stderr appended to `output`, in a new
    /// process group. `stop_signal` is what asks it to finish (SIGTERM for nginx: fast shutdown;
    /// SIGQUIT for PHP-FPM: graceful; SIGINT for uWSGI).
    pub fn spawn(
        name: &str,
        mut command: Command,
        output: &Path,
        stop_signal: libc::c_int,
    ) -> std::io::Result<LabProcess> {
        use std::os::unix::process::CommandExt;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(output)?;
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command.spawn()?;
        Ok(LabProcess {
            name: name.to_string(),
            child,
            output: output.to_path_buf(),
            stop_signal,
            stopped: false,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Its exit status, if it has exited.
    pub fn exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Asks the process to stop, waits up to `grace`, then kills its whole group.
    pub fn stop(&mut self, grace: Duration) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let pid = self.child.id() as libc::pid_t;
        if self.is_running() {
            // SAFETY: kill(2) on a pid this process spawned and has not reaped yet.
            unsafe { libc::kill(pid, self.stop_signal) };
            let deadline = Instant::now() + grace;
            while self.is_running() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        // The group id is the pid (process_group(0)); this also ends workers left behind.
        // SAFETY: killpg(2) on the group this process created for the child.
        unsafe { libc::killpg(pid, libc::SIGKILL) };
        let _ = self.child.wait();
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        self.stop(Duration::from_secs(3));
    }
}

/// Waits until `ready` holds, polling every 10 ms, for at most `timeout`.
pub fn wait_until(timeout: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// True when `program` is found on PATH (or is an existing path).
pub fn have_program(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}

/// True when this process runs as root (needed for network namespaces and for nginx's
/// worker user to differ from the socket owner).
pub fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail.
    unsafe { libc::geteuid() == 0 }
}
