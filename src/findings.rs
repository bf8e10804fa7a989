//! The common currency of the pipeline: collectors produce [`Evidence`], rules turn evidence into
//! [`Finding`]s (a cause id of the catalog, a confidence, the evidence it rests on), and every
//! command also reports the [`Check`]s it ran, so the user sees the whole walk, passed or not.
//!
//! A finding never carries free text of its own about the cause: its title, explanation and fix
//! come from the catalog, in the user's language, when it is rendered.

use serde::Serialize;

/// One fact and where it came from, so every claim in a report can point at it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// What kind of source: `error-log`, `access-log`, `fpm-log`, `app-log`, `kernel-log`,
    /// `config`, `probe`, `host`, `live-check`.
    pub source: String,
    /// Where exactly: `/var/log/nginx/error.log:1042`, `/etc/nginx/conf.d/app.conf:12`,
    /// `probe tcp 127.0.0.1:8000`, `/proc/812/limits`.
    pub location: String,
    /// The fact, with its numbers: the log line, "connect refused in 0.2 ms", "1021 of 1024 fds".
    pub detail: String,
}

impl Evidence {
    pub fn new(source: &str, location: impl Into<String>, detail: impl Into<String>) -> Evidence {
        Evidence {
            source: source.to_string(),
            location: location.into(),
            detail: detail.into(),
        }
    }
}

/// A root cause that the evidence points to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    /// A cause id of the catalog (`shared/causes.md`).
    pub cause: String,
    /// 0..1: how sure the rule is, given the evidence it saw.
    pub confidence: f64,
    pub evidence: Vec<Evidence>,
    /// What would confirm or refute it ("run `ss -ltnp 'sport = :8000'`"); empty when the
    /// evidence is conclusive.
    pub confirm: Vec<String>,
}

impl Finding {
    pub fn new(cause: &str, confidence: f64, evidence: Vec<Evidence>) -> Finding {
        Finding {
            cause: cause.to_string(),
            confidence: confidence.clamp(0.0, 1.0),
            evidence,
            confirm: Vec::new(),
        }
    }

    pub fn confirm(mut self, how: impl Into<String>) -> Finding {
        self.confirm.push(how.into());
        self
    }
}

/// The outcome of one step of the walk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
    Skip,
}

impl Status {
    /// The mark a terminal shows for it: `✓ ! ✗ -`.
    pub fn mark(self) -> &'static str {
        match self {
            Status::Pass => "✓",
            Status::Warn => "!",
            Status::Fail => "✗",
            Status::Skip => "-",
        }
    }
}

/// One step of the walk and how it went.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub detail: String,
    /// How long the step took, in milliseconds.
    pub ms: u64,
}

impl Check {
    pub fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        ms: u64,
    ) -> Check {
        Check {
            name: name.into(),
            status,
            detail: detail.into(),
            ms,
        }
    }
}

/// Orders findings most likely first and merges findings of the same cause (their evidence is
/// pooled, the confidence is the highest one seen).
pub fn rank(findings: Vec<Finding>) -> Vec<Finding> {
    let mut merged: Vec<Finding> = Vec::new();
    for finding in findings {
        match merged.iter_mut().find(|f| f.cause == finding.cause) {
            Some(existing) => {
                existing.confidence = existing.confidence.max(finding.confidence);
                for e in finding.evidence {
                    if !existing.evidence.contains(&e) {
                        existing.evidence.push(e);
                    }
                }
                for c in finding.confirm {
                    if !existing.confirm.contains(&c) {
                        existing.confirm.push(c);
                    }
                }
            }
            None => merged.push(finding),
        }
    }
    merged.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rank_merges_by_cause_and_orders_by_confidence() {
        let e = |d: &str| Evidence::new("error-log", "x:1", d);
        let ranked = rank(vec![
            Finding::new("upstream-refused", 0.5, vec![e("a")]),
            Finding::new("fpm-max-children", 0.9, vec![e("b")]),
            Finding::new("upstream-refused", 0.7, vec![e("c"), e("a")]),
        ]);
        assert_eq!(ranked[0].cause, "fpm-max-children");
        assert_eq!(ranked[1].cause, "upstream-refused");
        assert_eq!(ranked[1].confidence, 0.7);
        assert_eq!(ranked[1].evidence.len(), 2);
    }
}
