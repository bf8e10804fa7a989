//! `diagnose`: every kind of evidence that applies, collected concurrently within a time budget,
//! then correlated into ranked root causes (`rules::diagnose`).
//!
//! The steps, and what runs beside what:
//!
//! ```text
//! t=0  host ─────────────────────────────┐  (two /proc samples)
//!      probe of the URL ─────────────────┤  (its own deadlines, 80 % of the budget)
//!      config: parse, model, PHP-FPM, nginx -t
//!        └─▶ live checks of every target ┤  (each step ≤ LIVE_STEP, all within the budget)
//!        └─▶ logs: scan ─▶ timed request ┤
//!                                        └─▶ rules::config + rules::logs + rules::diagnose
//! ```
//!
//! The configuration comes first because the logs need it: their `log_format`s, and, when no
//! log is named, their paths (`error_log`, `access_log`, PHP-FPM's `error_log` and `slowlog`).
//!
//! Each source is a step with its own check in the report, so the user sees the whole walk:
//! what was looked at, what passed, what failed, what was skipped and why.

use crate::collect::config::{self, live, Facts};
use crate::collect::host::{self, HostOptions, HostSnapshot};
use crate::collect::logs::formats::access::LogFormat;
use crate::collect::logs::scan::{scan, ScanOptions, ScanResult};
use crate::collect::logs::source::{self, Compression, LogFile};
use crate::collect::probe::{self, http, Limits, ProbeTarget};
use crate::findings::{Check, Evidence, Finding, Status};
use crate::rules;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a single live step (a resolution, a connect, the wait for an answer) may take.
/// Loopback answers in microseconds; a target that takes longer is reported as silent, and the
/// walk goes on. A target that answers no probe costs two steps (the protocol nginx speaks,
/// then a TLS hello), a name through a silent resolver a third: 6 s of the 10 s budget.
const LIVE_STEP: Duration = Duration::from_secs(2);

/// A log found through the configuration (not named by the user) is read whole up to this size;
/// of a bigger one only its last this-many bytes are read (the recent part), and the check says
/// so.
pub const FOUND_LOG_TAIL: u64 = 256 << 20;

/// What to diagnose.
#[derive(Debug, Clone, Default)]
pub struct DiagnoseOptions {
    /// The site, as a user reaches it.
    pub url: Option<String>,
    /// The gateway's main configuration files; empty: the one the running nginx uses (its `-c`),
    /// else `nginx -V`'s default, else /etc/nginx/nginx.conf.
    pub nginx_configs: Vec<PathBuf>,
    pub error_logs: Vec<PathBuf>,
    pub access_logs: Vec<PathBuf>,
    /// Upstream-side logs (PHP-FPM, gunicorn, uWSGI, kernel) given explicitly.
    pub other_logs: Vec<PathBuf>,
    /// Access-log formats in nginx syntax, besides those the configuration defines.
    pub log_formats: Vec<String>,
    /// PHP-FPM configuration files; empty: PHP-FPM's on this host when the nginx configuration
    /// was found rather than given.
    pub fpm_configs: Vec<PathBuf>,
    /// The whole run's budget.
    pub budget: Duration,
    /// The site runs elsewhere: this machine's limits, listeners, sockets, running nginx and
    /// what its network reaches say nothing about it, so none of them is looked at (the
    /// configuration and the logs are read as recorded evidence).
    pub no_host: bool,
    /// Do not read the gateway's configuration at all.
    pub no_config: bool,
    /// Connect to nothing: no live checks of the configured targets, no timed request.
    pub no_live: bool,
}

/// The outcome of the walk: findings most likely first, and every check.
#[derive(Debug, Clone, Default)]
pub struct Diagnosis {
    pub target: Option<String>,
    pub findings: Vec<Finding>,
    pub checks: Vec<Check>,
    pub elapsed: Duration,
    /// The log scan, when logs were read (for reports that show the timeline).
    pub logs: Option<ScanResult>,
    /// Whether a gateway error log was read (so its silence means something).
    pub error_log_read: bool,
    /// The host snapshot, when the host was read.
    pub host: Option<HostSnapshot>,
    /// The gateway configurations read (main files).
    pub configs: Vec<PathBuf>,
}

