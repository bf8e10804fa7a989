//! Renders an [`Explanation`] as text (80 columns) or JSON (`shared/interface.md`).

use super::text::{cause_card, cause_heading, styled, wrapped, Placeholders, BOLD, DIM, PRODUCT};
use crate::catalog::{catalog, Cause, Signature};
use crate::explain::{ClassifiedLine, Explanation, InputKind};
use crate::i18n::{label, Lang};
use serde_json::{json, Map, Value};
use std::fmt::Write;

/// How many classified lines the text report lists one by one before summarising.
const MAX_LISTED_LINES: usize = 40;

/// The text report.
pub fn text(e: &Explanation, lang: Lang) -> String {
    let mut out = String::new();
    for (flag, key) in [(e.binary, "binary"), (e.lossy, "lossy")] {
        if flag {
            let _ = writeln!(
                out,
                "{}",
                styled(DIM, &format!("note: {}", label(lang, key)))
            );
        }
    }
    if e.cut_lines > 0 {
        let _ = writeln!(
            out,
            "{}",
            styled(
                DIM,
                &format!(
                    "note: {} {} {} MiB",
                    e.cut_lines,
                    label(lang, "long-line"),
                    crate::input::MAX_LINE >> 20
                )
            )
        );
    }
    match e.kind {
        InputKind::CauseId => {
            if let Some(cause) = e.causes.first().and_then(|c| catalog().get(&c.id)) {
                cause_card(&mut out, cause, lang, &Placeholders::default());
            }
        }
        InputKind::Page => page_text(&mut out, e, lang),
        InputKind::Lines if !e.pages.is_empty() => page_text(&mut out, e, lang),
        InputKind::Lines => lines_text(&mut out, e, lang),
    }
    out
}

fn page_text(out: &mut String, e: &Explanation, lang: Lang) {
    if e.pages.is_empty() {
        wrapped(out, 0, label(lang, "nothing"));
        return;
    }
    let _ = writeln!(out, "{}", styled(BOLD, label(lang, "page")));
    for page in &e.pages {
        let sig = page.signature;
        let status = sig
            .status
            .filter(|&s| s != 0)
            .map(|s| format!(" [{s}]"))
            .unwrap_or_default();
        let version = page
            .fields
            .iter()
            .find(|(k, _)| k == "value")
            .map(|(_, v)| format!(" {v}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{}{}{}",
            styled(PRODUCT, &format!("{}{version}", sig.product)),
            status,
            styled(DIM, &format!("  ({})", sig.id))
        );
        wrapped(out, 2, sig.note.get(lang));
    }
    top_cause(out, e, lang, &Placeholders::default());
}

fn lines_text(out: &mut String, e: &Explanation, lang: Lang) {
    if e.lines.is_empty() {
        wrapped(out, 0, label(lang, "nothing"));
        return;
    }
    if e.lines.len() == 1 {
        let line = &e.lines[0];
        line_detail(out, line, lang);
        let placeholders = line
            .fields
            .iter()
            .find(|(k, _)| k == "upstream")
            .map(|(_, v)| Placeholders::from_upstream(v))
            .unwrap_or_default();
        top_cause(out, e, lang, &placeholders);
    } else {
        for line in e.lines.iter().take(MAX_LISTED_LINES) {
            line_summary(out, line);
        }
        if e.recognised_lines > MAX_LISTED_LINES {
            let _ = writeln!(
                out,
                "  … {} {}",
                e.recognised_lines - MAX_LISTED_LINES,
                label(lang, "lines")
            );
        }
        summary(out, e, lang);
    }
    if e.unrecognised_lines > 0 {
        let examples: Vec<String> = e
            .unrecognised_examples
            .iter()
            .map(usize::to_string)
            .collect();
        let _ = writeln!(
            out,
            "\n{}",
            styled(
                DIM,
                &format!(
                    "{}: {} {} ({} {} {})",
                    label(lang, "unrecognised"),
                    e.unrecognised_lines,
                    label(lang, "lines"),
                    label(lang, "example"),
                    label(lang, "line"),
                    examples.join(", ")
                )
            )
        );
    }
}

fn status_text(sig: &Signature, lang: Lang) -> String {
    match sig.status {
        Some(0) => format!(
            "{}: {}",
            label(lang, "client-saw"),
            label(lang, "no-status")
        ),
        Some(status) => format!("{}: {status}", label(lang, "client-saw")),
        None => String::new(),
    }
}

fn line_detail(out: &mut String, line: &ClassifiedLine, lang: Lang) {
    let sig = line.signature;
    let level = line
        .level
        .as_deref()
        .map(|l| format!(" [{l}]"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{}{}  {}",
        styled(PRODUCT, &sig.product),
        level,
        styled(
            DIM,
            &format!("{} {} · {}", label(lang, "line"), line.number, sig.id)
        )
    );
    for (name, value) in &line.fields {
        let _ = writeln!(out, "  {} {}", styled(DIM, &format!("{name:<9}")), value);
    }
    let status = status_text(sig, lang);
    if !status.is_empty() {
        let _ = writeln!(out, "  {}", styled(BOLD, &status));
    }
    let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "meaning")));
    wrapped(out, 2, sig.note.get(lang));
    let _ = writeln!(out);
}

