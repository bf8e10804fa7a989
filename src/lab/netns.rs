//! Network namespaces the lab creates for itself: a gateway "container" with its own loopback,
//! a firewall in front of an upstream, a tiny port range. Nothing here touches the host's
//! network: every rule lives inside a namespace that is deleted when the value drops.

use std::path::PathBuf;
use std::process::Command;

/// A network namespace (`ip netns add`), deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// Creates the namespace and brings its loopback up.
    pub fn create(name: &str) -> anyhow::Result<Netns> {
        run(Command::new("ip").args(["netns", "add", name]))?;
        let ns = Netns {
            name: name.to_string(),
        };
        ns.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// A command that runs `program` inside the namespace (`ip netns exec` execs it, so the
    /// child's pid is the program's own).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a command inside the namespace and waits for it to succeed.
    pub fn exec(&self, argv: &[&str]) -> anyhow::Result<()> {
        let mut c = self.command(argv[0]);
        c.args(&argv[1..]);
        run(&mut c)
    }

    /// Runs `f` on a thread that has entered the namespace: sockets it creates live there.
    pub fn enter<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> anyhow::Result<T> {
        let path = PathBuf::from("/var/run/netns").join(&self.name);
        let handle = std::thread::spawn(move || -> anyhow::Result<T> {
            use std::os::fd::AsRawFd;
            let file = std::fs::File::open(&path)?;
            // SAFETY: setns(2) with a namespace file descriptor; it affects only this thread.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            Ok(f())
        });
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("thread in namespace {} panicked", self.name))?
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Whether namespaces can be made here (root, iproute2), and why not.
pub fn unavailable_reason() -> Option<String> {
    if !super::process::is_root() {
        return Some("network namespaces need root".into());
    }
    if !super::process::have_program("ip") {
        return Some("iproute2's `ip` is not installed".into());
    }
    None
}

fn run(command: &mut Command) -> anyhow::Result<()> {
    let out = command.output()?;
    if !out.status.success() {
        anyhow::bail!(
            "{:?} failed: {}",
            command,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}