impl Diagnosis {
    pub fn healthy(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Why diagnose cannot run at all (a named file that cannot be read).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DiagnoseError(pub String);

/// One step of the walk starting or ending, for a progress display.
#[derive(Debug, Clone, PartialEq)]
pub enum StepEvent {
    Started {
        step: &'static str,
        detail: String,
    },
    Finished {
        step: &'static str,
        status: Status,
        detail: String,
        ms: u64,
    },
}

/// Where [`StepEvent`]s go; called from the threads the steps run on.
pub type Progress = Arc<dyn Fn(StepEvent) + Send + Sync>;

/// Runs the walk.
pub fn diagnose(options: &DiagnoseOptions) -> Result<Diagnosis, DiagnoseError> {
    diagnose_with_progress(options, Arc::new(|_| {}))
}

/// What the configuration step produced for one main file.
struct ConfigOutcome {
    facts: Option<Facts>,
    checks: Vec<Check>,
    findings: Vec<Finding>,
}

/// Runs the walk, telling `progress` as each step starts and ends.
pub fn diagnose_with_progress(
    options: &DiagnoseOptions,
    progress: Progress,
) -> Result<Diagnosis, DiagnoseError> {
    let started = Instant::now();
    let deadline = started + options.budget;
    let left = || deadline.saturating_duration_since(Instant::now());
    let mut diagnosis = Diagnosis {
        target: options.url.clone(),
        ..Default::default()
    };
    let mut findings: Vec<Finding> = Vec::new();

    // What the user named must be there: a wrong path is a usage error (exit 2), found before
    // anything starts.
    let probe_target = match &options.url {
        Some(url) => {
            Some(ProbeTarget::parse(url).map_err(|e| DiagnoseError(format!("{url}: {e}")))?)
        }
        None => None,
    };
    let named_logs: Vec<String> = options
        .error_logs
        .iter()
        .chain(&options.access_logs)
        .chain(&options.other_logs)
        .map(|p| p.display().to_string())
        .collect();
    let named_files = if named_logs.is_empty() {
        Vec::new()
    } else {
        source::expand(&named_logs).map_err(|e| DiagnoseError(e.to_string()))?
    };
    let mut formats = Vec::new();
    for (i, f) in options.log_formats.iter().enumerate() {
        formats.push(
            LogFormat::compile(&format!("--log-format {}", i + 1), f)
                .map_err(|e| DiagnoseError(e.to_string()))?,
        );
    }

    // The host is read on its own thread while the rest goes on.
    let host_thread = (!options.no_host).then(|| {
        let progress = progress.clone();
        std::thread::spawn(move || {
            progress(StepEvent::Started {
                step: "host",
                detail: "limits, listeners, kernel log".into(),
            });
            let step = Instant::now();
            let snapshot = host::collect(&HostOptions::default());
            let ms = step.elapsed().as_millis() as u64;
            progress(StepEvent::Finished {
                step: "host",
                status: Status::Pass,
                detail: format!("{} listeners", snapshot.listeners.len()),
                ms,
            });
            (snapshot, ms)
        })
    });

    // The probe of the URL runs on its own thread too, within the budget.
    let probe_thread = probe_target.map(|target| {
        let probe_options = probe::ProbeOptions {
            timeout: options.budget.mul_f64(0.8),
            ..Default::default()
        };
        let progress = progress.clone();
        let url = options.url.clone().unwrap_or_default();
        std::thread::spawn(move || {
            progress(StepEvent::Started {
                step: "probe",
                detail: crate::redact::redact(&url).into_owned(),
            });
            let step = Instant::now();
            let report = probe::probe_blocking(&target, &probe_options);
            progress(StepEvent::Finished {
                step: "probe",
                status: if report.is_ok() {
                    Status::Pass
                } else {
                    Status::Fail
                },
                detail: String::new(),
                ms: step.elapsed().as_millis() as u64,
            });
            report
        })
    });

    // The configuration: read first (the logs need its formats and paths), on a thread so
    // that the budget holds whatever it meets.
    let configs = if options.no_config {
        diagnosis.checks.push(Check::new(
            "config",
            Status::Skip,
            "skipped (--no-config)",
            0,
        ));
        Vec::new()
    } else {
        read_configs(options, &progress, left(), &mut diagnosis.checks)?
    };
    let mut facts: Vec<Facts> = Vec::new();
    for outcome in configs {
        diagnosis.checks.extend(outcome.checks);
        findings.extend(outcome.findings);
        if let Some(f) = outcome.facts {
            diagnosis.configs.push(f.main.clone());
            facts.push(f);
        }
    }
    let mut config_checks_at = diagnosis.checks.len();

    // Live checks of every target, beside the log scan.
    let live_block = live_blocker(options, &facts);
    let live_threads: Vec<_> = facts
        .iter()
        .map(|f| {
            if live_block.is_some() {
                return None;
            }
            let endpoints = config::endpoints(&f.model);
            let step_limit = LIVE_STEP.min(options.budget.mul_f64(0.2));
            let (tx, rx) = mpsc::channel();
            let progress = progress.clone();
            progress(StepEvent::Started {
                step: "live",
                detail: format!("{} targets of {}", endpoints.len(), f.main.display()),
            });
            std::thread::spawn(move || {
                let step = Instant::now();
                let results = live::check_all(
                    endpoints,
                    live::LiveOptions {
                        timeout: step_limit,
                    },
                );
                let failed = results
                    .iter()
                    .filter(|r| r.attempts.iter().any(|a| a.connect != live::Connect::Ok))
                    .count();
                progress(StepEvent::Finished {
                    step: "live",
                    status: if failed == 0 {
                        Status::Pass
                    } else {
                        Status::Fail
                    },
                    detail: format!("{} endpoints, {failed} failing", results.len()),
                    ms: step.elapsed().as_millis() as u64,
                });
                let _ = tx.send(results);
            });
            Some(rx)
        })
        .collect();

    // Logs: the ones named, else the ones the configuration names; in the configuration's
    // formats (each once, however many access_log lines use it).
    let mut compiled: Vec<&str> = Vec::new();
    for f in &facts {
        for l in &f.model.access_logs {
            let Some(text) = l.format.as_deref() else {
                continue;
            };
            if compiled.contains(&text) {
                continue;
            }
            compiled.push(text);
            match LogFormat::compile(&l.format_name, text) {
                Ok(format) => formats.push(format),
                Err(e) => diagnosis.checks.push(Check::new(
                    format!("log_format {}", l.format_name),
                    Status::Warn,
                    format!(
                        "{}:{}: {e}",
                        f.config.files[l.loc.file].path.display(),
                        l.loc.line
                    ),
                    0,
                )),
            }
        }
    }
    let mut tails: Vec<Tail> = Vec::new();
    let files = if !named_files.is_empty() {
        named_files
    } else {
        if options.no_host && !facts.is_empty() {
            // The paths a configuration from elsewhere names are that machine's, not this one's.
            diagnosis.checks.push(Check::new(
                "logs",
                Status::Skip,
                "the configuration's log paths are those of the machine the site runs on (--no-host); pass its logs with --error-log / --access-log",
                0,
            ));
            Vec::new()
        } else {
            let (files, checks, found_tails) = found_logs(&facts);
            diagnosis.checks.extend(checks);
            tails = found_tails;
            files
        }
    };
    if files.is_empty() && !diagnosis.checks.iter().any(|c| c.name == "logs") {
        diagnosis.checks.push(Check::new(
            "logs",
            Status::Skip,
            if facts.is_empty() {
                "no log given or found; pass --error-log / --access-log"
            } else {
                "no log given, and none the configuration names could be read; pass --error-log / --access-log"
            },
            0,
        ));
    } else if !files.is_empty() {
        progress(StepEvent::Started {
            step: "logs",
            detail: format!("{} files", files.len()),
        });
        let step = Instant::now();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        let scan_options = ScanOptions {
            formats,
            since: None,
            until: None,
            reference_year: crate::collect::logs::time::civil_from_unix(now).0,
        };
        let scanned = scan(&files, &scan_options, &|_| {});
        // The pipes of the tails are closed once the scan is done with them.
        let tails_named: Vec<(PathBuf, String)> = tails
            .drain(..)
            .map(|t| (t.pipe_path.clone(), t.label.clone()))
            .collect();
        let mut result = scanned.map_err(|e| DiagnoseError(e.to_string()))?;
        for f in &mut result.files {
            if let Some((_, label)) = tails_named
                .iter()
                .find(|(p, _)| p.display().to_string() == f.path)
            {
                f.path = label.clone();
            }
        }
        let verdict = rules::logs::judge(&result);
        let ms = step.elapsed().as_millis() as u64;
        progress(StepEvent::Finished {
            step: "logs",
            status: if verdict.findings.is_empty() {
                Status::Pass
            } else {
                Status::Fail
            },
            detail: format!("{} lines", result.tally.lines),
            ms,
        });
        let mut checks = verdict.checks;
        for c in &mut checks {
            c.ms = ms;
        }
        diagnosis.checks.extend(checks);
        findings.extend(verdict.findings);
        if let Some(c) = verdict.correlation {
            findings.push(rules::diagnose::from_correlation(&result, &c));
        }
        if let Some(why) = &live_block {
            if result.tally.causes.contains_key("upstream-read-timeout") {
                diagnosis
                    .checks
                    .push(Check::new("timed request", Status::Skip, why.clone(), 0));
            }
        } else {
            let (timing_findings, timing_checks) = time_slow_upstreams(&result, left(), &progress);
            findings.extend(timing_findings);
            diagnosis.checks.extend(timing_checks);
        }
        diagnosis.error_log_read =
            !options.error_logs.is_empty() || result.files.iter().any(|f| f.kind == "nginx-error");
        diagnosis.logs = Some(result);
    }

    // The live checks, as far as they got within the budget, judged with the configuration.
    let mut config_findings = Vec::new();
    for (f, rx) in facts.iter_mut().zip(live_threads) {
        let mut live_note = None;
        match (rx, &live_block) {
            (Some(rx), _) => match rx.recv_timeout(left()) {
                Ok(results) => f.live = Some(results),
                Err(_) => {
                    live_note = Some(format!(
                        "not finished within the budget ({:.1} s); give --timeout more seconds",
                        options.budget.as_secs_f64()
                    ))
                }
            },
            (None, Some(why)) => live_note = Some(why.clone()),
            (None, None) => {}
        }
        let (mut found, mut checks) = rules::config::judge(f);
        if let Some(note) = live_note {
            for c in checks.iter_mut().filter(|c| c.name == "live checks") {
                c.detail = note.clone();
            }
        }
        if options.no_host {
            // Facts of this machine (sockets, the running nginx, nginx -t here) say nothing
            // about a site that runs elsewhere.
            found.retain(|x| {
                !x.evidence
                    .iter()
                    .any(|e| e.source == "host" || e.source == "live-check")
            });
            checks.retain(|c| c.name != "container");
            for c in checks
                .iter_mut()
                .filter(|c| HOST_CHECKS.contains(&c.name.as_str()))
            {
                c.status = Status::Skip;
                c.detail = "skipped: the site runs elsewhere (--no-host)".into();
            }
        }
        config_findings.extend(found);
        // The configuration's checks come first in the walk, where it was read.
        let at = config_checks_at.min(diagnosis.checks.len());
        let n = checks.len();
        diagnosis.checks.splice(at..at, checks);
        config_checks_at = at + n;
    }

    match probe_thread.map(|t| t.join()) {
        Some(Ok(Ok(report))) => {
            let (probe_findings, probe_checks) = rules::probe::findings(&report);
            // With logs at hand, the page's guesses yield to what the logs prove.
            let logs_named = diagnosis
                .logs
                .as_ref()
                .is_some_and(|r| r.tally.causes.values().any(|c| c.primary > 0));
            findings.extend(probe_findings.into_iter().map(|mut f| {
                if logs_named {
                    f.confidence *= 0.7;
                }
                f
            }));
            diagnosis.checks.extend(probe_checks);
        }
        Some(Ok(Err(e))) => diagnosis.checks.push(Check::new(
            "probe",
            Status::Fail,
            format!("the probe could not run: {e}"),
            0,
        )),
        Some(Err(_)) => {
            diagnosis
                .checks
                .push(Check::new("probe", Status::Fail, "the probe failed", 0))
        }
        None => diagnosis
            .checks
            .push(Check::new("probe", Status::Skip, "no URL given", 0)),
    }

    match host_thread.map(|t| t.join()) {
        Some(Ok((snapshot, ms))) => {
            let (host_findings, host_checks) = rules::host::findings(&snapshot);
            findings.extend(rules::diagnose::weigh_host(
                host_findings,
                diagnosis.logs.as_ref(),
            ));
            diagnosis
                .checks
                .extend(host_checks.into_iter().map(|mut c| {
                    c.ms = c.ms.max(ms);
                    c
                }));
            diagnosis.host = Some(snapshot);
        }
        Some(Err(_)) => diagnosis.checks.push(Check::new(
            "host",
            Status::Fail,
            "the host collector failed",
            0,
        )),
        None => diagnosis
            .checks
            .push(Check::new("host", Status::Skip, "skipped (--no-host)", 0)),
    }

    diagnosis.findings = rules::diagnose::correlate(findings, config_findings, &diagnosis, &facts);
    diagnosis.elapsed = started.elapsed();
    Ok(diagnosis)
}

/// Checks of the configuration step that look at this machine rather than the configuration.
const HOST_CHECKS: &[&str] = &["nginx -t", "configuration applied", "unix sockets"];

/// Reads each configuration (the named ones, else the one this host's nginx uses) on a thread
/// of its own, within `budget`.
fn read_configs(
    options: &DiagnoseOptions,
    progress: &Progress,
    budget: Duration,
    checks: &mut Vec<Check>,
) -> Result<Vec<ConfigOutcome>, DiagnoseError> {
    let given = !options.nginx_configs.is_empty();
    let paths: Vec<Option<PathBuf>> = if given {
        options.nginx_configs.iter().cloned().map(Some).collect()
    } else {
        vec![None]
    };
    let mut out = Vec::new();
    for path in paths {
        let opts = config::Options {
            path: path.clone(),
            prefix: None,
            fpm_configs: options.fpm_configs.clone(),
            fpm_prefix: None,
            // PHP-FPM of this host belongs to the nginx of this host, not to a named file
            // (which may come from another machine).
            discover_fpm: !given && !options.no_host && options.fpm_configs.is_empty(),
            access_logs: Vec::new(),
            nginx_test: !options.no_host,
            // Live checks run beside the log scan (see `diagnose_with_progress`).
            live: false,
            timeout: LIVE_STEP,
            worker_user: None,
        };
        let shown = path
            .as_ref()
            .map_or("the running nginx's".to_string(), |p| {
                p.display().to_string()
            });
        progress(StepEvent::Started {
            step: "config",
            detail: shown.clone(),
        });
        let step = Instant::now();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(config::collect(&opts));
        });
        let collected = rx.recv_timeout(budget);
        let ms = step.elapsed().as_millis() as u64;
        let finish = |status: Status, detail: String| {
            progress(StepEvent::Finished {
                step: "config",
                status,
                detail,
                ms,
            })
        };
        match collected {
            Ok(Ok(facts)) => {
                finish(
                    Status::Pass,
                    format!(
                        "{}, {} targets",
                        facts.main.display(),
                        facts.model.targets.len()
                    ),
                );
                out.push(ConfigOutcome {
                    facts: Some(facts),
                    checks: Vec::new(),
                    findings: Vec::new(),
                });
            }
            Ok(Err(e)) => {
                finish(Status::Fail, e.to_string());
                let unreadable = e.line.is_none();
                if given && unreadable && path.as_deref() == Some(e.file.as_path()) {
                    return Err(DiagnoseError(format!("--nginx-config {e}")));
                }
                if !given && unreadable && !e.file.exists() {
                    checks.push(Check::new(
                        "config",
                        Status::Skip,
                        format!(
                            "no nginx configuration found ({} does not exist); pass --nginx-config",
                            e.file.display()
                        ),
                        ms,
                    ));
                    continue;
                }
                // A file nginx itself would refuse: the running gateway cannot have loaded it.
                let location = match e.line {
                    Some(line) => format!("{}:{line}", e.file.display()),
                    None => e.file.display().to_string(),
                };
                checks.push(Check::new("config", Status::Fail, e.to_string(), ms));
                out.push(ConfigOutcome {
                    facts: None,
                    checks: Vec::new(),
                    findings: vec![Finding::new(
                        "config-not-applied",
                        0.6,
                        vec![Evidence::new("config", location, e.message.clone())],
                    )
                    .confirm("run `nginx -t`: nginx refuses to load a configuration it cannot parse, so the one running (if any) is older")],
                });
            }
            Err(_) => {
                finish(Status::Fail, "out of time".into());
                checks.push(Check::new(
                    "config",
                    Status::Fail,
                    format!(
                        "reading {shown} configuration did not finish within the budget ({:.1} s)",
                        options.budget.as_secs_f64()
                    ),
                    ms,
                ));
            }
        }
    }
    Ok(out)
}