fn line_summary(out: &mut String, line: &ClassifiedLine) {
    let causes = if line.causes.is_empty() {
        "-".to_string()
    } else {
        line.causes.join(", ")
    };
    let upstream = line
        .fields
        .iter()
        .find(|(k, _)| k == "upstream")
        .map(|(_, v)| format!("  {v}"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{:>5}  {} {}{}",
        line.number,
        styled(PRODUCT, &format!("{:<8}", line.signature.product)),
        styled(BOLD, &causes),
        styled(DIM, &upstream)
    );
}

/// Per cause: count, title and the first thing to check.
fn summary(out: &mut String, e: &Explanation, lang: Lang) {
    let _ = writeln!(
        out,
        "\n{}  ({} / {} {})",
        styled(BOLD, label(lang, "summary")),
        e.recognised_lines,
        e.total_lines,
        label(lang, "lines")
    );
    for count in e.causes.iter().filter(|c| c.count > 0) {
        let Some(cause) = catalog().get(&count.id) else {
            continue;
        };
        let _ = writeln!(out, "{:>5}× {}", count.count, styled(BOLD, &cause.id));
        wrapped(out, 7, cause.title.get(lang));
        if let Some(check) = cause.checks.first() {
            let text = if lang == Lang::Zh {
                &check.zh
            } else {
                &check.en
            };
            wrapped(out, 7, &format!("→ {text}"));
        }
    }
    let alternatives: Vec<&str> = e
        .causes
        .iter()
        .filter(|c| c.count == 0)
        .map(|c| c.id.as_str())
        .collect();
    if !alternatives.is_empty() {
        let _ = writeln!(out, "\n{}:", styled(BOLD, label(lang, "also-possible")));
        wrapped(out, 2, &alternatives.join(", "));
    }
    if let Some(first) = e.causes.first() {
        let _ = writeln!(
            out,
            "\n{}",
            styled(DIM, &format!("gwdoctor explain {}", first.id))
        );
    }
}

/// The full card of the most named cause, and the headings of the others.
fn top_cause(out: &mut String, e: &Explanation, lang: Lang, placeholders: &Placeholders) {
    let causes: Vec<&Cause> = e
        .causes
        .iter()
        .filter_map(|c| catalog().get(&c.id))
        .collect();
    let Some((first, rest)) = causes.split_first() else {
        let _ = writeln!(out);
        wrapped(out, 0, label(lang, "product-only"));
        return;
    };
    let _ = writeln!(out);
    cause_card(out, first, lang, placeholders);
    if !rest.is_empty() {
        let _ = writeln!(out, "\n{}", styled(BOLD, label(lang, "cause-list")));
        for cause in rest {
            cause_heading(out, cause, lang);
        }
    }
}

fn fields_json(fields: &[(String, String)]) -> Value {
    Value::Object(
        fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect::<Map<_, _>>(),
    )
}

fn cause_json(cause: &Cause, lang: Lang) -> Value {
    json!({
        "cause": cause.id,
        "layer": cause.layer.name(),
        "statuses": cause.statuses,
        "title": cause.title.get(lang),
        "explanation": cause.summary.get(lang),
        "technical": cause.technical.get(lang),
        "checks": cause.checks.iter().map(|c| json!({
            "text": if lang == Lang::Zh { &c.zh } else { &c.en },
            "cmd": c.cmd,
        })).collect::<Vec<_>>(),
        "fix": cause.fixes.iter().map(|f| json!({
            "text": if lang == Lang::Zh { &f.zh } else { &f.en },
            "lang": f.lang,
            "snippet": f.snippet,
        })).collect::<Vec<_>>(),
        "related": cause.related,
    })
}

/// The JSON report: `{"product": …, "causes": […], …}` as `shared/interface.md` promises.
pub fn json(e: &Explanation, lang: Lang) -> Value {
    let kind = match e.kind {
        InputKind::CauseId => "cause-id",
        InputKind::Lines => "lines",
        InputKind::Page => "page",
    };
    let lines: Vec<Value> = e
        .lines
        .iter()
        .map(|l| {
            json!({
                "line": l.number,
                "product": l.signature.product,
                "signature": l.signature.id,
                "causes": l.causes,
                "status": l.signature.status,
                "time": l.time,
                "level": l.level,
                "fields": fields_json(&l.fields),
                "note": l.signature.note.get(lang),
                "text": l.text,
            })
        })
        .collect();
    let pages: Vec<Value> = e
        .pages
        .iter()
        .map(|p| {
            json!({
                "product": p.signature.product,
                "signature": p.signature.id,
                "causes": p.causes,
                "status": p.signature.status,
                "fields": fields_json(&p.fields),
                "note": p.signature.note.get(lang),
            })
        })
        .collect();
    let counts: Map<String, Value> = e
        .causes
        .iter()
        .map(|c| (c.id.clone(), json!(c.count)))
        .collect();
    let mentions: Map<String, Value> = e
        .causes
        .iter()
        .map(|c| (c.id.clone(), json!(c.mentions)))
        .collect();
    let mut warnings = Vec::new();
    if e.binary {
        warnings.push(label(lang, "binary").to_string());
    }
    if e.lossy {
        warnings.push(label(lang, "lossy").to_string());
    }
    json!({
        "input": kind,
        "product": e.product,
        "causes": e.cause_ids(),
        "recognised": e.recognised(),
        "counts": counts,
        "mentions": mentions,
        "lines": lines,
        "pages": pages,
        "total_lines": e.total_lines,
        "recognised_lines": e.recognised_lines,
        "unrecognised_lines": e.unrecognised_lines,
        "unrecognised_examples": e.unrecognised_examples,
        "cut_lines": e.cut_lines,
        "warnings": warnings,
        "explanations": e.causes.iter().filter_map(|c| catalog().get(&c.id)).map(|c| cause_json(c, lang)).collect::<Vec<_>>(),
    })
}
