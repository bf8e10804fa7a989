//! The status page (`/`), the Prometheus exposition (`/metrics`) and the same state as JSON
//! (`/api/status`). The page is rendered on the server, in one response, with its style and its
//! chart inline: no script, no external asset, so it works on an air-gapped host and in a
//! terminal browser alike. It refreshes itself every 10 s.

use super::{unix_now, Shared, CHART_MINUTES};
use crate::collect::probe::tls::EXPIRY_WARNING_DAYS;
use crate::i18n::Lang;
use axum::extract::State as Extract;
use axum::http::header;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use axum::Router;
use std::fmt::Write;
use std::sync::Arc;

pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/metrics", get(metrics))
        .route("/api/status", get(status_json))
        .with_state(shared)
}

async fn metrics(Extract(shared): Extract<Arc<Shared>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        shared.metrics.encode(),
    )
}

async fn status_json(Extract(shared): Extract<Arc<Shared>>) -> impl IntoResponse {
    let now = unix_now();
    let state = shared.state();
    let body = serde_json::json!({
        "now": now,
        "started": state.started,
        "targets": state.targets,
        "logs": state.logs,
        "ratio_5xx": state.ratio.0,
        "responses_in_window": state.ratio.1,
        "firing": state.firing,
        "diagnosis": state.diagnosis,
        "alerts": state.alerts,
        "causes": state.causes,
        "minutes": state.minutes.dense(now, CHART_MINUTES),
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
}

async fn index(Extract(shared): Extract<Arc<Shared>>) -> Html<String> {
    Html(render(&shared, unix_now()))
}

/// English or Chinese.
fn t(lang: Lang, en: &'static str, zh: &'static str) -> &'static str {
    match lang {
        Lang::En => en,
        Lang::Zh => zh,
    }
}

/// Escapes text for HTML element content and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:24px;color:#1d2127;background:#fafafa}\
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px}\
.muted{color:#667}.ok{color:#0a7d32}.bad{color:#c0262d}.unk{color:#8a6d00}.warn{color:#a35a00}\
table{border-collapse:collapse;background:#fff}td,th{border:1px solid #dde;padding:5px 9px;text-align:left;vertical-align:top}\
.banner{padding:10px 14px;border-radius:6px;margin:12px 0;font-weight:600}\
.banner.ok{background:#e3f6e8}.banner.bad{background:#fbe3e4}\
.cause{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;margin:8px 0}\
code{font:13px ui-monospace,monospace;background:#f0f0f4;padding:1px 4px;word-break:break-all}\
svg{background:#fff;border:1px solid #dde}";

/// The whole page.
pub fn render(shared: &Shared, now: i64) -> String {
    let lang = shared.lang;
    let state = shared.state();
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"{}\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"10\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>gwdoctor watch · {}</title><style>{STYLE}</style></head><body>",
        t(lang, "en", "zh"),
        esc(&shared.host)
    );
    let _ = write!(
        h,
        "<h1>gwdoctor watch · {}</h1><div class=\"muted\">{} {} UTC · {} {} s</div>",
        esc(&shared.host),
        t(lang, "as of", "时间"),
        crate::collect::logs::time::format(now),
        t(lang, "running for", "已运行"),
        now - state.started
    );
    match &state.firing {
        Some(f) => {
            let _ = write!(
                h,
                "<div class=\"banner bad\" id=\"alert-state\">{} {} UTC<ul>",
                t(lang, "ALERT firing since", "告警中，开始于"),
                crate::collect::logs::time::format(f.started)
            );
            for r in &f.reasons {
                let _ = write!(h, "<li>{}</li>", esc(r));
            }
            h.push_str("</ul></div>");
        }
        None => {
            let _ = write!(
                h,
                "<div class=\"banner ok\" id=\"alert-state\">{}</div>",
                t(
                    lang,
                    "No alert: all conditions are within their limits.",
                    "无告警：各项指标均在阈值内。"
                )
            );
        }
    }

    // Targets.
    let _ = write!(
        h,
        "<h2>{}</h2><table id=\"targets\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        t(lang, "Targets", "探测目标"),
        t(lang, "target", "目标"),
        t(lang, "state", "状态"),
        t(lang, "last probe", "最近一次探测"),
        t(lang, "certificate", "证书"),
        t(lang, "failures in a row", "连续失败"),
        t(lang, "probes / failed", "探测次数 / 失败"),
    );
    if state.targets.is_empty() {
        let _ = write!(
            h,
            "<tr><td colspan=\"6\" class=\"muted\">{}</td></tr>",
            t(lang, "no target: logs only", "没有探测目标：只监视日志")
        );
    }
    for target in &state.targets {
        let (class, word) = match target.up {
            Some(true) => ("ok", t(lang, "UP", "正常")),
            Some(false) => ("bad", t(lang, "DOWN", "故障")),
            None => ("unk", t(lang, "not probed yet", "尚未探测")),
        };
        let why = target
            .last_failure
            .as_deref()
            .map(|r| format!(" ({})", esc(r)))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td><b>{}</b><br><code>{}</code></td><td class=\"{class}\"><b>{word}</b>{why}</td><td>{}</td>{}<td>{}</td><td>{} / {}</td></tr>",
            esc(&target.name),
            esc(&target.url),
            esc(&target.last_detail),
            cert_cell(target, now, lang),
            target.consecutive_failures,
            target.probes,
            target.failures
        );
    }
    h.push_str("</table>");

    // The chart.
    let minutes = state.minutes.dense(now, CHART_MINUTES);
    let _ = write!(
        h,
        "<h2>{}</h2>",
        t(
            lang,
            "5xx responses per minute, last hour",
            "最近一小时每分钟 5xx 响应数"
        )
    );
    h.push_str(&chart(&minutes, lang));
    let _ = write!(
        h,
        "<div class=\"muted\">{}: {:.1} % ({} {})</div>",
        t(
            lang,
            "5xx share over the alert window",
            "告警窗口内 5xx 占比"
        ),
        state.ratio.0 * 100.0,
        state.ratio.1,
        t(lang, "responses", "个响应"),
    );

    // Diagnosis.
    let _ = write!(
        h,
        "<h2>{}</h2><div id=\"diagnosis\">",
        t(lang, "Current diagnosis", "当前诊断")
    );
    match &state.diagnosis {
        None => {
            let _ = write!(
                h,
                "<p class=\"muted\">{}</p>",
                t(
                    lang,
                    "No diagnosis yet: one runs when an alert fires.",
                    "尚无诊断：告警触发时会自动运行诊断。"
                )
            );
        }
        Some(d) => {
            let _ = write!(
                h,
                "<p class=\"muted\">{} {} UTC ({} ms)</p>",
                t(lang, "diagnosed at", "诊断时间"),
                crate::collect::logs::time::format(d.at),
                d.elapsed_ms
            );
            if let Some(e) = &d.error {
                let _ = write!(h, "<p class=\"bad\">{}</p>", esc(e));
            }
            if d.causes.is_empty() && d.error.is_none() {
                let _ = write!(
                    h,
                    "<p>{}</p>",
                    t(
                        lang,
                        "The logs name no known cause.",
                        "日志中没有可识别的故障原因。"
                    )
                );
            }
            for c in &d.causes {
                let _ = write!(
                    h,
                    "<div class=\"cause\"><b>{}</b> <code>{}</code> <span class=\"muted\">{} {:.0} %</span><ul>",
                    esc(&c.title),
                    esc(&c.cause),
                    t(lang, "confidence", "置信度"),
                    c.confidence * 100.0
                );
                for e in &c.evidence {
                    let _ = write!(
                        h,
                        "<li><code>{}</code> {}</li>",
                        esc(&e.location),
                        esc(&e.detail)
                    );
                }
                h.push_str("</ul>");
                if let Some(fix) = &c.fix {
                    let _ = write!(h, "<div>{}: {}</div>", t(lang, "Fix", "修复"), esc(fix));
                }
                h.push_str("</div>");
            }
        }
    }
    h.push_str("</div>");

    // Causes seen in the error logs.
    if !state.causes.is_empty() {
        let _ = write!(
            h,
            "<h2>{}</h2><table id=\"causes\"><tr><th>{}</th><th>{}</th></tr>",
            t(
                lang,
                "Causes in the error logs since start",
                "启动以来错误日志中的原因"
            ),
            t(lang, "cause", "原因"),
            t(lang, "lines", "行数")
        );
        for (cause, n) in &state.causes {
            let _ = write!(
                h,
                "<tr><td><code>{}</code></td><td>{n}</td></tr>",
                esc(cause)
            );
        }
        h.push_str("</table>");
    }

    // Last alerts.
    let _ = write!(
        h,
        "<h2>{}</h2><table id=\"alerts\">",
        t(lang, "Last alerts", "最近的告警")
    );
    if state.alerts.is_empty() {
        let _ = write!(
            h,
            "<tr><td class=\"muted\">{}</td></tr>",
            t(lang, "none", "无")
        );
    }
    for a in state.alerts.iter().rev() {
        let (class, word, at) = match a.status {
            super::alert::AlertStatus::Firing => ("bad", t(lang, "FIRING", "触发"), a.started),
            super::alert::AlertStatus::Resolved => (
                "ok",
                t(lang, "RESOLVED", "恢复"),
                a.ended.unwrap_or(a.started),
            ),
        };
        let top = a
            .diagnosis
            .as_ref()
            .and_then(|d| d.causes.first())
            .map(|c| format!(" → <code>{}</code>", esc(&c.cause)))
            .unwrap_or_default();
        let _ = write!(
            h,
            "<tr><td>{} UTC</td><td class=\"{class}\"><b>{word}</b></td><td>{}{top}</td></tr>",
            crate::collect::logs::time::format(at),
            esc(&a.reasons.join("; "))
        );
    }
    h.push_str("</table>");

    // Logs.
    if !state.logs.is_empty() {
        let _ = write!(
            h,
            "<h2>{}</h2><table id=\"logs\"><tr><th>{}</th><th>{}</th><th>{}</th></tr>",
            t(lang, "Logs followed", "跟踪的日志"),
            t(lang, "file", "文件"),
            t(lang, "lines read", "已读行数"),
            t(lang, "rotations", "轮转次数"),
        );
        for l in &state.logs {
            let err = l
                .error
                .as_deref()
                .map(|e| format!("<br><span class=\"bad\">{}</span>", esc(e)))
                .unwrap_or_default();
            let _ = write!(
                h,
                "<tr><td><code>{}</code> ({}){err}</td><td>{}</td><td>{}</td></tr>",
                esc(&l.path),
                l.kind,
                l.lines,
                l.rotations + l.truncations
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(
        h,
        "<p class=\"muted\"><a href=\"/metrics\">/metrics</a> · <a href=\"/api/status\">/api/status</a></p></body></html>"
    );
    h
}

/// The certificate column: when it expires and in how many days, coloured by urgency (red:
/// expired or not verified, amber: under [`EXPIRY_WARNING_DAYS`] days), the subject and names
/// in the tooltip.
fn cert_cell(target: &super::TargetState, now: i64, lang: Lang) -> String {
    let Some(c) = &target.cert else {
        let text = if target.url.starts_with("https://") {
            t(lang, "none seen yet", "尚未获取")
        } else {
            t(lang, "plain http", "明文 http")
        };
        return format!("<td class=\"cert muted\">{text}</td>");
    };
    let expired = c.expires <= now;
    let days = super::probe::whole_days(c.expires - now).abs();
    let class = if expired || !c.verified {
        "bad"
    } else if days < EXPIRY_WARNING_DAYS {
        "warn"
    } else {
        "ok"
    };
    let unit = |n: i64| if n == 1 { "day" } else { "days" };
    let when = if expired {
        match lang {
            Lang::En if days == 0 => "expired today".to_string(),
            Lang::En => format!("expired {days} {} ago", unit(days)),
            Lang::Zh if days == 0 => "今天已过期".to_string(),
            Lang::Zh => format!("已过期 {days} 天"),
        }
    } else {
        match lang {
            Lang::En => format!("{days} {} left", unit(days)),
            Lang::Zh => format!("剩余 {days} 天"),
        }
    };
    let problem = c
        .problem
        .map(|p| format!("<br><code>{}</code>", esc(p)))
        .unwrap_or_default();
    format!(
        "<td class=\"cert {class}\" title=\"{}: {}\"><b>{when}</b><br>{} {} UTC{problem}</td>",
        esc(&c.subject),
        esc(&c.names.join(", ")),
        t(lang, "until", "有效期至"),
        crate::collect::logs::time::format(c.expires),
    )
}

/// Bars of 5xx per minute (red) over all responses per minute (grey), oldest left.
fn chart(minutes: &[super::Bucket], lang: Lang) -> String {
    const W: f64 = 720.0;
    const H: f64 = 160.0;
    const PAD: f64 = 28.0;
    let max = minutes.iter().map(|b| b.total).max().unwrap_or(0).max(1);
    let slot = (W - PAD) / minutes.len().max(1) as f64;
    let scale = (H - 2.0 * PAD / 2.0 - 14.0) / max as f64;
    let base = H - 20.0;
    let mut s = String::new();
    let _ = write!(
        s,
        "<svg id=\"chart-5xx\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" role=\"img\" aria-label=\"{}\">",
        t(lang, "5xx responses per minute over the last hour", "最近一小时每分钟 5xx 响应数")
    );
    let _ = write!(
        s,
        "<line x1=\"{PAD}\" y1=\"{base}\" x2=\"{W}\" y2=\"{base}\" stroke=\"#99a\"/>\
         <text x=\"2\" y=\"14\" font-size=\"11\" fill=\"#667\">{max}</text>\
         <text x=\"2\" y=\"{base}\" font-size=\"11\" fill=\"#667\">0</text>\
         <text x=\"{PAD}\" y=\"{}\" font-size=\"11\" fill=\"#667\">-60 min</text>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"#667\" text-anchor=\"end\">{}</text>",
        H - 4.0,
        W - 2.0,
        H - 4.0,
        t(lang, "now", "现在")
    );
    for (i, b) in minutes.iter().enumerate() {
        let x = PAD + i as f64 * slot;
        let total_h = b.total as f64 * scale;
        let err_h = b.errors as f64 * scale;
        if b.total > 0 {
            let _ = write!(
                s,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{total_h:.1}\" fill=\"#d5d8e0\"><title>{}: {} {}</title></rect>",
                base - total_h,
                slot - 1.0,
                crate::collect::logs::time::format(b.start),
                b.total,
                t(lang, "responses", "个响应")
            );
        }
        if b.errors > 0 {
            let _ = write!(
                s,
                "<rect class=\"err\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{err_h:.1}\" fill=\"#d0312d\"><title>{}: {} 5xx</title></rect>",
                base - err_h,
                slot - 1.0,
                crate::collect::logs::time::format(b.start),
                b.errors
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn chart_draws_one_red_bar_per_minute_with_errors() {
        let mut s = super::super::Series::new(60, 61);
        s.record(600, true);
        s.record(600, false);
        s.record(700, false);
        let svg = chart(&s.dense(700, 60), Lang::En);
        assert_eq!(svg.matches("class=\"err\"").count(), 1);
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
    }
}