/// Why live checks must not run, if they must not: asked not to, the site is elsewhere, or the
/// running gateway lives in another network namespace (a container): what this process reaches
/// is not what nginx reaches.
fn live_blocker(options: &DiagnoseOptions, facts: &[Facts]) -> Option<String> {
    if options.no_live {
        return Some("skipped (--no-live)".into());
    }
    if options.no_host {
        return Some("skipped: the site runs elsewhere (--no-host)".into());
    }
    let own = std::fs::read_link("/proc/self/ns/net").ok()?;
    for f in facts {
        let Some(r) = &f.running else { continue };
        if let Ok(theirs) = std::fs::read_link(format!("/proc/{}/ns/net", r.pid)) {
            if theirs != own {
                return Some(format!(
                    "skipped: nginx (pid {}) runs in another network namespace ({}), where its targets are not what this process reaches",
                    r.pid,
                    theirs.display()
                ));
            }
        }
    }
    None
}

/// The last [`FOUND_LOG_TAIL`] bytes of a big log, fed to the scanner through a pipe (the
/// scanner opens paths; `/proc/self/fd/N` of a pipe opens that pipe).
struct Tail {
    pipe_path: PathBuf,
    /// What the reports call it.
    label: String,
    /// The read end, kept open until the scan is done; closing it ends the writer.
    _read: std::fs::File,
}

