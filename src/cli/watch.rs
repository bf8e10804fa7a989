//! `gwdoctor watch URL… [--error-log PATH] [--access-log PATH] [--interval 1s] [--listen ADDR]
//! [--webhook URL]` or `gwdoctor watch --config watch.toml`: runs until SIGINT or SIGTERM.

use super::{Common, Failure};
use gwdoctor::watch::config::{
    check_webhook_url, default_timeout, parse_duration, AlertRules, Target, WatchConfig, Webhook,
    WebhookFormat,
};
use gwdoctor::watch::Watch;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct WatchArgs {
    /// URLs to probe (http:// or https://). With --config, the file's targets are used instead.
    #[arg(value_name = "URL", conflicts_with = "config")]
    urls: Vec<String>,
    /// Read everything from this TOML file (see docs/WATCH.md).
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
    /// A gateway error log to follow (nginx error.log); repeatable.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    error_log: Vec<PathBuf>,
    /// An access log to follow for the 5xx rate; repeatable.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    access_log: Vec<PathBuf>,
    /// The access logs' log_format, in nginx syntax [default: combined].
    #[arg(long, value_name = "FORMAT", conflicts_with = "config")]
    log_format: Option<String>,
    /// How often each URL is probed.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "10s",
        conflicts_with = "config"
    )]
    interval: String,
    /// Where the status page and /metrics are served.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:9150",
        conflicts_with = "config"
    )]
    listen: String,
    /// A PEM file of certificate authorities trusted for https targets and webhooks besides the
    /// system's roots (a private CA); repeatable.
    #[arg(long, value_name = "PATH", conflicts_with = "config")]
    ca_file: Vec<PathBuf>,
    /// POST alerts here (http:// or https://); repeatable.
    #[arg(long, value_name = "URL", conflicts_with = "config")]
    webhook: Vec<String>,
    /// The shape of the webhook body.
    #[arg(long, value_enum, default_value_t = WebhookFormat::Json, conflicts_with = "config")]
    webhook_format: WebhookFormat,
    /// The window the 5xx rate is measured over.
    #[arg(
        long,
        value_name = "DURATION",
        default_value = "5m",
        conflicts_with = "config"
    )]
    window: String,
    /// Alert when more than this share of responses in the window is 5xx.
    #[arg(
        long,
        value_name = "FRACTION",
        default_value_t = 0.05,
        conflicts_with = "config"
    )]
    error_rate: f64,
    /// …once the window holds at least this many responses.
    #[arg(
        long,
        value_name = "N",
        default_value_t = 20,
        conflicts_with = "config"
    )]
    min_requests: u64,
    /// Alert when a URL's probe fails this many times in a row.
    #[arg(long, value_name = "N", default_value_t = 3, conflicts_with = "config")]
    failed_probes: u32,
}

fn duration(flag: &str, text: &str) -> Result<std::time::Duration, Failure> {
    parse_duration(text).map_err(|e| Failure::Usage(format!("watch: --{flag} {text:?}: {e}")))
}

/// Builds the configuration from the flags (or the file).
pub fn config(args: &WatchArgs) -> Result<WatchConfig, Failure> {
    if let Some(path) = &args.config {
        return WatchConfig::from_file(path).map_err(|e| Failure::Usage(format!("watch: {e}")));
    }
    let interval = duration("interval", &args.interval)?;
    let mut config = WatchConfig {
        interval,
        error_logs: args.error_log.clone(),
        access_logs: args.access_log.clone(),
        log_format: args.log_format.clone(),
        ca_files: args.ca_file.clone(),
        listen: args.listen.parse::<SocketAddr>().map_err(|_| {
            Failure::Usage(format!(
                "watch: --listen {:?}: expected IP:PORT, e.g. 127.0.0.1:9150",
                args.listen
            ))
        })?,
        alert: AlertRules {
            window: duration("window", &args.window)?,
            error_rate: args.error_rate,
            min_requests: args.min_requests,
            failed_probes: args.failed_probes,
            ..AlertRules::default()
        },
        ..WatchConfig::default()
    };
    for url in &args.urls {
        config.targets.push(
            Target::new(url, None, default_timeout(interval))
                .map_err(|e| Failure::Usage(format!("watch: {e}")))?,
        );
    }
    for url in &args.webhook {
        check_webhook_url(url).map_err(|e| Failure::Usage(format!("watch: {e}")))?;
        config.webhooks.push(Webhook {
            url: url.clone(),
            format: args.webhook_format,
        });
    }
    config
        .validate()
        .map_err(|e| Failure::Usage(format!("watch: {e}")))?;
    Ok(config)
}

/// Runs until SIGINT/SIGTERM; exit status 0 after a clean stop.
pub fn run(common: &Common, args: WatchArgs) -> Result<u8, Failure> {
    let config = config(&args)?;
    let lang = common.lang();
    // Two workers: probes and the page are light; diagnose runs on the blocking pool.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Failure::Internal(e.into()))?;
    rt.block_on(async move {
        let watch = Watch::start(config, lang)
            .await
            .map_err(|e| Failure::Usage(format!("watch: {e}")))?;
        eprintln!(
            "gwdoctor watch: status page http://{0}/ , metrics http://{0}/metrics",
            watch.addr
        );
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .map_err(|e| Failure::Internal(e.into()))?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        watch.stop().await;
        Ok(0)
    })
}
