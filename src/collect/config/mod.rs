//! The configuration collector: reads the gateway's configuration the way nginx does and
//! gathers the facts the rules judge (`rules::config`).
//!
//! - [`lexer`], [`parser`]: nginx's syntax, every directive with its file and line; includes
//!   followed (globs, relative to the main file's directory), loops refused.
//! - [`directives`]: the directives nginx and common modules know, for typos and contexts.
//! - [`model`]: servers, locations, upstream groups and targets, with nginx's inheritance.
//! - [`fpm`]: PHP-FPM's master file and pools.
//! - [`discover`]: the running nginx (its `-c`, `-p`, workers' user and start), `nginx -V`,
//!   `nginx -t`, the running PHP-FPM masters.
//! - [`access`]: upstream response times from an access log, in the configured `log_format`.
//! - [`live`]: connect to every target, find out what answers.
//! - [`crossplane`]: the same parse printed as crossplane's JSON.
//!
//! [`collect`] runs them in order and returns [`Facts`].

pub mod access;
pub mod crossplane;
pub mod directives;
pub mod discover;
pub mod fpm;
pub mod lexer;
pub mod live;
pub mod model;
pub mod parser;

pub use model::{Address, Dest, Model, PassKind, Target};
pub use parser::{Config, ConfigError};

use discover::{Identity, NginxBuild, NginxTest, RunningNginx};
use live::{Endpoint, Expect, LiveResult};
use serde::Serialize;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// What to collect.
#[derive(Debug, Clone)]
pub struct Options {
    /// The main file; `None`: find it (the running master's `-c`, `nginx -V`, /etc/nginx).
    pub path: Option<PathBuf>,
    /// nginx's prefix (`-p`) for `nginx -t`; `None`: the running master's, else nginx's own.
    pub prefix: Option<PathBuf>,
    /// PHP-FPM configuration files to read.
    pub fpm_configs: Vec<PathBuf>,
    /// PHP-FPM's prefix for relative includes.
    pub fpm_prefix: Option<PathBuf>,
    /// Look for PHP-FPM's configuration on this host (the running masters', /etc/php).
    pub discover_fpm: bool,
    /// Access logs to measure upstream response times in.
    pub access_logs: Vec<PathBuf>,
    pub nginx_test: bool,
    pub live: bool,
    /// The deadline of every live step.
    pub timeout: Duration,
    /// The user nginx's workers run as, when it cannot be found out.
    pub worker_user: Option<String>,
}

/// A unix socket path and who may use it.
#[derive(Debug, Clone, Serialize)]
pub struct SocketFact {
    pub path: String,
    pub exists: bool,
    pub is_socket: bool,
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
    /// A POSIX ACL is set on it (PHP-FPM's `listen.acl_users`): owner and mode are not all.
    pub acl: bool,
    /// The directories on the way, outermost first: (path, uid, gid, mode).
    pub dirs: Vec<(String, u32, u32, u32)>,
}

/// Everything the rules look at.
#[derive(Debug)]
pub struct Facts {
    pub main: PathBuf,
    /// How the main file was found ("given", "the running nginx master …").
    pub found_by: String,
    pub config: Config,
    pub model: Model,
    /// How long reading, parsing and modelling took.
    pub parse_ms: u64,
    pub fpm: Vec<fpm::FpmConfig>,
    /// PHP-FPM files found on this host that could not be read.
    pub fpm_problems: Vec<String>,
    pub running: Option<RunningNginx>,
    pub build: Option<NginxBuild>,
    pub nginx_test: Option<NginxTest>,
    /// Why `nginx -t` did not run.
    pub nginx_test_skipped: Option<String>,
    pub worker: Option<Identity>,
    pub sockets: Vec<SocketFact>,
    pub access: Vec<(PathBuf, Result<access::AccessStats, String>)>,
    /// `None`: live checks not run.
    pub live: Option<Vec<LiveResult>>,
    pub in_container: bool,
    /// The most recently changed file and when.
    pub newest_file: Option<(usize, SystemTime)>,
}