/// Opens the last `keep` bytes of `path` (`size` bytes long) as a pipe the scanner can open by
/// name, starting after the first line break in them (the line there is most likely cut).
fn tail_pipe(path: &Path, size: u64, keep: u64) -> std::io::Result<(LogFile, Tail)> {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::FromRawFd;
    let mut file = std::fs::File::open(path)?;
    let start = size.saturating_sub(keep);
    file.seek(SeekFrom::Start(start))?;
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills both descriptors on success; each is owned by one File below.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors from pipe2, owned from here on.
    let (read, mut write) = unsafe {
        (
            std::fs::File::from_raw_fd(fds[0]),
            std::fs::File::from_raw_fd(fds[1]),
        )
    };
    std::thread::spawn(move || {
        // The first line is most likely cut: start after it.
        let mut reader = std::io::BufReader::new(file.take(keep));
        let mut skipped = Vec::new();
        if start > 0 {
            let _ = std::io::BufRead::read_until(&mut reader, b'\n', &mut skipped);
        }
        // Ends when the tail is written or the scanner stops reading (EPIPE).
        let _ = std::io::copy(&mut reader, &mut write).and_then(|_| write.flush());
    });
    let pipe_path = PathBuf::from(format!("/proc/self/fd/{}", fds[0]));
    let label = if keep >= 1 << 20 {
        format!("{} (its last {} MiB)", path.display(), keep >> 20)
    } else {
        format!("{} (its last {keep} bytes)", path.display())
    };
    Ok((
        LogFile {
            path: pipe_path.clone(),
            compression: Compression::None,
            size: keep,
        },
        Tail {
            pipe_path,
            label,
            _read: read,
        },
    ))
}

