//! Renders a [`Diagnosis`]: a one-sentence verdict, the findings with evidence and fix, then the
//! checks, so the whole walk is visible. Text, JSON (exactly `shared/interface.md`), Markdown
//! for a ticket, and one self-contained HTML file that draws the request path with the failing
//! hop marked.

use super::findings::{check_json, checks_text, finding_json, finding_text};
use super::text::{styled, wrapped, BOLD, DIM};
use crate::catalog::{catalog, Layer};
use crate::diagnose::Diagnosis;
use crate::findings::{Finding, Status};
use crate::i18n::Lang;
use crate::redact::redact;
use serde_json::{json, Value};
use std::fmt::Write;

/// The one sentence a person on call reads first.
pub fn verdict(d: &Diagnosis, lang: Lang) -> String {
    let Some(top) = d.findings.first() else {
        let failed = d.checks.iter().filter(|c| c.status == Status::Fail).count();
        let passed = d.checks.iter().filter(|c| c.status == Status::Pass).count();
        if failed == 0 && passed == 0 {
            // Every step was skipped: no evidence either way, which is not health.
            return match lang {
                Lang::En => "Nothing to go on: no configuration, log, URL or host was examined; see the checks below.".to_string(),
                Lang::Zh => "没有可依据的证据：未检查任何配置、日志、URL 或主机；见下方检查列表。".to_string(),
            };
        }
        return match (lang, failed) {
            (Lang::En, 0) => format!("Healthy: {passed} checks passed and nothing points to a gateway error."),
            (Lang::Zh, 0) => format!("健康：{passed} 项检查通过，没有发现网关错误的迹象。"),
            (Lang::En, n) => format!("Not enough evidence to name a cause: {n} checks failed without a known signature; see the checks below."),
            (Lang::Zh, n) => format!("证据不足，无法确定原因：{n} 项检查失败但没有已知特征；见下方检查列表。"),
        };
    };
    let title = catalog()
        .get(&top.cause)
        .map(|c| c.title.get(lang))
        .unwrap_or(&top.cause);
    let proof = top
        .evidence
        .first()
        .map(|e| e.location.clone())
        .unwrap_or_default();
    match lang {
        Lang::En => format!(
            "Most likely: {title} ({}, {:.0}% sure), shown by {proof}.",
            top.cause,
            top.confidence * 100.0
        ),
        Lang::Zh => format!(
            "最可能的原因：{title}（{}，把握 {:.0}%），证据见 {proof}。",
            top.cause,
            top.confidence * 100.0
        ),
    }
}

pub fn text(d: &Diagnosis, lang: Lang) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", styled(BOLD, &verdict(d, lang)));
    if let Some(target) = &d.target {
        let _ = writeln!(
            out,
            "{}",
            styled(
                DIM,
                &format!("target: {} · {} ms", redact(target), d.elapsed.as_millis())
            )
        );
    }
    if !d.configs.is_empty() {
        let files: Vec<String> = d.configs.iter().map(|p| p.display().to_string()).collect();
        let label = if lang == Lang::Zh {
            "配置"
        } else {
            "configuration"
        };
        let _ = writeln!(
            out,
            "{}",
            styled(DIM, &format!("{label}: {}", files.join(", ")))
        );
    }
    if !d.findings.is_empty() {
        let _ = writeln!(
            out,
            "\n{}",
            styled(
                BOLD,
                if lang == Lang::Zh {
                    "发现（按可能性排序）"
                } else {
                    "Findings, most likely first"
                }
            )
        );
        for f in &d.findings {
            finding_text(&mut out, f, lang);
        }
    }
    let _ = writeln!(
        out,
        "\n{}",
        styled(
            BOLD,
            if lang == Lang::Zh {
                "检查过程"
            } else {
                "The walk"
            }
        )
    );
    checks_text(&mut out, &d.checks);
    if let Some(top) = d.findings.first() {
        let _ = writeln!(out);
        wrapped(
            &mut out,
            0,
            &styled(DIM, &format!("gwdoctor explain {}", top.cause)),
        );
    }
    out
}

