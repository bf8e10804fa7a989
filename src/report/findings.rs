//! Findings and checks as every command renders them: the text block (cause, confidence,
//! evidence, title and fix from the catalog) and the JSON objects of `shared/interface.md`.

use super::text::{styled, wrapped, BOLD, CAUSE, COMMAND, DIM};
use crate::catalog::catalog;
use crate::findings::{Check, Finding};
use crate::i18n::{label, Lang};
use crate::redact::redact;
use serde_json::{json, Value};
use std::fmt::Write;

/// How much of an evidence detail a text report shows.
const MAX_DETAIL: usize = 300;

/// One finding as text: heading, evidence, what to confirm, the first fix.
pub fn finding_text(out: &mut String, finding: &Finding, lang: Lang) {
    let cause = catalog().get(&finding.cause);
    let title = cause.map(|c| c.title.get(lang)).unwrap_or("");
    let _ = writeln!(
        out,
        "{} {}  {}  {}",
        styled(CAUSE, "●"),
        styled(CAUSE, &finding.cause),
        styled(BOLD, title),
        styled(DIM, &format!("({:.0}%)", finding.confidence * 100.0))
    );
    for e in &finding.evidence {
        let detail: String = redact(&e.detail).chars().take(MAX_DETAIL).collect();
        let _ = writeln!(
            out,
            "    {} {}",
            styled(DIM, &format!("{}:", e.location)),
            detail
        );
    }
    for c in &finding.confirm {
        wrapped(out, 4, &format!("? {c}"));
    }
    if let Some(cause) = cause {
        if let Some(fix) = cause.fixes.first() {
            let text = if lang == Lang::Zh { &fix.zh } else { &fix.en };
            let mut item = String::new();
            wrapped(&mut item, 6, text);
            let _ = write!(
                out,
                "    {} {}",
                styled(BOLD, &format!("{}:", label(lang, "fix"))),
                item.trim_start()
            );
            if let Some(snippet) = &fix.snippet {
                for line in snippet.trim_end().lines() {
                    let _ = writeln!(out, "      {}", styled(COMMAND, line));
                }
            }
        }
    }
}

/// The checks as a compact list: `✓ name  detail  (12 ms)`.
pub fn checks_text(out: &mut String, checks: &[Check]) {
    for check in checks {
        let mark = check.status.mark();
        let detail: String = redact(&check.detail).chars().take(MAX_DETAIL).collect();
        let _ = writeln!(
            out,
            "  {mark} {}  {}  {}",
            styled(BOLD, &check.name),
            detail,
            styled(DIM, &format!("({} ms)", check.ms))
        );
    }
}

/// A finding as the JSON object of `shared/interface.md`.
pub fn finding_json(finding: &Finding, lang: Lang) -> Value {
    let cause = catalog().get(&finding.cause);
    json!({
        "cause": finding.cause,
        "confidence": (finding.confidence * 100.0).round() / 100.0,
        "title": cause.map(|c| c.title.get(lang)),
        "explanation": cause.map(|c| c.summary.get(lang)),
        "evidence": finding.evidence.iter().map(|e| json!({
            "source": e.source, "location": e.location, "detail": redact(&e.detail),
        })).collect::<Vec<_>>(),
        "confirm": finding.confirm,
        "fix": cause.and_then(|c| c.fixes.first()).map(|f| {
            let text = if lang == Lang::Zh { &f.zh } else { &f.en };
            match &f.snippet {
                Some(snippet) => format!("{text}\n{snippet}"),
                None => text.clone(),
            }
        }),
    })
}

pub fn check_json(check: &Check) -> Value {
    json!({ "name": check.name, "status": check.status, "detail": redact(&check.detail), "ms": check.ms })
}
