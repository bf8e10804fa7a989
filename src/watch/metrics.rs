//! The Prometheus series `watch` exposes at `/metrics` (text exposition format, via
//! prometheus-client). Every name starts with `gwdoctor_`; `contrib/prometheus-rules.yml` and
//! `contrib/grafana-dashboard.json` use them.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn labels<const N: usize>(pairs: [(&str, &str); N]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn phase_histogram() -> Histogram {
    // 1 ms … 16 s: a loopback answer to a gateway timeout.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Where a response was seen: the `source` label of `gwdoctor_responses_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// watch's own probe.
    Probe,
    /// A line of an access log.
    AccessLog,
}

impl Source {
    pub fn label(self) -> &'static str {
        match self {
            Source::Probe => "probe",
            Source::AccessLog => "access_log",
        }
    }
}

/// The series, cheap to clone (each is an `Arc` inside).
#[derive(Clone)]
pub struct Metrics {
    registry: std::sync::Arc<Registry>,
    probe_duration: Family<Labels, Histogram, fn() -> Histogram>,
    responses: Family<Labels, Counter>,
    probe_failures: Family<Labels, Counter>,
    upstream_errors: Family<Labels, Counter>,
    log_lines: Family<Labels, Counter>,
    log_rotations: Family<Labels, Counter>,
    target_up: Family<Labels, Gauge>,
    cert_expiry: Family<Labels, Gauge>,
    error_ratio: FloatGauge,
    last_diagnosis: Family<Labels, FloatGauge>,
    alert_firing: Gauge,
    webhooks: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Default::default(),
            probe_duration: Family::new_with_constructor(phase_histogram as fn() -> Histogram),
            responses: Family::default(),
            probe_failures: Family::default(),
            upstream_errors: Family::default(),
            log_lines: Family::default(),
            log_rotations: Family::default(),
            target_up: Family::default(),
            cert_expiry: Family::default(),
            error_ratio: FloatGauge::default(),
            last_diagnosis: Family::default(),
            alert_firing: Gauge::default(),
            webhooks: Family::default(),
        };
        registry.register(
            "gwdoctor_probe_duration_seconds",
            "Time spent in each phase of a probe (resolve, connect, first_byte, total)",
            m.probe_duration.clone(),
        );
        registry.register(
            "gwdoctor_responses",
            "Responses by status and source: source=\"probe\" (target = the target's name) or source=\"access_log\" (target = the log file). A probe through the watched gateway is in both: compute a 5xx share from one source",
            m.responses.clone(),
        );
        registry.register(
            "gwdoctor_probe_failures",
            "Probes that got no good answer, by reason (refused, connect-timeout, no-response, reset, empty-reply, cert-expired, cert-unknown-issuer, cert-wrong-name, tls-alert, http-5xx, dns-nxdomain, ...)",
            m.probe_failures.clone(),
        );
        registry.register(
            "gwdoctor_upstream_errors",
            "Error-log lines by the cause the signature database names and the upstream they mention",
            m.upstream_errors.clone(),
        );
        registry.register(
            "gwdoctor_log_lines",
            "Log lines read, by file",
            m.log_lines.clone(),
        );
        registry.register(
            "gwdoctor_log_rotations",
            "Log rotations followed, by file and kind (rename, truncate)",
            m.log_rotations.clone(),
        );
        registry.register(
            "gwdoctor_target_up",
            "1 when the target's last probe got an answer below 500",
            m.target_up.clone(),
        );
        registry.register(
            "gwdoctor_cert_expiry_timestamp_seconds",
            "Unix time of the earliest notAfter among the certificates an https target presented, as of the last probe that got them (also when they did not verify)",
            m.cert_expiry.clone(),
        );
        registry.register(
            "gwdoctor_5xx_ratio",
            "Share of responses that were 5xx over the alert window",
            m.error_ratio.clone(),
        );
        registry.register(
            "gwdoctor_last_diagnosis",
            "Confidence of each cause in the last diagnosis an alert ran (series removed when the next diagnosis no longer names it)",
            m.last_diagnosis.clone(),
        );
        registry.register(
            "gwdoctor_alert_firing",
            "1 while watch's own alert condition holds",
            m.alert_firing.clone(),
        );
        registry.register(
            "gwdoctor_webhook_deliveries",
            "Webhook posts by result (ok, failed after retries, dropped because the queue was full)",
            m.webhooks.clone(),
        );
        Metrics {
            registry: std::sync::Arc::new(registry),
            ..m
        }
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    pub fn probe_phase(&self, target: &str, phase: &str, seconds: f64) {
        self.probe_duration
            .get_or_create(&labels([("target", target), ("phase", phase)]))
            .observe(seconds);
    }

    pub fn response(&self, source: Source, target: &str, status: u16) {
        self.responses
            .get_or_create(&labels([
                ("source", source.label()),
                ("target", target),
                ("status", &status.to_string()),
            ]))
            .inc();
    }

    /// The certificate of `target` expires at `unix` seconds.
    pub fn cert_expiry(&self, target: &str, unix: i64) {
        self.cert_expiry
            .get_or_create(&labels([("target", target)]))
            .set(unix);
    }

    pub fn probe_failure(&self, target: &str, reason: &str) {
        self.probe_failures
            .get_or_create(&labels([("target", target), ("reason", reason)]))
            .inc();
    }

    pub fn target_up(&self, target: &str, up: bool) {
        self.target_up
            .get_or_create(&labels([("target", target)]))
            .set(i64::from(up));
    }

    pub fn upstream_error(&self, cause: &str, upstream: &str) {
        self.upstream_errors
            .get_or_create(&labels([("cause", cause), ("upstream", upstream)]))
            .inc();
    }

    pub fn log_lines(&self, file: &str, n: u64) {
        if n > 0 {
            self.log_lines
                .get_or_create(&labels([("file", file)]))
                .inc_by(n);
        }
    }

    pub fn log_rotation(&self, file: &str, kind: &str, n: u64) {
        if n > 0 {
            self.log_rotations
                .get_or_create(&labels([("file", file), ("kind", kind)]))
                .inc_by(n);
        }
    }

    pub fn error_ratio(&self, ratio: f64) {
        self.error_ratio.set(ratio);
    }

    /// Replaces the last diagnosis: one series per cause, valued by its confidence.
    pub fn diagnosis(&self, causes: &[(String, f64)]) {
        self.last_diagnosis.clear();
        for (cause, confidence) in causes {
            self.last_diagnosis
                .get_or_create(&labels([("cause", cause)]))
                .set(*confidence);
        }
    }

    pub fn alert_firing(&self, firing: bool) {
        self.alert_firing.set(i64::from(firing));
    }

    pub fn webhook(&self, result: &str) {
        self.webhooks
            .get_or_create(&labels([("result", result)]))
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_exposed_with_their_labels() {
        let m = Metrics::new();
        m.response(Source::Probe, "shop", 502);
        m.response(Source::AccessLog, "/var/log/nginx/access.log", 200);
        m.cert_expiry("shop", 1_800_000_000);
        m.probe_failure("shop", "refused");
        m.upstream_error("upstream-refused", "127.0.0.1:9000");
        m.probe_phase("shop", "connect", 0.002);
        m.diagnosis(&[("upstream-refused".into(), 0.9)]);
        let text = m.encode();
        assert!(
            text.contains(
                r#"gwdoctor_responses_total{source="probe",target="shop",status="502"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"gwdoctor_responses_total{source="access_log",target="/var/log/nginx/access.log",status="200"} 1"#));
        assert!(
            text.contains(r#"gwdoctor_cert_expiry_timestamp_seconds{target="shop"} 1800000000"#)
        );
        assert!(text.contains(r#"gwdoctor_probe_failures_total{target="shop",reason="refused"} 1"#));
        assert!(text.contains(
            r#"gwdoctor_upstream_errors_total{cause="upstream-refused",upstream="127.0.0.1:9000"} 1"#
        ));
        assert!(text
            .contains(r#"gwdoctor_probe_duration_seconds_count{target="shop",phase="connect"} 1"#));
        assert!(text.contains(r#"gwdoctor_last_diagnosis{cause="upstream-refused"} 0.9"#));
        m.diagnosis(&[]);
        assert!(!m.encode().contains("gwdoctor_last_diagnosis{"));
    }
}