/// The logs the configurations name that exist and can be read: nginx's `error_log`s (and the
/// running master's `-e`), `access_log`s, PHP-FPM's `error_log` and its pools' `slowlog` and
/// `php_admin_value[error_log]`. With a check per log, read or not.
fn found_logs(facts: &[Facts]) -> (Vec<LogFile>, Vec<Check>, Vec<Tail>) {
    let mut files = Vec::new();
    let mut checks = Vec::new();
    let mut tails = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    for f in facts {
        for (path, why) in rules::diagnose::log_paths(f) {
            let key = std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone());
            if seen.contains(&key) {
                continue;
            }
            seen.push(key);
            let name = format!("log {}", path.display());
            let meta = match std::fs::metadata(&path) {
                Ok(m) if m.is_file() => m,
                Ok(_) => {
                    checks.push(Check::new(
                        name,
                        Status::Skip,
                        format!("{why}: not a regular file"),
                        0,
                    ));
                    continue;
                }
                Err(e) => {
                    checks.push(Check::new(
                        name,
                        Status::Skip,
                        format!("{why}: {}", crate::collect::config::parser::errno_text(&e)),
                        0,
                    ));
                    continue;
                }
            };
            if let Err(e) = std::fs::File::open(&path) {
                checks.push(Check::new(
                    name,
                    Status::Warn,
                    format!(
                        "{why}: cannot read it ({}); run as root or pass a copy",
                        crate::collect::config::parser::errno_text(&e)
                    ),
                    0,
                ));
                continue;
            }
            let compression = source::compression_of(&path);
            if meta.len() > FOUND_LOG_TAIL && compression == Compression::None {
                match tail_pipe(&path, meta.len(), FOUND_LOG_TAIL) {
                    Ok((file, tail)) => {
                        checks.push(Check::new(
                            name,
                            Status::Pass,
                            format!(
                                "{why}; {} MiB, of which the last {} MiB (the recent part) are read",
                                meta.len() >> 20,
                                FOUND_LOG_TAIL >> 20
                            ),
                            0,
                        ));
                        files.push(file);
                        tails.push(tail);
                    }
                    Err(e) => checks.push(Check::new(name, Status::Warn, format!("{why}: {e}"), 0)),
                }
                continue;
            }
            checks.push(Check::new(name, Status::Pass, why, 0));
            files.push(LogFile {
                path,
                compression,
                size: meta.len(),
            });
        }
    }
    (files, checks, tails)
}

