//! `gwdoctor watch`: the long-running mode. Probes targets on an interval, tails the gateway's
//! logs through rotation, keeps rolling windows in bounded memory, exposes Prometheus metrics,
//! alerts (with a diagnosis attached) through webhooks, and serves a status page.
//!
//! ```text
//!  probe tasks (one per target) ─┐
//!  tail thread (every log file) ─┼─▶ State (windows, targets, alerts) ─▶ /, /metrics, /api/status
//!                                └─▶ Metrics (prometheus-client)
//!  evaluator (every second) ─▶ condition? ─▶ diagnose (blocking thread) ─▶ Outbox ─▶ webhooks
//! ```
//!
//! Every piece of memory is bounded: per-second buckets for the alert window (at most an hour),
//! per-minute buckets for the page's chart (an hour), the last alerts (`KEPT_ALERTS`), and the
//! metric label sets (targets × statuses, causes × upstreams, both small in practice).

pub mod alert;
pub mod config;
pub mod metrics;
pub mod page;
pub mod probe;
pub mod tail;

use crate::catalog::signatures;
use crate::collect::logs::formats::access::LogFormat;
use crate::collect::logs::formats::nginx_error;
use crate::i18n::Lang;
use alert::{Alert, AlertStatus, DiagnosisView, Outbox};
use config::WatchConfig;
use metrics::Metrics;
use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Alerts kept for the status page.
const KEPT_ALERTS: usize = 20;
/// Minutes of history on the page's chart.
const CHART_MINUTES: usize = 60;
/// Distinct causes counted for the page (more are folded into the last one).
const KEPT_CAUSES: usize = 100;

/// Seconds since the epoch.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Responses in one bucket of time.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct Bucket {
    /// Unix seconds of the bucket's start.
    pub start: i64,
    pub total: u64,
    pub errors: u64,
}

/// Buckets of `width` seconds, the newest last, at most `keep` of them.
#[derive(Debug, Clone)]
pub struct Series {
    width: i64,
    keep: usize,
    buckets: VecDeque<Bucket>,
}

impl Series {
    pub fn new(width: i64, keep: usize) -> Series {
        Series {
            width,
            keep,
            buckets: VecDeque::with_capacity(keep.min(4096)),
        }
    }

    pub fn record(&mut self, now: i64, is_error: bool) {
        let start = now - now.rem_euclid(self.width);
        if self.buckets.back().is_none_or(|b| b.start != start) {
            self.buckets.push_back(Bucket {
                start,
                ..Default::default()
            });
            while self.buckets.len() > self.keep {
                self.buckets.pop_front();
            }
        }
        let b = self.buckets.back_mut().expect("pushed above");
        b.total += 1;
        b.errors += u64::from(is_error);
    }

    /// Totals of the buckets that began in the last `seconds` before `now`.
    pub fn sum(&self, now: i64, seconds: i64) -> (u64, u64) {
        self.buckets
            .iter()
            .filter(|b| b.start > now - seconds)
            .fold((0, 0), |(t, e), b| (t + b.total, e + b.errors))
    }

    /// One bucket per slot over the last `slots` widths, empty ones included, oldest first.
    pub fn dense(&self, now: i64, slots: usize) -> Vec<Bucket> {
        let last = now - now.rem_euclid(self.width);
        (0..slots as i64)
            .rev()
            .map(|i| {
                let start = last - i * self.width;
                self.buckets
                    .iter()
                    .find(|b| b.start == start)
                    .copied()
                    .unwrap_or(Bucket {
                        start,
                        ..Default::default()
                    })
            })
            .collect()
    }
}

/// What is known about one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetState {
    pub name: String,
    pub url: String,
    pub up: Option<bool>,
    pub last_status: Option<u16>,
    pub last_failure: Option<String>,
    pub last_detail: String,
    pub last_probe: Option<i64>,
    pub consecutive_failures: u32,
    pub probes: u64,
    pub failures: u64,
    /// The certificate of an https target, as the last probe that got one saw it (kept while
    /// later probes fail before the handshake, so the expiry stays known).
    pub cert: Option<probe::CertFacts>,
}

/// What is known about one log file.
#[derive(Debug, Clone, Serialize)]
pub struct LogState {
    pub path: String,
    pub kind: &'static str,
    pub lines: u64,
    pub rotations: u64,
    pub truncations: u64,
    pub error: Option<String>,
}

