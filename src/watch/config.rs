//! What `watch` monitors and when it alerts: built from flags, or read from `watch.toml`.
//!
//! ```toml
//! interval = "1s"              # how often each target is probed
//! listen = "127.0.0.1:9150"    # status page and /metrics
//!
//! ca_files = ["/etc/ssl/private-ca.pem"]   # optional; trusted besides the system's roots
//!
//! [[target]]
//! url = "https://shop.example/health"
//! name = "shop"                # optional; the label in metrics and alerts
//! timeout = "5s"
//!
//! [logs]
//! error = ["/var/log/nginx/error.log"]
//! access = ["/var/log/nginx/access.log"]
//! format = '$remote_addr - $remote_user [$time_local] "$request" $status ...'   # optional
//!
//! [alert]
//! window = "5m"         # the 5xx rate is measured over this window
//! error_rate = 0.05     # alert above 5 % of responses being 5xx ...
//! min_requests = 20     # ... once the window holds at least this many responses
//! failed_probes = 3     # or when a target's probe fails this many times in a row
//!
//! [[webhook]]
//! url = "http://127.0.0.1:9093/api/v2/alerts"
//! format = "alertmanager"   # or "json", "slack"
//! ```

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything `watch` needs to run.
#[derive(Debug, Clone)]
pub struct WatchConfig {
    pub targets: Vec<Target>,
    pub error_logs: Vec<PathBuf>,
    pub access_logs: Vec<PathBuf>,
    /// The access logs' `log_format` in nginx syntax; nginx's `combined` when absent.
    pub log_format: Option<String>,
    pub interval: Duration,
    pub listen: SocketAddr,
    pub alert: AlertRules,
    pub webhooks: Vec<Webhook>,
    /// How often the logs are read (rotation is noticed at this pace too).
    pub tail_every: Duration,
    /// PEM files of certificate authorities trusted for https targets and webhooks, besides
    /// the system's roots (a private CA).
    pub ca_files: Vec<PathBuf>,
}

/// One URL probed on every interval.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The label in metrics, alerts and the page (the URL when not named).
    pub name: String,
    pub url: String,
    pub timeout: Duration,
}

/// When an alert fires.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRules {
    pub window: Duration,
    pub error_rate: f64,
    pub min_requests: u64,
    pub failed_probes: u32,
    /// The diagnosis an alert carries gets this long at most.
    pub diagnose_budget: Duration,
}

impl Default for AlertRules {
    fn default() -> AlertRules {
        AlertRules {
            window: Duration::from_secs(300),
            error_rate: 0.05,
            min_requests: 20,
            failed_probes: 3,
            diagnose_budget: Duration::from_secs(20),
        }
    }
}

/// Where alerts are posted, and in which shape.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub url: String,
    pub format: WebhookFormat,
}

/// The body of a webhook POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// gwdoctor's own JSON: status, reasons, causes with evidence.
    Json,
    /// `{"text": "…"}`, what Slack (and Mattermost, Rocket.Chat) incoming webhooks take.
    Slack,
    /// A list of alerts, what Alertmanager's `POST /api/v2/alerts` takes.
    Alertmanager,
}

impl Default for WatchConfig {
    fn default() -> WatchConfig {
        WatchConfig {
            targets: Vec::new(),
            error_logs: Vec::new(),
            access_logs: Vec::new(),
            log_format: None,
            interval: Duration::from_secs(10),
            listen: SocketAddr::from(([127, 0, 0, 1], 9150)),
            alert: AlertRules::default(),
            webhooks: Vec::new(),
            tail_every: Duration::from_millis(250),
            ca_files: Vec::new(),
        }
    }
}

