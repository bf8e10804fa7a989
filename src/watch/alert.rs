//! Alerts: what an alert says (the condition, and the diagnosis it ran: top causes with their
//! evidence), in the three webhook shapes, and the sender that posts them.
//!
//! The sender runs on its own task behind a bounded queue: monitoring hands a message over with
//! `try_send` and goes on; a webhook that is slow or down costs retries on the sender's task
//! only, and when the queue is full the newest message is dropped (and counted) rather than
//! blocking a probe.

use super::config::{Webhook, WebhookFormat};
use super::metrics::Metrics;
use super::probe::{parse_url, Prober};
use crate::findings::Evidence;
use crate::i18n::Lang;
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Messages waiting for the sender; beyond this, new ones are dropped.
pub const QUEUE: usize = 64;
/// Tries per webhook and message.
const ATTEMPTS: u32 = 4;
/// The first retry waits this long; each later one twice as long.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The deadline of one POST.
const POST_DEADLINE: Duration = Duration::from_secs(5);
/// Evidence items carried per cause (a webhook is read on a phone).
const EVIDENCE_PER_CAUSE: usize = 3;
/// Causes carried per alert.
const TOP_CAUSES: usize = 3;

/// One cause of a diagnosis, ready to show.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CauseView {
    pub cause: String,
    pub title: String,
    pub confidence: f64,
    pub evidence: Vec<Evidence>,
    /// The catalog's first fix, in one line.
    pub fix: Option<String>,
}

/// The diagnosis an alert ran.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct DiagnosisView {
    /// Unix seconds.
    pub at: i64,
    pub causes: Vec<CauseView>,
    /// Why there is no diagnosis (diagnose failed or ran out of time).
    pub error: Option<String>,
    pub elapsed_ms: u64,
}

impl DiagnosisView {
    /// The top causes of a diagnosis, with texts from the catalog in `lang` and secrets
    /// redacted from the evidence.
    pub fn from_diagnosis(d: &crate::diagnose::Diagnosis, at: i64, lang: Lang) -> DiagnosisView {
        let catalog = crate::catalog::catalog();
        let causes = d
            .findings
            .iter()
            .take(TOP_CAUSES)
            .map(|f| {
                let cause = catalog.get(&f.cause);
                CauseView {
                    cause: f.cause.clone(),
                    title: cause.map_or_else(|| f.cause.clone(), |c| c.title.get(lang).to_string()),
                    confidence: f.confidence,
                    evidence: f
                        .evidence
                        .iter()
                        .take(EVIDENCE_PER_CAUSE)
                        .map(|e| Evidence {
                            source: e.source.clone(),
                            location: crate::redact::redact(&e.location).into_owned(),
                            detail: crate::redact::redact(&e.detail).into_owned(),
                        })
                        .collect(),
                    fix: cause.and_then(|c| c.fixes.first()).map(|fix| {
                        first_line(match lang {
                            Lang::En => &fix.en,
                            Lang::Zh => &fix.zh,
                        })
                    }),
                }
            })
            .collect();
        DiagnosisView {
            at,
            causes,
            error: None,
            elapsed_ms: d.elapsed.as_millis() as u64,
        }
    }
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().trim().to_string()
}

/// Firing or resolved.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    Firing,
    Resolved,
}

/// One alert message: what `watch` posts, and what the status page lists.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Alert {
    pub status: AlertStatus,
    /// The same for the firing and the resolve message of one episode.
    pub id: String,
    /// The host `watch` runs on (a fleet has one watch per gateway host).
    pub host: String,
    /// Unix seconds the condition began.
    pub started: i64,
    /// Unix seconds it ended (resolve messages).
    pub ended: Option<i64>,
    /// What held: "5xx rate 40.0 % (12 of 30 responses) over 60 s", "shop: 3 probes failed in
    /// a row (refused)".
    pub reasons: Vec<String>,
    pub diagnosis: Option<DiagnosisView>,
    /// The status page, for links.
    pub page: String,
}

impl Alert {
    /// One paragraph for chat.
    pub fn text(&self) -> String {
        let mut s = match self.status {
            AlertStatus::Firing => format!("🔴 gwdoctor watch on {}: gateway errors\n", self.host),
            AlertStatus::Resolved => format!(
                "✅ gwdoctor watch on {}: resolved after {} s\n",
                self.host,
                self.ended.unwrap_or(self.started) - self.started
            ),
        };
        for r in &self.reasons {
            s.push_str(&format!("• {r}\n"));
        }
        if let Some(d) = &self.diagnosis {
            if let Some(e) = &d.error {
                s.push_str(&format!("diagnosis: {e}\n"));
            }
            if d.causes.is_empty() && d.error.is_none() {
                s.push_str("diagnosis: no known cause in the logs\n");
            }
            for c in &d.causes {
                s.push_str(&format!(
                    "*{}* ({}, {:.0} %)\n",
                    c.title,
                    c.cause,
                    c.confidence * 100.0
                ));
                for e in &c.evidence {
                    s.push_str(&format!("  {}: {}\n", e.location, e.detail));
                }
                if let Some(fix) = &c.fix {
                    s.push_str(&format!("  fix: {fix}\n"));
                }
            }
        }
        s.push_str(&self.page);
        s
    }

