//! The bench of one scenario run: its directory, its loopback address, and everything started for
//! it (upstreams, DNS responder, PHP-FPM, app servers, a network namespace). Dropping the bench
//! stops every process by pid and removes every file.

use super::appserver::{self, AppServer};
use super::dns::{self, DnsMode, DnsServer};
use super::fpm::{PhpFpm, Pool};
use super::netns::Netns;
use super::tls::{self, CertKind, LabCa};
use super::upstream::{self, Behaviour, Bind, Upstream};
use std::any::Any;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Where every scenario's own loopback address comes from: 127.77.X.Y, one per run in this
/// process, so that parallel runs never share a port.
static NEXT_ADDRESS: AtomicUsize = AtomicUsize::new(0);

/// The name a scenario's upstream resolves under (through the lab's DNS responder).
pub const APP_NAME: &str = "app.lab.test";

pub struct Bench {
    dir: tempfile::TempDir,
    /// This run's loopback address: nginx listens here and most upstreams bind here.
    pub ip: Ipv4Addr,
    rt: tokio::runtime::Runtime,
    upstreams: Vec<Upstream>,
    dns: Vec<DnsServer>,
    fpm: Option<PhpFpm>,
    apps: Vec<AppServer>,
    ca: Option<(LabCa, PathBuf)>,
    netns: Option<Netns>,
    /// Sockets kept open on purpose (a filled accept queue, a port held bound).
    held: Vec<Box<dyn Any + Send>>,
}

impl Bench {
    pub fn new() -> anyhow::Result<Bench> {
        let dir = tempfile::Builder::new().prefix("gwdoctor-lab-").tempdir()?;
        // nginx's workers (www-data) must reach sockets and temp paths in here.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))?;
        let n = NEXT_ADDRESS.fetch_add(1, Ordering::Relaxed);
        let pid = std::process::id() as usize;
        let ip = Ipv4Addr::new(
            127,
            77,
            ((pid / 250) % 250 + 1) as u8,
            ((pid + n) % 250 + 1) as u8,
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        Ok(Bench {
            dir,
            ip,
            rt,
            upstreams: Vec::new(),
            dns: Vec::new(),
            fpm: None,
            apps: Vec::new(),
            ca: None,
            netns: None,
            held: Vec::new(),
        })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.rt
    }

    /// A port on `ip` that nothing listens on (bound and released: nothing else in the lab
    /// takes ports on this run's address).
    pub fn free_port(&self, ip: Ipv4Addr) -> anyhow::Result<u16> {
        Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
    }

    /// Starts an upstream on `ip:port` (port 0: any).
    pub fn upstream_at(
        &mut self,
        ip: Ipv4Addr,
        port: u16,
        behaviour: Behaviour,
    ) -> anyhow::Result<SocketAddr> {
        self.start_upstream(Bind::Tcp(SocketAddr::from((ip, port))), behaviour, None)
    }

    /// Starts an upstream on this run's address.
    pub fn upstream(&mut self, behaviour: Behaviour) -> anyhow::Result<SocketAddr> {
        self.upstream_at(self.ip, 0, behaviour)
    }

    /// Starts a TLS upstream with a certificate of `kind` (or one that demands SNI).
    pub fn upstream_tls(
        &mut self,
        kind: Option<CertKind>,
        behaviour: Behaviour,
    ) -> anyhow::Result<SocketAddr> {
        self.ca_file()?;
        let ca = &self.ca.as_ref().expect("ca_file made it").0;
        let config = match kind {
            Some(kind) => tls::server_config(ca, &kind)?,
            None => tls::server_config_requiring_sni(ca, APP_NAME)?,
        };
        self.start_upstream(
            Bind::Tcp(SocketAddr::from((self.ip, 0))),
            behaviour,
            Some(config),
        )
    }

    /// Starts an upstream on a unix socket in the run's directory.
    pub fn unix_upstream(
        &mut self,
        name: &str,
        behaviour: Behaviour,
        mode: u32,
    ) -> anyhow::Result<PathBuf> {
        let path = self.dir().join(name);
        let upstream = upstream::start(
            self.rt.handle(),
            Bind::Unix(path.clone()),
            behaviour,
            None,
            mode,
        )?;
        self.upstreams.push(upstream);
        Ok(path)
    }

    /// Starts an upstream inside the run's network namespace (sockets belong to the namespace
    /// of the thread that creates them).
    pub fn upstream_in_netns(
        &mut self,
        port: u16,
        behaviour: Behaviour,
    ) -> anyhow::Result<SocketAddr> {
        let ns = self
            .netns
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("no namespace"))?;
        let handle = self.rt.handle().clone();
        let upstream = ns.enter(move || {
            upstream::start(
                &handle,
                Bind::Tcp(SocketAddr::from((Ipv4Addr::LOCALHOST, port))),
                behaviour,
                None,
                0,
            )
        })??;
        let addr = upstream
            .local_addr()
            .ok_or_else(|| anyhow::anyhow!("no address"))?;
        self.upstreams.push(upstream);
        Ok(addr)
    }