/// The episode in progress.
#[derive(Debug, Clone, Serialize)]
pub struct Firing {
    pub id: String,
    pub started: i64,
    pub reasons: Vec<String>,
    /// Set when the diagnosis is done and the firing message queued; the resolve waits for it
    /// so that it never overtakes the firing message.
    pub announced: bool,
}

/// Everything the page and the evaluator read.
#[derive(Debug)]
pub struct State {
    pub started: i64,
    pub targets: Vec<TargetState>,
    pub logs: Vec<LogState>,
    /// Per second, for the alert window.
    pub seconds: Series,
    /// Per minute, for the chart.
    pub minutes: Series,
    /// Error-log lines by cause since start.
    pub causes: BTreeMap<String, u64>,
    pub diagnosis: Option<DiagnosisView>,
    pub alerts: VecDeque<Alert>,
    pub firing: Option<Firing>,
    /// The 5xx share over the alert window, and the responses it rests on.
    pub ratio: (f64, u64),
}

/// What the tasks share.
pub struct Shared {
    pub config: WatchConfig,
    pub metrics: Metrics,
    pub state: Mutex<State>,
    pub lang: Lang,
    /// The status page's address, for links in alerts.
    pub page_url: String,
    /// Probes the targets and posts the webhooks (one set of trust anchors for all).
    pub prober: Arc<probe::Prober>,
    outbox: Outbox,
    host: String,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running watch.
pub struct Watch {
    pub shared: Arc<Shared>,
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tail_thread: Option<std::thread::JoinHandle<()>>,
    server_stop: Option<tokio::sync::oneshot::Sender<()>>,
}

/// Why watch cannot start.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

impl Watch {
    /// Binds the status page, then starts probing, tailing and evaluating. Must be called
    /// inside a multi-thread tokio runtime.
    pub async fn start(config: WatchConfig, lang: Lang) -> Result<Watch, StartError> {
        config.validate().map_err(StartError)?;
        let access_format = match &config.log_format {
            Some(f) => {
                LogFormat::compile("log format", f).map_err(|e| StartError(e.to_string()))?
            }
            None => LogFormat::combined(),
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| StartError(format!("cannot listen on {}: {e}", config.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| StartError(e.to_string()))?;
        let prober = Arc::new(probe::Prober::new(
            config.trust_anchors().map_err(StartError)?,
        ));
        let https = config
            .targets
            .iter()
            .map(|t| &t.url)
            .chain(config.webhooks.iter().map(|w| &w.url))
            .any(|u| u.starts_with("https://"));
        if https {
            // Reading the system's trust store is file work: done once, off the async workers,
            // before the first probe (which would otherwise count it in its handshake).
            let p = prober.clone();
            let _ = tokio::task::spawn_blocking(move || p.load_anchors()).await;
        }
        let metrics = Metrics::new();
        let (outbox, sender) =
            alert::start_sender(config.webhooks.clone(), metrics.clone(), prober.clone());
        let now = unix_now();
        let state = State {
            started: now,
            targets: config
                .targets
                .iter()
                .map(|t| TargetState {
                    name: t.name.clone(),
                    url: crate::redact::redact(&t.url).into_owned(),
                    up: None,
                    last_status: None,
                    last_failure: None,
                    last_detail: String::new(),
                    last_probe: None,
                    consecutive_failures: 0,
                    probes: 0,
                    failures: 0,
                    cert: None,
                })
                .collect(),
            logs: Vec::new(),
            seconds: Series::new(1, config.alert.window.as_secs().max(1) as usize + 1),
            minutes: Series::new(60, CHART_MINUTES + 1),
            causes: BTreeMap::new(),
            diagnosis: None,
            alerts: VecDeque::new(),
            firing: None,
            ratio: (0.0, 0),
        };
        let shared = Arc::new(Shared {
            page_url: format!("http://{addr}/"),
            host: hostname(),
            prober,
            config,
            metrics,
            state: Mutex::new(state),
            lang,
            outbox,
        });
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = vec![sender];
        for (index, _) in shared.config.targets.iter().enumerate() {
            tasks.push(tokio::spawn(probe_loop(shared.clone(), index)));
        }
        tasks.push(tokio::spawn(evaluate_loop(shared.clone())));
        let tail_thread = {
            let shared = shared.clone();
            let stop = stop.clone();
            // The logs' current ends are taken now, before start returns: every line written
            // after it is counted, however late the thread gets going.
            let tailers = tailers_for(&shared.config);
            std::thread::Builder::new()
                .name("gwdoctor-tail".into())
                .spawn(move || tail_loop(shared, tailers, access_format, stop))
                .map_err(|e| StartError(e.to_string()))?
        };
        let (server_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let app = page::router(shared.clone());
        tasks.push(tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(e) = serve.await {
                eprintln!("gwdoctor watch: status page: {e}");
            }
        }));
        Ok(Watch {
            shared,
            addr,
            stop,
            tasks,
            tail_thread: Some(tail_thread),
            server_stop: Some(server_stop),
        })
    }

    /// Stops every task and the tail thread, and waits for them (at most a few seconds).
    pub async fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.server_stop.take() {
            let _ = s.send(());
        }
        for task in self.tasks.drain(..) {
            task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
        if let Some(t) = self.tail_thread.take() {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

impl Drop for Watch {
    /// A watch dropped without [`Watch::stop`] (a caller's early return) still ends its tasks
    /// and its tail thread, without waiting for them.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(s) = self.server_stop.take() {
            let _ = s.send(());
        }
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Probes one target on every interval, forever.
async fn probe_loop(shared: Arc<Shared>, index: usize) {
    let target = shared.config.targets[index].clone();
    // Validated when the configuration was built.
    let Ok(url) = probe::parse_url(&target.url) else {
        return;
    };
    let mut ticks = tokio::time::interval(shared.config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let result = shared.prober.probe(&url, target.timeout).await;
        let m = &shared.metrics;
        for (phase, seconds) in &result.phases {
            m.probe_phase(&target.name, phase, *seconds);
        }
        if let Some(status) = result.status {
            m.response(metrics::Source::Probe, &target.name, status);
        }
        if let Some(cert) = &result.cert {
            m.cert_expiry(&target.name, cert.expires);
        }
        if let Some(reason) = result.failure {
            m.probe_failure(&target.name, reason);
        }
        m.target_up(&target.name, result.failure.is_none());
        let now = unix_now();
        let mut state = shared.state();
        // Without access logs, the probes are the only traffic the 5xx rate can rest on.
        if shared.config.access_logs.is_empty() {
            if let Some(status) = result.status {
                state.seconds.record(now, status >= 500);
                state.minutes.record(now, status >= 500);
            }
        }
        let t = &mut state.targets[index];
        t.probes += 1;
        t.last_probe = Some(now);
        t.last_status = result.status;
        t.last_detail = crate::redact::redact(&result.detail).into_owned();
        t.up = Some(result.failure.is_none());
        if result.cert.is_some() {
            t.cert = result.cert;
        }
        match result.failure {
            Some(reason) => {
                t.failures += 1;
                t.consecutive_failures += 1;
                t.last_failure = Some(reason.to_string());
            }
            None => {
                t.consecutive_failures = 0;
                t.last_failure = None;
            }
        }
    }
}

/// What one log line says.
enum LineFacts {
    Status(u16),
    /// The line's cause and the upstream it names (`-` when none).
    Cause(String, String),
    Nothing,
}

fn classify(kind: &str, line: &str, format: &LogFormat) -> LineFacts {
    if kind == "access" {
        return match format.parse(line.as_bytes()).and_then(|r| r.status_code()) {
            Some(s) => LineFacts::Status(s),
            None => LineFacts::Nothing,
        };
    }
    match signatures().match_line(line) {
        // One line, one count: under the signature's first cause, the most likely one, so that
        // summing over causes gives the number of lines. (The other candidates are weighed by
        // the diagnosis an alert runs.)
        Some(m) => match m.causes.first() {
            Some(cause) => {
                let upstream = nginx_error::parse_head(line)
                    .and_then(|h| h.upstream())
                    .map(nginx_error::upstream_address)
                    .or_else(|| m.field("upstream"))
                    .or_else(|| m.field("addr"))
                    .map(|u| crate::redact::redact(u).into_owned())
                    .unwrap_or_else(|| "-".into());
                LineFacts::Cause(cause.clone(), upstream)
            }
            None => LineFacts::Nothing,
        },
        None => LineFacts::Nothing,
    }
}

/// A tailer for every log of the configuration, each from the log's current end.
fn tailers_for(config: &WatchConfig) -> Vec<(tail::Tailer, &'static str)> {
    config
        .error_logs
        .iter()
        .map(|p| (tail::Tailer::new(p), "error"))
        .chain(
            config
                .access_logs
                .iter()
                .map(|p| (tail::Tailer::new(p), "access")),
        )
        .collect()
}

/// Reads every log on `tail_every` until told to stop. Runs on its own thread: file reads are
/// blocking, and a slow disk must not hold up probes.
fn tail_loop(
    shared: Arc<Shared>,
    mut tailers: Vec<(tail::Tailer, &'static str)>,
    format: LogFormat,
    stop: Arc<AtomicBool>,
) {
    let mut facts: Vec<LineFacts> = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        for (i, (tailer, kind)) in tailers.iter_mut().enumerate() {
            let before = tailer.stats;
            facts.clear();
            tailer.poll(&mut |line| facts.push(classify(kind, line, &format)));
            let after = tailer.stats;
            let file = tailer.path().display().to_string();
            let m = &shared.metrics;
            m.log_lines(&file, after.lines - before.lines);
            m.log_rotation(&file, "rename", after.rotations - before.rotations);
            m.log_rotation(&file, "truncate", after.truncations - before.truncations);
            let now = unix_now();
            let mut state = shared.state();
            for fact in &facts {
                match fact {
                    LineFacts::Status(s) => {
                        m.response(metrics::Source::AccessLog, &file, *s);
                        state.seconds.record(now, *s >= 500);
                        state.minutes.record(now, *s >= 500);
                    }
                    LineFacts::Cause(cause, upstream) => {
                        m.upstream_error(cause, upstream);
                        let folded =
                            state.causes.len() >= KEPT_CAUSES && !state.causes.contains_key(cause);
                        let key = if folded { "other" } else { cause.as_str() };
                        *state.causes.entry(key.to_string()).or_default() += 1;
                    }
                    LineFacts::Nothing => {}
                }
            }
            let log = LogState {
                path: file,
                kind,
                lines: after.lines,
                rotations: after.rotations,
                truncations: after.truncations,
                error: tailer.error.clone(),
            };
            match state.logs.get_mut(i) {
                Some(l) => *l = log,
                None => state.logs.push(log),
            }
        }
        std::thread::sleep(shared.config.tail_every);
    }
}

/// Checks the alert condition every second; starts and ends episodes.
async fn evaluate_loop(shared: Arc<Shared>) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        evaluate(&shared);
    }
}

/// The conditions that hold now, in words; empty when all is well.
fn conditions(config: &WatchConfig, state: &State, now: i64) -> (Vec<String>, f64, u64) {
    let rules = &config.alert;
    let window = rules.window.as_secs() as i64;
    let (total, errors) = state.seconds.sum(now, window);
    let ratio = if total == 0 {
        0.0
    } else {
        errors as f64 / total as f64
    };
    let mut reasons = Vec::new();
    if total >= rules.min_requests.max(1) && ratio > rules.error_rate {
        reasons.push(format!(
            "5xx rate {:.1} % ({errors} of {total} responses) over the last {window} s, above {:.1} %",
            ratio * 100.0,
            rules.error_rate * 100.0
        ));
    }
    for t in &state.targets {
        if t.consecutive_failures >= rules.failed_probes {
            reasons.push(format!(
                "{}: {} probes failed in a row ({}: {})",
                t.name,
                t.consecutive_failures,
                t.last_failure.as_deref().unwrap_or("-"),
                t.last_detail
            ));
        }
    }
    (reasons, ratio, total)
}

fn evaluate(shared: &Arc<Shared>) {
    let now = unix_now();
    let mut state = shared.state();
    let (reasons, ratio, total) = conditions(&shared.config, &state, now);
    state.ratio = (ratio, total);
    shared.metrics.error_ratio(ratio);
    match (&mut state.firing, reasons.is_empty()) {
        (None, false) => {
            let firing = Firing {
                id: format!("{}-{now}", shared.host),
                started: now,
                reasons: reasons.clone(),
                announced: false,
            };
            state.firing = Some(firing.clone());
            shared.metrics.alert_firing(true);
            drop(state);
            let shared = shared.clone();
            tokio::spawn(async move { announce(shared, firing).await });
        }
        (Some(firing), false) => {
            // Deduplicated: the episode goes on; remember the latest reasons for the page.
            firing.reasons = reasons;
        }
        (Some(firing), true) if firing.announced => {
            let firing = state.firing.take().expect("matched Some");
            shared.metrics.alert_firing(false);
            let alert = Alert {
                status: AlertStatus::Resolved,
                id: firing.id,
                host: shared.host.clone(),
                started: firing.started,
                ended: Some(now),
                reasons: firing.reasons,
                diagnosis: None,
                page: shared.page_url.clone(),
            };
            push_alert(&mut state, alert.clone());
            drop(state);
            shared.outbox.send(alert);
        }
        // Cleared before the firing message went out: resolve on the next tick, after it.
        (Some(_), true) | (None, true) => {}
    }
}

fn push_alert(state: &mut State, alert: Alert) {
    state.alerts.push_back(alert);
    while state.alerts.len() > KEPT_ALERTS {
        state.alerts.pop_front();
    }
}

/// Runs diagnose over the watched logs (on a blocking thread, within the budget), then queues
/// the firing message with its result.
async fn announce(shared: Arc<Shared>, firing: Firing) {
    let config = &shared.config;
    let options = crate::diagnose::DiagnoseOptions {
        url: None,
        error_logs: config.error_logs.clone(),
        access_logs: config.access_logs.clone(),
        log_formats: config.log_format.iter().cloned().collect(),
        budget: config.alert.diagnose_budget,
        ..Default::default()
    };
    let lang = shared.lang;
    let diagnosis = if config.error_logs.is_empty() && config.access_logs.is_empty() {
        DiagnosisView {
            at: unix_now(),
            error: Some("no logs to diagnose from; give --error-log / --access-log".into()),
            ..Default::default()
        }
    } else {
        let job = tokio::task::spawn_blocking(move || crate::diagnose::diagnose(&options));
        // The diagnosis gets its budget plus a margin; after that the alert goes out without it.
        let limit = config.alert.diagnose_budget + Duration::from_secs(5);
        match tokio::time::timeout(limit, job).await {
            Ok(Ok(Ok(d))) => DiagnosisView::from_diagnosis(&d, unix_now(), lang),
            Ok(Ok(Err(e))) => DiagnosisView {
                at: unix_now(),
                error: Some(format!("diagnose failed: {e}")),
                ..Default::default()
            },
            Ok(Err(_)) => DiagnosisView {
                at: unix_now(),
                error: Some("diagnose failed".into()),
                ..Default::default()
            },
            Err(_) => DiagnosisView {
                at: unix_now(),
                error: Some(format!("diagnose took longer than {limit:?}")),
                ..Default::default()
            },
        }
    };
    shared.metrics.diagnosis(
        &diagnosis
            .causes
            .iter()
            .map(|c| (c.cause.clone(), c.confidence))
            .collect::<Vec<_>>(),
    );
    let mut state = shared.state();
    let reasons = match &state.firing {
        Some(f) if f.id == firing.id => f.reasons.clone(),
        _ => firing.reasons.clone(),
    };
    let alert = Alert {
        status: AlertStatus::Firing,
        id: firing.id.clone(),
        host: shared.host.clone(),
        started: firing.started,
        ended: None,
        reasons,
        diagnosis: Some(diagnosis.clone()),
        page: shared.page_url.clone(),
    };
    state.diagnosis = Some(diagnosis);
    push_alert(&mut state, alert.clone());
    if let Some(f) = state.firing.as_mut().filter(|f| f.id == firing.id) {
        f.announced = true;
    }
    drop(state);
    shared.outbox.send(alert);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_keep_a_bounded_window() {
        let mut s = Series::new(1, 10);
        for t in 0..100 {
            s.record(1000 + t, t % 2 == 0);
        }
        assert_eq!(s.buckets.len(), 10);
        assert_eq!(s.sum(1099, 5), (5, 2));
        let d = s.dense(1099, 3);
        assert_eq!(
            d.iter().map(|b| b.start).collect::<Vec<_>>(),
            [1097, 1098, 1099]
        );
        let mut m = Series::new(60, 60);
        m.record(120, true);
        m.record(179, false);
        assert_eq!(
            m.dense(200, 2)[0],
            Bucket {
                start: 120,
                total: 2,
                errors: 1
            }
        );
    }
}