/// What one timed request to an upstream showed.
enum Timed {
    /// A status line arrived after this long.
    Answered { status: u16, after: Duration },
    /// Nothing within the deadline.
    Silent,
    /// Connecting or sending failed.
    Failed(String),
}

/// One GET straight to an upstream with the probe's HTTP client, within `deadline`.
fn timed_get(addr: SocketAddr, path: &str, host: &str, deadline: Duration) -> Timed {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Timed::Failed(format!("no runtime: {e}")),
    };
    rt.block_on(async {
        let start = tokio::time::Instant::now();
        let end = start + deadline;
        let mut stream = match probe::tcp::connect(addr, end).await {
            Ok(s) => s,
            Err(f) => return Timed::Failed(f.detail),
        };
        let connected = start.elapsed();
        let request = http::RequestSpec {
            method: "GET",
            target: path.to_string(),
            host: host.to_string(),
            headers: vec![
                ("User-Agent".to_string(), http::USER_AGENT.to_string()),
                ("Accept".to_string(), "*/*".to_string()),
                ("Connection".to_string(), "close".to_string()),
            ],
        };
        let limits = Limits {
            max_body: 64 * 1024,
            ..Limits::default()
        };
        let outcome = http::h1_exchange(&mut stream, &request, &limits, end).await;
        match (outcome.report, outcome.wait) {
            (Some(r), Some(wait)) => Timed::Answered {
                status: r.status,
                after: connected + wait,
            },
            (Some(r), None) => Timed::Answered {
                status: r.status,
                after: start.elapsed(),
            },
            (None, _) => match outcome.failure {
                Some(f)
                    if matches!(
                        f.kind,
                        probe::FailureKind::NoResponse | probe::FailureKind::Stalled
                    ) =>
                {
                    Timed::Silent
                }
                Some(f) => Timed::Failed(f.detail),
                None => Timed::Silent,
            },
        }
    })
}