/// The JSON object of `shared/interface.md`.
pub fn json(d: &Diagnosis, lang: Lang) -> Value {
    json!({
        "target": d.target.as_deref().map(|t| redact(t).into_owned()),
        "healthy": d.healthy(),
        "verdict": verdict(d, lang),
        "findings": d.findings.iter().map(|f| finding_json(f, lang)).collect::<Vec<_>>(),
        "checks": d.checks.iter().map(check_json).collect::<Vec<_>>(),
        "configs": d.configs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "elapsed_ms": d.elapsed.as_millis() as u64,
    })
}

fn md_escape(s: &str) -> String {
    redact(s).replace('|', "\\|").replace('\n', " ")
}

pub fn markdown(d: &Diagnosis, lang: Lang) -> String {
    let mut out = String::from("# gwdoctor diagnosis\n\n");
    let _ = writeln!(out, "**{}**\n", verdict(d, lang));
    if let Some(t) = &d.target {
        let _ = writeln!(out, "Target: `{}`\n", redact(t));
    }
    for c in &d.configs {
        let _ = writeln!(out, "Configuration: `{}`\n", c.display());
    }
    for (i, f) in d.findings.iter().enumerate() {
        let cause = catalog().get(&f.cause);
        let _ = writeln!(
            out,
            "## {}. `{}` — {} ({:.0}%)\n",
            i + 1,
            f.cause,
            cause.map(|c| c.title.get(lang)).unwrap_or(""),
            f.confidence * 100.0
        );
        if let Some(c) = cause {
            let _ = writeln!(out, "{}\n", c.summary.get(lang));
        }
        out.push_str("Evidence:\n\n");
        for e in &f.evidence {
            let _ = writeln!(out, "- `{}` {}", e.location, md_escape(&e.detail));
        }
        if let Some(fix) = cause.and_then(|c| c.fixes.first()) {
            let _ = writeln!(
                out,
                "\nFix: {}\n",
                if lang == Lang::Zh { &fix.zh } else { &fix.en }
            );
            if let Some(snippet) = &fix.snippet {
                let _ = writeln!(
                    out,
                    "```{}\n{}\n```\n",
                    fix.lang.as_deref().unwrap_or(""),
                    snippet.trim_end()
                );
            }
        }
    }
    out.push_str("\n## Checks\n\n| check | status | detail | ms |\n|---|---|---|---|\n");
    for c in &d.checks {
        let _ = writeln!(
            out,
            "| {} | {:?} | {} | {} |",
            md_escape(&c.name),
            c.status,
            md_escape(&c.detail),
            c.ms
        );
    }
    out
}

