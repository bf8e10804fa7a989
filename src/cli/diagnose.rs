//! `gwdoctor diagnose [URL]`: the main job.

use super::{Common, Failure};
use gwdoctor::diagnose::{diagnose_with_progress, DiagnoseOptions, Progress, StepEvent};
use gwdoctor::report::{self, Format};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct DiagnoseArgs {
    /// The site as users reach it (probed from this machine).
    url: Option<String>,
    /// The gateway's configuration (repeatable); default: the running nginx's, else /etc/nginx/nginx.conf.
    #[arg(long, value_name = "PATH")]
    nginx_config: Vec<PathBuf>,
    /// An error log (repeatable); default: those the configuration names.
    #[arg(long, value_name = "PATH")]
    error_log: Vec<PathBuf>,
    /// An access log (repeatable); default: those the configuration names.
    #[arg(long, value_name = "PATH")]
    access_log: Vec<PathBuf>,
    /// Another log to correlate: PHP-FPM's, an app server's, the kernel's (repeatable).
    #[arg(long, value_name = "PATH")]
    log: Vec<PathBuf>,
    /// An access-log format in nginx syntax (when the configuration is not at hand).
    #[arg(long, value_name = "FORMAT")]
    log_format: Vec<String>,
    /// A PHP-FPM configuration file (repeatable); default: PHP-FPM's on this host when the
    /// nginx configuration is found rather than given.
    #[arg(long, value_name = "PATH")]
    fpm_config: Vec<PathBuf>,
    /// The site runs elsewhere: do not read this host's limits, listeners, sockets or running
    /// nginx, and connect to nothing (the configuration and logs are read as recorded evidence).
    #[arg(long)]
    no_host: bool,
    /// Do not read the gateway's configuration (neither a given one nor this host's).
    #[arg(long)]
    no_config: bool,
    /// Connect to nothing: no live checks of the configured targets, no timed request.
    #[arg(long)]
    no_live: bool,
    /// The time budget of the whole run, in seconds.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
}

pub fn run(common: &Common, args: DiagnoseArgs) -> Result<u8, Failure> {
    if !(args.timeout > 0.0 && args.timeout <= 600.0) {
        return Err(Failure::Usage(
            "diagnose: --timeout takes seconds between 0 and 600".into(),
        ));
    }
    let options = DiagnoseOptions {
        url: args.url,
        nginx_configs: args.nginx_config,
        error_logs: args.error_log,
        access_logs: args.access_log,
        other_logs: args.log,
        log_formats: args.log_format,
        fpm_configs: args.fpm_config,
        budget: Duration::from_secs_f64(args.timeout),
        no_host: args.no_host,
        no_config: args.no_config,
        no_live: args.no_live,
    };
    let display = std::io::stderr().is_terminal().then(StepDisplay::new);
    let progress: Progress = match &display {
        Some(d) => d.sink(),
        None => Arc::new(|_| {}),
    };
    let result = diagnose_with_progress(&options, progress);
    if let Some(d) = display {
        d.clear();
    }
    let d = result.map_err(|e| Failure::Usage(format!("diagnose: {e}")))?;
    let lang = common.lang();
    let rendered = match common.format {
        Format::Text => report::diagnose::text(&d, lang),
        Format::Json => format!("{:#}\n", report::diagnose::json(&d, lang)),
        Format::Markdown => report::diagnose::markdown(&d, lang),
        Format::Html => report::diagnose::html(&d, lang),
        Format::Crossplane => {
            return Err(Failure::Usage(
                "diagnose: --format crossplane is for `gwdoctor config`".into(),
            ))
        }
    };
    common.print(&rendered)?;
    Ok(if d.healthy() { 0 } else { 1 })
}

/// Each step of the walk as a line on the terminal (stderr) while it runs: a spinner while it
/// works, then how it went and how long it took. Cleared before the report is printed.
struct StepDisplay {
    multi: indicatif::MultiProgress,
    bars: Arc<Mutex<Vec<(&'static str, indicatif::ProgressBar)>>>,
}

impl StepDisplay {
    fn new() -> StepDisplay {
        StepDisplay {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            bars: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn sink(&self) -> Progress {
        let multi = self.multi.clone();
        let bars = self.bars.clone();
        let style =
            indicatif::ProgressStyle::with_template("{spinner} {prefix:<7} {msg} {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner());
        Arc::new(move |event: StepEvent| {
            let Ok(mut bars) = bars.lock() else { return };
            match event {
                StepEvent::Started { step, detail } => {
                    let bar = multi.add(indicatif::ProgressBar::new_spinner());
                    bar.set_style(style.clone());
                    bar.set_prefix(step);
                    bar.set_message(gwdoctor::redact::redact(&detail).into_owned());
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bars.push((step, bar));
                }
                StepEvent::Finished {
                    step,
                    status,
                    detail,
                    ms,
                } => {
                    // The oldest unfinished bar of this step (steps such as "live" run once per
                    // configuration).
                    if let Some((_, bar)) =
                        bars.iter().find(|(s, b)| *s == step && !b.is_finished())
                    {
                        let mark = status.mark();
                        bar.set_style(
                            indicatif::ProgressStyle::with_template("{prefix:<9} {msg}")
                                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                        );
                        bar.set_prefix(format!("{mark} {step}"));
                        bar.finish_with_message(format!(
                            "{} ({ms} ms)",
                            gwdoctor::redact::redact(&detail)
                        ));
                    }
                }
            }
        })
    }

    fn clear(self) {
        if let Ok(bars) = self.bars.lock() {
            for (_, bar) in bars.iter() {
                bar.finish_and_clear();
            }
        }
        let _ = self.multi.clear();
    }
}