/// The request of a log line (`request: "GET /x HTTP/1.1"`) and its `host: "…"`, when the
/// method is GET (only a GET is safe to send again).
fn replayable_request(line: &str) -> Option<(String, Option<String>)> {
    let parsed = crate::collect::logs::formats::nginx_error::parse(line)?;
    let mut words = parsed.request?.split_whitespace();
    if words.next()? != "GET" {
        return None;
    }
    let path = words.next().filter(|p| p.starts_with('/'))?.to_string();
    Some((path, parsed.host.map(str::to_string)))
}

/// For each upstream that timed out, how long does it really take? One direct GET (the
/// request that timed out when the log shows a GET, else `/`), with a deadline of three times
/// the gateway's timeout (as the access log shows it): an answer after the timeout means the
/// timeout is too short for this upstream; no answer means the upstream is stuck.
fn time_slow_upstreams(
    result: &ScanResult,
    budget: Duration,
    progress: &Progress,
) -> (Vec<Finding>, Vec<Check>) {
    let mut findings = Vec::new();
    let mut checks = Vec::new();
    let Some(slow) = result.tally.causes.get("upstream-read-timeout") else {
        return (findings, checks);
    };
    let budget_end = Instant::now() + budget;
    let (path, host) = slow
        .example
        .as_ref()
        .and_then(|l| replayable_request(&l.text))
        .unwrap_or_else(|| ("/".to_string(), None));
    let mut addrs: Vec<&String> = slow.upstreams.keys().collect();
    addrs.sort();
    for addr in addrs.into_iter().take(3) {
        let Some(timeout) = result
            .tally
            .access
            .upstreams
            .get(addr)
            .map(|u| u.timeout_seconds)
            .filter(|t| *t > 0.0)
        else {
            continue;
        };
        let Ok(socket) = addr.parse::<SocketAddr>() else {
            continue;
        };
        let name = format!("time {addr}");
        let left = budget_end.saturating_duration_since(Instant::now());
        let deadline = Duration::from_secs_f64(timeout * 3.0 + 1.0).min(left);
        if deadline < Duration::from_secs_f64(timeout) {
            checks.push(Check::new(
                name,
                Status::Skip,
                "not enough time left in the budget",
                0,
            ));
            continue;
        }
        progress(StepEvent::Started {
            step: "timing",
            detail: format!("GET http://{addr}{path}"),
        });
        let step = Instant::now();
        let host_header = host.clone().unwrap_or_else(|| addr.clone());
        let outcome = timed_get(socket, &path, &host_header, deadline);
        let ms = step.elapsed().as_millis() as u64;
        let shown = format!("GET http://{addr}{path}");
        let (status, check) = match outcome {
            Timed::Answered { status, after } if after.as_secs_f64() > timeout => {
                let took = after.as_secs_f64();
                findings.push(Finding::new(
                    "proxy-timeout-too-short",
                    0.93,
                    vec![Evidence::new(
                        "live-check",
                        shown.clone(),
                        format!("answered {status} after {took:.2} s; the gateway gives up after {timeout:.2} s (504s in the access log)"),
                    )],
                ));
                (
                    Status::Fail,
                    format!("answered {status} after {took:.2} s; the gateway gives up after {timeout:.2} s"),
                )
            }
            Timed::Silent => {
                findings.push(Finding::new(
                    "upstream-read-timeout",
                    0.93,
                    vec![Evidence::new(
                        "live-check",
                        shown.clone(),
                        format!(
                            "no answer within {:.1} s (the gateway's timeout: {timeout:.2} s)",
                            deadline.as_secs_f64()
                        ),
                    )],
                ));
                (
                    Status::Fail,
                    format!("no answer within {:.1} s", deadline.as_secs_f64()),
                )
            }
            Timed::Answered { status, after } => (
                Status::Pass,
                format!(
                    "answered {status} after {:.2} s: within the timeout now",
                    after.as_secs_f64()
                ),
            ),
            Timed::Failed(why) => (Status::Warn, format!("could not ask it: {why}")),
        };
        progress(StepEvent::Finished {
            step: "timing",
            status,
            detail: check.clone(),
            ms,
        });
        checks.push(Check::new(name, status, check, ms));
    }
    (findings, checks)
}