    /// The POST body for a webhook of `format`.
    pub fn body(&self, format: WebhookFormat) -> serde_json::Value {
        match format {
            WebhookFormat::Json => serde_json::to_value(self).unwrap_or_default(),
            WebhookFormat::Slack => serde_json::json!({ "text": self.text() }),
            WebhookFormat::Alertmanager => {
                let top = self
                    .diagnosis
                    .as_ref()
                    .and_then(|d| d.causes.first())
                    .map_or("unknown", |c| c.cause.as_str());
                let mut alert = serde_json::json!({
                    "labels": {
                        "alertname": "GatewayErrors",
                        "instance": self.host,
                        "source": "gwdoctor-watch",
                        "severity": "critical",
                    },
                    "annotations": {
                        "summary": self.reasons.join("; "),
                        "description": self.text(),
                        "cause": top,
                    },
                    "startsAt": rfc3339(self.started),
                    "generatorURL": self.page,
                });
                if let Some(ended) = self.ended {
                    alert["endsAt"] = rfc3339(ended).into();
                }
                serde_json::json!([alert])
            }
        }
    }
}

/// `2026-11-22T01:02:03Z`.
pub fn rfc3339(unix: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::collect::logs::time::civil_from_unix(unix);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// Hands alerts to the sender task without ever waiting.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Alert>,
    metrics: Metrics,
}

impl Outbox {
    /// Queues `alert` for every webhook; a full queue drops it (counted as `dropped`).
    pub fn send(&self, alert: Alert) {
        if self.tx.try_send(alert).is_err() {
            self.metrics.webhook("dropped");
        }
    }
}

/// Starts the sender task: every alert is posted to every webhook, with retries and backoff.
pub fn start_sender(
    webhooks: Vec<Webhook>,
    metrics: Metrics,
    prober: Arc<Prober>,
) -> (Outbox, tokio::task::JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Alert>(QUEUE);
    let outbox = Outbox {
        tx,
        metrics: metrics.clone(),
    };
    let task = tokio::spawn(async move {
        while let Some(alert) = rx.recv().await {
            for hook in &webhooks {
                let ok = deliver(&prober, hook, &alert).await;
                metrics.webhook(if ok { "ok" } else { "failed" });
            }
        }
    });
    (outbox, task)
}

async fn deliver(prober: &Prober, hook: &Webhook, alert: &Alert) -> bool {
    let Ok(url) = parse_url(&hook.url) else {
        return false;
    };
    let body = alert.body(hook.format).to_string();
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        match prober
            .post(&url, "application/json", body.as_bytes(), POST_DEADLINE)
            .await
        {
            Ok(_) => return true,
            Err(e) => {
                eprintln!(
                    "gwdoctor watch: webhook {} attempt {attempt}/{ATTEMPTS}: {e}",
                    crate::redact::redact(&hook.url)
                );
                if attempt < ATTEMPTS {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert() -> Alert {
        Alert {
            status: AlertStatus::Firing,
            id: "1".into(),
            host: "gw1".into(),
            started: 1_700_000_000,
            ended: None,
            reasons: vec!["5xx rate 50.0 % (5 of 10 responses) over 60 s".into()],
            diagnosis: Some(DiagnosisView {
                at: 1_700_000_001,
                causes: vec![CauseView {
                    cause: "upstream-refused".into(),
                    title: "Nothing listens".into(),
                    confidence: 0.9,
                    evidence: vec![Evidence::new("error-log", "/l:3", "connect() failed (111)")],
                    fix: Some("start it".into()),
                }],
                error: None,
                elapsed_ms: 5,
            }),
            page: "http://127.0.0.1:9150/".into(),
        }
    }

    #[test]
    fn three_shapes() {
        let a = alert();
        let slack = a.body(WebhookFormat::Slack);
        assert!(slack["text"].as_str().unwrap().contains("upstream-refused"));
        let am = a.body(WebhookFormat::Alertmanager);
        assert_eq!(am[0]["labels"]["alertname"], "GatewayErrors");
        assert_eq!(am[0]["annotations"]["cause"], "upstream-refused");
        assert_eq!(am[0]["startsAt"], "2023-11-14T22:13:20Z");
        assert!(am[0].get("endsAt").is_none());
        let json = a.body(WebhookFormat::Json);
        assert_eq!(json["status"], "firing");
        assert_eq!(
            json["diagnosis"]["causes"][0]["evidence"][0]["location"],
            "/l:3"
        );
    }
}