/// A configuration that cannot be used; the message names the file and line when there is one.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    interval: Option<String>,
    listen: Option<String>,
    #[serde(default)]
    ca_files: Vec<PathBuf>,
    #[serde(default)]
    target: Vec<FileTarget>,
    #[serde(default)]
    logs: FileLogs,
    #[serde(default)]
    alert: FileAlert,
    #[serde(default)]
    webhook: Vec<FileWebhook>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileTarget {
    url: String,
    name: Option<String>,
    timeout: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileLogs {
    #[serde(default)]
    error: Vec<PathBuf>,
    #[serde(default)]
    access: Vec<PathBuf>,
    format: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileAlert {
    window: Option<String>,
    error_rate: Option<f64>,
    min_requests: Option<u64>,
    failed_probes: Option<u32>,
    diagnose_budget: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileWebhook {
    url: String,
    format: Option<WebhookFormat>,
}

/// The largest configuration file read (a config is a few hundred bytes).
const MAX_CONFIG_BYTES: u64 = 1 << 20;

impl WatchConfig {
    /// Reads `watch.toml`. Errors name the file and, for a syntax or value error, the line.
    pub fn from_file(path: &Path) -> Result<WatchConfig, ConfigError> {
        let shown = path.display();
        let meta = std::fs::metadata(path).map_err(|e| ConfigError(format!("{shown}: {e}")))?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError(format!(
                "{shown}: {} bytes is too large for a configuration file",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(|e| ConfigError(format!("{shown}: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|e| ConfigError(format!("{shown}: not UTF-8 text ({e})")))?;
        WatchConfig::from_toml(&shown.to_string(), &text)
    }

    /// Parses the text of a configuration; `name` is what messages call it.
    pub fn from_toml(name: &str, text: &str) -> Result<WatchConfig, ConfigError> {
        let at = |span: Option<std::ops::Range<usize>>| match span {
            Some(s) => format!("{name}:{}", line_of(text, s.start)),
            None => name.to_string(),
        };
        let file: File = toml::from_str(text)
            .map_err(|e| ConfigError(format!("{}: {}", at(e.span()), e.message().trim_end())))?;
        // Values are checked after parsing; their line is found by searching for the key.
        let key_line = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map_or(name.to_string(), |i| format!("{name}:{}", i + 1))
        };
        let duration = |key: &str, value: &Option<String>, default: Duration| match value {
            Some(v) => parse_duration(v)
                .map_err(|e| ConfigError(format!("{}: {key} = {v:?}: {e}", key_line(key)))),
            None => Ok(default),
        };
        let mut config = WatchConfig {
            interval: duration("interval", &file.interval, Duration::from_secs(10))?,
            ..WatchConfig::default()
        };
        if let Some(listen) = &file.listen {
            config.listen = listen.parse().map_err(|_| {
                ConfigError(format!(
                    "{}: listen = {listen:?}: expected IP:PORT, e.g. 127.0.0.1:9150",
                    key_line("listen")
                ))
            })?;
        }
        for t in &file.target {
            let timeout = duration("timeout", &t.timeout, default_timeout(config.interval))?;
            config.targets.push(
                Target::new(&t.url, t.name.clone(), timeout)
                    .map_err(|e| ConfigError(format!("{}: {e}", key_line("url"))))?,
            );
        }
        config.ca_files = file.ca_files;
        config
            .trust_anchors()
            .map_err(|e| ConfigError(format!("{}: ca_files: {e}", key_line("ca_files"))))?;
        config.error_logs = file.logs.error;
        config.access_logs = file.logs.access;
        config.log_format = file.logs.format;
        let defaults = AlertRules::default();
        config.alert = AlertRules {
            window: duration("window", &file.alert.window, defaults.window)?,
            error_rate: file.alert.error_rate.unwrap_or(defaults.error_rate),
            min_requests: file.alert.min_requests.unwrap_or(defaults.min_requests),
            failed_probes: file.alert.failed_probes.unwrap_or(defaults.failed_probes),
            diagnose_budget: duration(
                "diagnose_budget",
                &file.alert.diagnose_budget,
                defaults.diagnose_budget,
            )?,
        };
        for w in file.webhook {
            check_webhook_url(&w.url)
                .map_err(|e| ConfigError(format!("{}: {e}", key_line("url"))))?;
            config.webhooks.push(Webhook {
                url: w.url,
                format: w.format.unwrap_or(WebhookFormat::Json),
            });
        }
        config
            .validate()
            .map_err(|e| ConfigError(format!("{name}: {e}")))?;
        Ok(config)
    }

    /// The checks every configuration passes, from flags or a file.
    pub fn validate(&self) -> Result<(), String> {
        if self.targets.is_empty() && self.error_logs.is_empty() && self.access_logs.is_empty() {
            return Err("nothing to watch: give a target URL or a log".into());
        }
        if self.interval < Duration::from_millis(100) || self.interval > Duration::from_secs(3600) {
            return Err(format!("interval {:?} is outside 100ms..1h", self.interval));
        }
        let a = &self.alert;
        if !(a.error_rate > 0.0 && a.error_rate <= 1.0) {
            return Err(format!(
                "alert error_rate {} must be a fraction in (0, 1], e.g. 0.05 for 5 %",
                a.error_rate
            ));
        }
        if a.window < Duration::from_secs(1) || a.window > Duration::from_secs(3600) {
            return Err(format!("alert window {:?} is outside 1s..1h", a.window));
        }
        if a.failed_probes == 0 {
            return Err("alert failed_probes must be at least 1".into());
        }
        self.trust_anchors()?;
        if let Some(format) = &self.log_format {
            crate::collect::logs::formats::access::LogFormat::compile("logs.format", format)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The certificates of `ca_files` (read at start; a file that cannot be read or holds no
    /// PEM certificate is an error naming it).
    pub fn trust_anchors(&self) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
        let mut all = Vec::new();
        for path in &self.ca_files {
            all.extend(crate::collect::probe::tls::read_ca_file(path)?);
        }
        Ok(all)
    }
}

impl Target {
    /// A target for `url` (checked: `http://` or `https://`, a host, a port that fits).
    pub fn new(url: &str, name: Option<String>, timeout: Duration) -> Result<Target, String> {
        super::probe::parse_url(url)?;
        Ok(Target {
            name: name.unwrap_or_else(|| crate::redact::redact(url).into_owned()),
            url: url.to_string(),
            timeout,
        })
    }
}

/// A probe's deadline when none is given: the interval, between 1 s and 10 s.
pub fn default_timeout(interval: Duration) -> Duration {
    interval.clamp(Duration::from_secs(1), Duration::from_secs(10))
}

/// Webhooks are posted over `http://` or `https://` (verified against the system's roots and
/// `ca_files`).
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    super::probe::parse_url(url)
        .map(|_| ())
        .map_err(|e| format!("webhook {e}"))
}

/// `1s`, `500ms`, `5m`, `1h`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: f64 = number
        .parse()
        .map_err(|_| "expected a duration such as 500ms, 1s, 5m, 1h".to_string())?;
    let seconds = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        other => return Err(format!("unknown unit {other:?}; use ms, s, m or h")),
    };
    if !seconds.is_finite() || seconds > 86_400.0 * 7.0 {
        return Err("duration out of range".into());
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_file_parses() {
        let c = WatchConfig::from_toml(
            "watch.toml",
            "interval = \"2s\"\nlisten = \"127.0.0.1:9999\"\n[[target]]\nurl = \"http://127.0.0.1:8080/\"\nname = \"shop\"\n\
             [logs]\nerror = [\"/var/log/nginx/error.log\"]\n[alert]\nwindow = \"1m\"\nerror_rate = 0.2\n\
             [[webhook]]\nurl = \"http://127.0.0.1:9/hook\"\nformat = \"slack\"\n",
        )
        .unwrap();
        assert_eq!(c.interval, Duration::from_secs(2));
        assert_eq!(c.listen.port(), 9999);
        assert_eq!(c.targets[0].name, "shop");
        assert_eq!(c.alert.window, Duration::from_secs(60));
        assert_eq!(c.alert.error_rate, 0.2);
        assert_eq!(c.webhooks[0].format, WebhookFormat::Slack);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let e = WatchConfig::from_toml("w.toml", "interval = \"1s\"\n\n[[target]]\nurl = 5\n")
            .unwrap_err();
        assert!(e.0.starts_with("w.toml:4:"), "{e}");
        let e = WatchConfig::from_toml(
            "w.toml",
            "[[target]]\nurl = \"http://127.0.0.1/\"\n[alert]\nwindow = \"5 weeks\"\n",
        )
        .unwrap_err();
        assert!(e.0.starts_with("w.toml:4:"), "{e}");
        let e = WatchConfig::from_toml("w.toml", "[[target]]\nurl = \"ftp://x/\"\n").unwrap_err();
        assert!(e.0.starts_with("w.toml:2:"), "{e}");
        let e = WatchConfig::from_toml("w.toml", "colour = 1\n").unwrap_err();
        assert!(e.0.starts_with("w.toml:1:"), "{e}");
        let e = WatchConfig::from_toml("w.toml", "").unwrap_err();
        assert!(e.0.contains("nothing to watch"), "{e}");
        let e = WatchConfig::from_toml(
            "w.toml",
            "interval = \"1s\"\nca_files = [\"/nonexistent/ca.pem\"]\n[[target]]\nurl = \"https://127.0.0.1/\"\n",
        )
        .unwrap_err();
        assert!(
            e.0.starts_with("w.toml:2:") && e.0.contains("/nonexistent/ca.pem"),
            "{e}"
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2").unwrap(), Duration::from_secs(2));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("1y").is_err());
    }
}