fn html_escape(s: &str) -> String {
    redact(s)
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The hops of the request path as drawn, and which layers of the catalog belong to each.
const HOPS: &[(&str, &str, &[Layer])] = &[
    ("client", "客户端", &[Layer::Client]),
    ("DNS", "DNS", &[Layer::Dns]),
    ("edge / CDN", "边缘 / CDN", &[Layer::Edge]),
    ("gateway", "网关", &[Layer::Gateway]),
    ("network", "网络", &[Layer::Network]),
    (
        "upstream",
        "上游应用",
        &[Layer::Upstream, Layer::Containers],
    ),
    ("host", "主机", &[Layer::Host]),
];

/// One self-contained HTML page (no external assets): verdict, the request path as an SVG with
/// the failing hop marked, findings, checks.
pub fn html(d: &Diagnosis, lang: Lang) -> String {
    let failing: Option<Layer> = d
        .findings
        .first()
        .and_then(|f| catalog().get(&f.cause))
        .map(|c| c.layer);
    let mut svg = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 920 120" role="img" aria-label="request path">"#,
    );
    for (i, (en, zh, layers)) in HOPS.iter().enumerate() {
        let x = 10 + i as i32 * 130;
        let bad = failing.is_some_and(|l| layers.contains(&l));
        let (fill, stroke) = if bad {
            ("#fde2e1", "#c62828")
        } else {
            ("#e8f5e9", "#2e7d32")
        };
        let _ = write!(
            svg,
            r#"<g class="hop{}"><rect x="{x}" y="30" width="110" height="50" rx="8" fill="{fill}" stroke="{stroke}" stroke-width="{}"/><text x="{}" y="60" text-anchor="middle" font-size="14">{}</text></g>"#,
            if bad { " failing" } else { "" },
            if bad { 3 } else { 1 },
            x + 55,
            if lang == Lang::Zh { zh } else { en }
        );
        if i + 1 < HOPS.len() {
            let _ = write!(
                svg,
                r##"<line x1="{}" y1="55" x2="{}" y2="55" stroke="#555" stroke-width="2"/>"##,
                x + 110,
                x + 130
            );
        }
        if bad {
            let _ = write!(
                svg,
                r##"<text x="{}" y="22" text-anchor="middle" font-size="13" fill="#c62828">✗ {}</text>"##,
                x + 55,
                html_escape(&d.findings[0].cause)
            );
        }
    }
    svg.push_str("</svg>");
    let mut findings = String::new();
    for f in &d.findings {
        let cause = catalog().get(&f.cause);
        let _ = write!(
            findings,
            "<section class=\"finding\"><h3><code>{}</code> {} <span class=\"conf\">{:.0}%</span></h3><p>{}</p><ul>",
            html_escape(&f.cause),
            html_escape(cause.map(|c| c.title.get(lang)).unwrap_or("")),
            f.confidence * 100.0,
            html_escape(cause.map(|c| c.summary.get(lang)).unwrap_or(""))
        );
        for e in &f.evidence {
            let _ = write!(
                findings,
                "<li><code>{}</code> {}</li>",
                html_escape(&e.location),
                html_escape(&e.detail)
            );
        }
        findings.push_str("</ul>");
        if let Some(fix) = cause.and_then(|c| c.fixes.first()) {
            let _ = write!(
                findings,
                "<p><b>{}</b> {}</p>",
                if lang == Lang::Zh {
                    "修复："
                } else {
                    "Fix:"
                },
                html_escape(if lang == Lang::Zh { &fix.zh } else { &fix.en })
            );
            if let Some(snippet) = &fix.snippet {
                let _ = write!(findings, "<pre>{}</pre>", html_escape(snippet));
            }
        }
        findings.push_str("</section>");
    }
    let mut checks = String::new();
    for c in &d.checks {
        let _ = write!(
            checks,
            "<tr class=\"{:?}\"><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td></tr>",
            c.status,
            html_escape(&c.name),
            c.status,
            html_escape(&c.detail),
            c.ms
        );
    }
    format!(
        r#"<!DOCTYPE html>
<html lang="{lang_attr}"><head><meta charset="utf-8"><title>gwdoctor diagnosis</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}}
h1{{font-size:1.4em}} .verdict{{font-size:1.15em;font-weight:600;padding:.6em;border-left:5px solid #c62828;background:#fff5f5}}
.healthy .verdict{{border-color:#2e7d32;background:#f1f8f1}}
.finding{{border:1px solid #ddd;border-radius:6px;padding:.2em 1em;margin:1em 0}} .conf{{color:#666;font-weight:normal}}
pre{{background:#f6f8fa;padding:.6em;overflow-x:auto}} table{{border-collapse:collapse;width:100%}}
td{{border-bottom:1px solid #eee;padding:.3em;vertical-align:top}} tr.Fail td:nth-child(2){{color:#c62828}} tr.Pass td:nth-child(2){{color:#2e7d32}}
</style></head>
<body class="{body_class}"><h1>gwdoctor</h1>
<p class="verdict">{verdict}</p>
<p>{target}</p>{configs}
{svg}
<h2>{findings_title}</h2>{findings}
<h2>{checks_title}</h2><table>{checks}</table>
</body></html>
"#,
        lang_attr = if lang == Lang::Zh { "zh" } else { "en" },
        body_class = if d.healthy() { "healthy" } else { "broken" },
        verdict = html_escape(&verdict(d, lang)),
        target = d.target.as_deref().map(html_escape).unwrap_or_default(),
        configs = d
            .configs
            .iter()
            .map(|c| format!(
                "<p>{}: <code>{}</code></p>",
                if lang == Lang::Zh {
                    "配置"
                } else {
                    "configuration"
                },
                html_escape(&c.display().to_string())
            ))
            .collect::<String>(),
        findings_title = if lang == Lang::Zh {
            "发现"
        } else {
            "Findings"
        },
        checks_title = if lang == Lang::Zh {
            "检查过程"
        } else {
            "The walk"
        },
    )
}

/// Findings of a diagnosis of one cause, for tests and callers that want the ids.
pub fn causes(findings: &[Finding]) -> Vec<&str> {
    findings.iter().map(|f| f.cause.as_str()).collect()
}