#[cfg(test)]
mod tests {
    use super::{replayable_request, tail_pipe};
    use crate::collect::logs::scan::{scan, ScanOptions};

    #[test]
    fn the_tail_of_a_log_is_scanned_from_its_first_whole_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("error.log");
        let line = |n: u32| {
            format!("2026/11/20 14:02:{n:02} [error] 815#815: *{n} connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.7, server: a, request: \"GET / HTTP/1.1\", upstream: \"http://127.0.0.1:3000/\", host: \"a\"\n")
        };
        let text: String = (0..40).map(line).collect();
        std::fs::write(&path, &text).unwrap();
        // The last ten lines and a half.
        let keep = (line(0).len() * 10 + line(0).len() / 2) as u64;
        let (file, tail) = tail_pipe(&path, text.len() as u64, keep).unwrap();
        assert!(tail.label.ends_with(&format!("(its last {keep} bytes)")));
        let result = scan(&[file], &ScanOptions::default(), &|_| {}).unwrap();
        drop(tail);
        assert_eq!(result.files[0].kind, "nginx-error");
        assert_eq!(result.tally.lines, 10);
        assert_eq!(result.tally.causes["upstream-refused"].primary, 10);
    }

    #[test]
    fn only_a_get_is_replayed() {
        let get = r#"2026/11/20 14:03:40 [error] 8#8: *1 upstream timed out (110: Connection timed out) while reading response header from upstream, client: 127.0.0.1, server: lab.test, request: "GET /slow?s=4 HTTP/1.1", upstream: "http://127.0.0.1:8000/slow?s=4", host: "lab.test""#;
        assert_eq!(
            replayable_request(get),
            Some(("/slow?s=4".to_string(), Some("lab.test".to_string())))
        );
        let post = get.replace("\"GET ", "\"POST ");
        assert_eq!(replayable_request(&post), None);
        assert_eq!(replayable_request("no request here"), None);
    }
}
