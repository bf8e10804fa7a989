//! `gwdoctor diagnose [URL]`: the main job.

use super::{Common, Failure};
use gwdoctor::diagnose::{diagnose, DiagnoseOptions};
use gwdoctor::report::{self, Format};
use std::path::PathBuf;
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
    /// Do not read this host's limits and listeners (when the site runs elsewhere).
    #[arg(long)]
    no_host: bool,
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
        budget: Duration::from_secs_f64(args.timeout),
        no_host: args.no_host,
    };
    let d = diagnose(&options).map_err(|e| Failure::Usage(format!("diagnose: {e}")))?;
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