    fn start_upstream(
        &mut self,
        bind: Bind,
        behaviour: Behaviour,
        tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    ) -> anyhow::Result<SocketAddr> {
        let upstream = upstream::start(self.rt.handle(), bind, behaviour, tls, 0)?;
        let addr = upstream
            .local_addr()
            .ok_or_else(|| anyhow::anyhow!("upstream has no TCP address"))?;
        self.upstreams.push(upstream);
        Ok(addr)
    }

    /// Fills the accept queue of a never-accepting upstream and keeps those connections open.
    pub fn fill_backlog(&mut self, bind: &Bind) -> anyhow::Result<()> {
        let held = upstream::fill_backlog(bind)?;
        self.held.extend(held);
        Ok(())
    }

    /// Keeps a socket bound on `addr` without listening: whoever binds it next fails with
    /// EADDRINUSE, and connections to it are refused.
    pub fn hold_port(&mut self, addr: SocketAddr) -> anyhow::Result<()> {
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
        socket.bind(&addr.into())?;
        self.held.push(Box::new(socket));
        Ok(())
    }

    /// The lab CA's certificate as a file, for `proxy_ssl_trusted_certificate`.
    pub fn ca_file(&mut self) -> anyhow::Result<PathBuf> {
        if self.ca.is_none() {
            let ca = LabCa::new()?;
            let path = self.dir().join("lab-ca.pem");
            std::fs::write(&path, ca.cert_pem())?;
            self.ca = Some((ca, path));
        }
        Ok(self.ca.as_ref().expect("set above").1.clone())
    }

    /// Starts the lab's DNS responder on this run's address.
    pub fn dns(&mut self, mode: DnsMode) -> anyhow::Result<SocketAddr> {
        let server = dns::start_dns(self.rt.handle(), SocketAddr::from((self.ip, 0)), mode)?;
        let addr = server.addr();
        self.dns.push(server);
        Ok(addr)
    }

    /// Starts PHP-FPM with these pools.
    pub fn php_fpm(&mut self, pools: &[Pool]) -> anyhow::Result<()> {
        self.fpm = Some(PhpFpm::start(self.dir(), pools)?);
        Ok(())
    }

    pub fn fpm(&self) -> Option<&PhpFpm> {
        self.fpm.as_ref()
    }

    /// Starts an app server on this run's address.
    pub fn app(&mut self, kind: appserver::Kind) -> anyhow::Result<SocketAddr> {
        let addr = SocketAddr::from((self.ip, self.free_port(self.ip)?));
        self.apps.push(AppServer::start(self.dir(), kind, addr)?);
        Ok(addr)
    }

    /// Creates the run's network namespace (the gateway's "container").
    pub fn netns(&mut self) -> anyhow::Result<&Netns> {
        if self.netns.is_none() {
            let name = format!("gwlab-{}-{}", std::process::id(), self.ip.octets()[3]);
            self.netns = Some(Netns::create(&name)?);
        }
        Ok(self.netns.as_ref().expect("set above"))
    }

    pub fn namespace(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Lines of the app servers' and PHP-FPM's logs, with the file each came from.
    pub fn upstream_logs(&self) -> Vec<(PathBuf, Vec<String>)> {
        let mut logs = Vec::new();
        if let Some(fpm) = &self.fpm {
            logs.push((fpm.log.clone(), fpm.log_lines()));
        }
        for app in &self.apps {
            logs.push((app.log.clone(), app.log_lines()));
        }
        logs
    }

    /// Stops everything, processes first (by pid), then sockets and the namespace.
    pub fn shutdown(mut self) {
        self.stop_all();
    }

    fn stop_all(&mut self) {
        if let Some(fpm) = self.fpm.take() {
            fpm.stop();
        }
        for app in self.apps.drain(..) {
            app.stop();
        }
        for upstream in self.upstreams.drain(..) {
            upstream.stop();
        }
        for dns in self.dns.drain(..) {
            dns.stop();
        }
        self.held.clear();
        self.netns = None;
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        self.stop_all();
    }
}