/// Whether a log or path argument names a file on disk: not `off`, `stderr`, `/dev/null`,
/// `syslog:…` or `memory:…`, and not built from variables (known only per request).
pub fn names_a_file(path: &str) -> bool {
    !(path.is_empty()
        || matches!(path, "off" | "stderr" | "/dev/null")
        || path.starts_with("syslog:")
        || path.starts_with("memory:")
        || path.contains('$'))
}

/// The files and directories the configuration names that `nginx -t` would create because
/// they are missing: in test mode too, nginx's ngx_init_cycle creates the temp directories
/// (ngx_create_paths), creates the pid file (ngx_create_pidfile) and opens every log file with
/// O_CREAT. Only arguments that name a file count ([`names_a_file`]); a relative path is
/// taken from nginx's prefix, which `prefix` gives when one is needed (left out when it is not
/// known). nginx's compiled-in default paths are not looked at: they exist once the package has
/// run nginx.
fn created_by_nginx_t(
    config: &Config,
    model: &model::Model,
    prefix: impl FnOnce() -> Option<PathBuf>,
) -> Vec<PathBuf> {
    let named_here = config
        .files
        .iter()
        .flat_map(|f| f.all_stmts())
        .filter_map(|s| {
            let name = s.name();
            let named = name == "error_log"
                || name.ends_with("_temp_path")
                || name.ends_with("_cache_path");
            named.then(|| s.arg(0)).flatten()
        });
    let named: Vec<&Path> = model
        .access_logs
        .iter()
        .map(|l| l.path.as_str())
        .chain(model.main.pid.iter().map(|p| p.value.as_str()))
        .chain(named_here)
        .filter(|p| names_a_file(p))
        .map(Path::new)
        .collect();
    // Asked for only when a path is relative (it may run `nginx -V`).
    let prefix = if named.iter().any(|p| p.is_relative()) {
        prefix()
    } else {
        None
    };
    let mut missing: Vec<PathBuf> = named
        .into_iter()
        .filter_map(|p| match &prefix {
            _ if p.is_absolute() => Some(p.to_path_buf()),
            Some(prefix) => Some(prefix.join(p)),
            None => None,
        })
        .filter(|p| std::fs::symlink_metadata(p).is_err())
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// Reads the configuration and gathers the facts.
pub fn collect(opts: &Options) -> Result<Facts, ConfigError> {
    let running_all = discover::running_nginx();
    let mut build = None;
    let (main, found_by) = match &opts.path {
        Some(p) => (p.clone(), "given".to_string()),
        None => {
            build =
                discover::nginx_binary(running_all.first()).and_then(|b| discover::nginx_build(&b));
            discover::default_config(&running_all, build.as_ref())
        }
    };
    let running = running_all.into_iter().find(|r| {
        r.conf.as_ref().is_some_and(|c| {
            let c = match (&r.prefix, c.is_absolute()) {
                (Some(p), false) => p.join(c),
                _ => c.clone(),
            };
            same_file(&c, &main)
        }) || (r.conf.is_none() && opts.path.is_none())
    });

    let start = Instant::now();
    let config = parser::load(&main)?;
    let model = model::build(&config);
    // Rounded, not truncated: bench/config.sh compares this number with its peers.
    let parse_ms = (start.elapsed().as_secs_f64() * 1000.0).round() as u64;

    let mut fpm = Vec::new();
    for path in &opts.fpm_configs {
        fpm.push(fpm::load(path, opts.fpm_prefix.as_deref())?);
    }
    let mut fpm_problems = Vec::new();
    if opts.discover_fpm && opts.fpm_configs.is_empty() {
        let mut paths: Vec<PathBuf> = discover::running_fpm()
            .into_iter()
            .map(|r| r.conf)
            .collect();
        if paths.is_empty() {
            paths = parser::glob_sorted("/etc/php/*/fpm/php-fpm.conf");
        }
        paths.dedup();
        for p in paths {
            match fpm::load(&p, opts.fpm_prefix.as_deref()) {
                Ok(c) => fpm.push(c),
                Err(e) => fpm_problems.push(e.to_string()),
            }
        }
    }

    let (nginx_test, nginx_test_skipped) = if opts.nginx_test {
        let prefix = opts
            .prefix
            .clone()
            .or_else(|| running.as_ref().and_then(|r| r.prefix.clone()));
        let binary = discover::nginx_binary(running.as_ref());
        // Relative paths are nginx's prefix's: the one given, else the compiled-in one.
        let would_create = created_by_nginx_t(&config, &model, || {
            prefix.clone().or_else(|| {
                let compiled = match &build {
                    Some(b) => b.prefix.clone(),
                    None => discover::nginx_build(binary.as_ref()?)?.prefix,
                };
                compiled.map(PathBuf::from)
            })
        });
        match binary {
            Some(_) if !would_create.is_empty() => (
                None,
                Some(format!(
                    "not run: the configuration names {}, missing here (nginx -t creates missing \
                     log files, the pid file and temp directories even when only testing; \
                     gwdoctor changes nothing on this host). Run nginx -t yourself",
                    would_create
                        .iter()
                        .map(|p| p.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
            ),
            Some(bin) => {
                let globals = running.as_ref().and_then(|r| r.globals.clone());
                match discover::nginx_test(&bin, &main, prefix.as_deref(), globals.as_deref()) {
                    Some(t) => (Some(t), None),
                    None => (None, Some(format!("{} could not be run", bin.display()))),
                }
            }
            None => (None, Some("nginx is not installed here".to_string())),
        }
    } else {
        (None, Some("--no-nginx-t".to_string()))
    };

    let worker = worker_identity(opts, running.as_ref(), &model, &config, build.as_ref());
    let sockets = socket_facts(&model, &fpm);

    let mut access_stats = Vec::new();
    for path in &opts.access_logs {
        let format = log_format_for(&model, &config, opts.prefix.as_deref(), path);
        let r = access::analyze(path, &format).map_err(|e| format!("{}: {e}", path.display()));
        access_stats.push((path.clone(), r));
    }

    let live = opts.live.then(|| {
        live::check_all(
            endpoints(&model),
            live::LiveOptions {
                timeout: opts.timeout,
            },
        )
    });

    let newest_file = config
        .files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.modified.map(|m| (i, m)))
        .max_by_key(|(_, m)| *m);

    Ok(Facts {
        main,
        found_by,
        config,
        model,
        parse_ms,
        fpm,
        fpm_problems,
        running,
        build,
        nginx_test,
        nginx_test_skipped,
        worker,
        sockets,
        access: access_stats,
        live,
        in_container: discover::in_container(),
        newest_file,
    })
}

/// The user nginx's workers run (or will run) as.
fn worker_identity(
    opts: &Options,
    running: Option<&RunningNginx>,
    model: &Model,
    config: &Config,
    build: Option<&NginxBuild>,
) -> Option<Identity> {
    if let Some(u) = &opts.worker_user {
        return discover::identity_of(u, None, "--worker-user".into());
    }
    if let Some(w) = running.and_then(|r| r.worker.clone()) {
        return Some(w);
    }
    if let Some((user, group, loc)) = &model.main.user {
        let at = format!(
            "user directive at {}:{}",
            config.files[loc.file].path.display(),
            loc.line
        );
        return discover::identity_of(user, group.as_deref(), at);
    }
    let user = build
        .and_then(|b| b.user.clone())
        .unwrap_or_else(|| "nobody".into());
    discover::identity_of(&user, None, format!("nginx's default ({user})"))
}

/// The access log's format: the configuration's `access_log` that writes this file (its path
/// taken from the main file's directory or nginx's prefix when relative), else the one with the
/// same file name, else the only format the access logs use, else `combined`.
fn log_format_for(model: &Model, config: &Config, prefix: Option<&Path>, path: &Path) -> String {
    let format_of = |l: &model::AccessLog| {
        l.format
            .clone()
            .or_else(|| (l.format_name == "combined").then(|| access::COMBINED.to_string()))
    };
    let exact = model.access_logs.iter().find(|l| {
        let p = Path::new(&l.path);
        same_file(p, path)
            || same_file(&config.prefix.join(p), path)
            || prefix.is_some_and(|pre| same_file(&pre.join(p), path))
    });
    let by_name = || {
        model
            .access_logs
            .iter()
            .find(|l| Path::new(&l.path).file_name() == path.file_name())
    };
    let only = || {
        let mut formats: Vec<String> = model.access_logs.iter().filter_map(format_of).collect();
        formats.dedup();
        (formats.len() == 1).then(|| formats.remove(0))
    };
    exact
        .or_else(by_name)
        .and_then(format_of)
        .or_else(only)
        .unwrap_or_else(|| access::COMBINED.to_string())
}

fn stat_socket(path: &str) -> SocketFact {
    let mut fact = SocketFact {
        path: path.to_string(),
        exists: false,
        is_socket: false,
        uid: 0,
        gid: 0,
        mode: 0,
        acl: false,
        dirs: Vec::new(),
    };
    let p = Path::new(path);
    for dir in p.ancestors().skip(1).collect::<Vec<_>>().into_iter().rev() {
        if dir.as_os_str().is_empty() {
            continue;
        }
        if let Ok(m) = std::fs::metadata(dir) {
            fact.dirs.push((
                dir.display().to_string(),
                m.uid(),
                m.gid(),
                m.permissions().mode() & 0o7777,
            ));
        }
    }
    if let Ok(m) = std::fs::symlink_metadata(p) {
        use std::os::unix::fs::FileTypeExt;
        fact.exists = true;
        fact.is_socket = m.file_type().is_socket();
        fact.uid = m.uid();
        fact.gid = m.gid();
        fact.mode = m.permissions().mode() & 0o7777;
        fact.acl = has_acl(p);
    }
    fact
}

fn has_acl(path: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    let name = c"system.posix_acl_access";
    // SAFETY: a size query (null buffer, size 0); both strings are NUL-terminated.
    let n = unsafe { libc::getxattr(c.as_ptr(), name.as_ptr(), std::ptr::null_mut(), 0) };
    n > 0
}

/// Facts about every unix socket the configuration names.
fn socket_facts(model: &Model, fpm: &[fpm::FpmConfig]) -> Vec<SocketFact> {
    let mut paths: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        if !paths.iter().any(|x| x == p) {
            paths.push(p.to_string());
        }
    };
    for t in &model.targets {
        if let Dest::Address {
            address: Address::Unix { path },
        } = &t.dest
        {
            add(path);
        }
    }
    for g in &model.upstreams {
        for s in &g.servers {
            if let Some(Address::Unix { path }) = &s.address {
                add(path);
            }
        }
    }
    for c in fpm {
        for p in &c.pools {
            if let Some(Address::Unix { path }) = &p.listen {
                add(path);
            }
        }
    }
    paths.iter().map(|p| stat_socket(p)).collect()
}

/// The protocol nginx speaks to a target.
pub fn expect_of(t: &Target) -> Expect {
    match (t.kind, t.scheme.as_str()) {
        (PassKind::Proxy, "https") => Expect::Https,
        (PassKind::Proxy, _) => Expect::Http,
        (PassKind::Fastcgi, _) => Expect::Fastcgi,
        (PassKind::Uwsgi, "suwsgi") => Expect::Tls,
        (PassKind::Uwsgi, _) => Expect::Uwsgi,
        (PassKind::Grpc, "grpcs") => Expect::Grpcs,
        (PassKind::Grpc, _) => Expect::Grpc,
        (PassKind::Scgi, _) => Expect::Scgi,
        (PassKind::Memcached, _) => Expect::Memcached,
        (PassKind::Stream, _) if t.tls => Expect::Tls,
        (PassKind::Stream, _) => Expect::Tcp,
    }
}

/// The resolver addresses of a `resolver` setting (`127.0.0.53`, `[::1]:5353 valid=30s`).
pub fn resolver_addrs(value: &str) -> Vec<std::net::SocketAddr> {
    value
        .split_whitespace()
        .filter(|w| !w.contains('='))
        .filter_map(|w| match Address::parse(w)? {
            Address::Tcp { host, port } => {
                let ip: std::net::IpAddr = host.parse().ok()?;
                Some(std::net::SocketAddr::new(ip, port.unwrap_or(53)))
            }
            Address::Unix { .. } => None,
        })
        .collect()
}

/// Every distinct place the targets send requests to, with how nginx talks to it there.
pub fn endpoints(model: &Model) -> Vec<Endpoint> {
    let mut out: Vec<Endpoint> = Vec::new();
    let ms = |s: &model::Setting| Duration::from_millis(s.ms().unwrap_or(60_000));
    for (index, t) in model.targets.iter().enumerate() {
        let expect = expect_of(t);
        let mut addresses: Vec<(Address, Option<Vec<std::net::SocketAddr>>)> = Vec::new();
        let default_port = match expect {
            Expect::Https | Expect::Grpcs => 443,
            _ => 80,
        };
        let with_port = |a: &Address| match a {
            Address::Tcp { host, port: None } => Address::Tcp {
                host: host.clone(),
                port: Some(default_port),
            },
            other => other.clone(),
        };
        match &t.dest {
            Dest::Address { address } => addresses.push((with_port(address), None)),
            Dest::Group { index: g, .. } => {
                for s in &model.upstreams[*g].servers {
                    if let Some(a) = &s.address {
                        addresses.push((with_port(a), None));
                    }
                }
            }
            Dest::Variable { candidates, .. } => {
                let resolver = t.settings.resolver().map(|r| resolver_addrs(&r.value));
                for c in candidates {
                    if let Some(g) = model.upstreams.iter().find(|g| &g.name == c) {
                        for s in &g.servers {
                            if let Some(a) = &s.address {
                                addresses.push((with_port(a), None));
                            }
                        }
                        continue;
                    }
                    let Some(a) = Address::parse(c) else { continue };
                    if a.host_is_ip() || matches!(a, Address::Unix { .. }) {
                        addresses.push((with_port(&a), None));
                    } else if let Some(r) = resolver.clone().filter(|r| !r.is_empty()) {
                        addresses.push((with_port(&a), Some(r)));
                    }
                }
            }
        }
        // `$proxy_host`: the name in the pass (a group's name, not its servers'), which nginx
        // sends as Host and, with `proxy_ssl_server_name on`, as SNI.
        let proxy_host = match &t.dest {
            Dest::Group { name, .. } => Some(name.clone()),
            Dest::Address {
                address: a @ Address::Tcp { host, .. },
            } if !a.host_is_ip() => Some(host.clone()),
            _ => None,
        };
        for (address, resolver) in addresses {
            let host = match &address {
                Address::Tcp { host, .. } => host.clone(),
                Address::Unix { .. } => "localhost".into(),
            };
            let name = proxy_host.clone().or_else(|| {
                (!address.host_is_ip() && matches!(address, Address::Tcp { .. }))
                    .then(|| host.clone())
            });
            let sni = t
                .settings
                .ssl_server_name()
                .filter(|s| s.is_on())
                .and_then(|_| {
                    t.settings
                        .ssl_name()
                        .map(|n| n.value.to_string())
                        .or_else(|| name.clone())
                });
            let host_header = t
                .settings
                .host_header()
                .filter(|h| !h.value.contains('$'))
                .map(|h| h.value.to_string())
                .or_else(|| proxy_host.clone())
                .unwrap_or_else(|| host.clone());
            if let Some(e) = out.iter_mut().find(|e| {
                e.address == address && e.expect == expect && e.sni == sni && e.resolver == resolver
            }) {
                if !e.targets.contains(&index) {
                    e.targets.push(index);
                }
                continue;
            }
            out.push(Endpoint {
                address,
                expect,
                sni,
                sni_name: name,
                host_header,
                resolver,
                connect_timeout: ms(t.settings.connect_timeout()),
                read_timeout: ms(t.settings.read_timeout()),
                targets: vec![index],
            });
        }
    }
    out
}
