//! `gwdoctor lab list | up NAME | run NAME…`: the fault lab as a user feature.

use super::{Common, Failure};
use gwdoctor::catalog::catalog;
use gwdoctor::i18n::Lang;
use gwdoctor::lab::runner::{self, RunReport};
use gwdoctor::lab::scenario::Scenario;
use gwdoctor::lab::scenarios;
use gwdoctor::report::text::{styled, wrapped, BOLD, CAUSE, DIM};
use gwdoctor::report::Format;
use serde_json::json;
use std::fmt::Write;

#[derive(clap::Args, Debug)]
pub struct LabArgs {
    #[command(subcommand)]
    action: LabAction,
}

#[derive(clap::Subcommand, Debug)]
enum LabAction {
    /// List the scenarios: name, the cause it reproduces, what it does.
    List,
    /// Start a scenario and keep it running until Ctrl-C; print its URL, config and logs.
    Up {
        /// A scenario name from `gwdoctor lab list`.
        name: String,
    },
    /// Start scenarios, send their requests, print what the client and the logs saw, clean up.
    Run {
        /// Scenario names, or `all`.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

pub fn run(common: &Common, args: LabArgs) -> Result<u8, Failure> {
    match args.action {
        LabAction::List => list(common),
        LabAction::Up { name } => up(common, &find(&name)?),
        LabAction::Run { names } => {
            let chosen: Vec<Scenario> = if names.iter().any(|n| n == "all") {
                scenarios::all()
            } else {
                names.iter().map(|n| find(n)).collect::<Result<_, _>>()?
            };
            run_many(common, &chosen)
        }
    }
}

fn find(name: &str) -> Result<Scenario, Failure> {
    scenarios::find(name).ok_or_else(|| {
        Failure::Usage(format!(
            "lab: no scenario called {name:?}; see `gwdoctor lab list`"
        ))
    })
}

fn title(id: &str, lang: Lang) -> String {
    catalog()
        .get(id)
        .map(|c| c.title.get(lang).to_string())
        .unwrap_or_else(|| match lang {
            Lang::En => "healthy control".into(),
            Lang::Zh => "健康对照".into(),
        })
}

fn list(common: &Common) -> Result<u8, Failure> {
    let all = scenarios::all();
    let lang = common.lang();
    if common.format == Format::Json {
        let value = json!({
            "scenarios": all.iter().map(|s| json!({
                "name": s.name, "cause": s.cause, "summary": s.summary,
                "runnable": runner::skip_reason(s).is_none(), "skip_reason": runner::skip_reason(s),
            })).collect::<Vec<_>>(),
            "not_reproducible": scenarios::NOT_REPRODUCIBLE.iter().map(|(c, why)| json!({"cause": c, "why": why})).collect::<Vec<_>>(),
        });
        common.print(&format!("{value:#}\n"))?;
        return Ok(0);
    }
    let mut out = String::new();
    for s in &all {
        let _ = writeln!(
            out,
            "{:<22} {}",
            styled(BOLD, s.name),
            styled(CAUSE, s.cause)
        );
        wrapped(&mut out, 4, s.summary);
        if let Some(why) = runner::skip_reason(s) {
            let _ = writeln!(
                out,
                "    {}",
                styled(DIM, &format!("(cannot run here: {why})"))
            );
        }
    }
    let _ = writeln!(
        out,
        "\n{} scenarios. {}:",
        all.len(),
        match lang {
            Lang::En => "Causes the lab cannot reproduce on one machine",
            Lang::Zh => "实验室无法在单机上重现的原因",
        }
    );
    for (cause, why) in scenarios::NOT_REPRODUCIBLE {
        let _ = writeln!(out, "  {}", styled(DIM, cause));
        wrapped(&mut out, 4, why);
    }
    common.print(&out)?;
    Ok(0)
}

fn up(common: &Common, scenario: &Scenario) -> Result<u8, Failure> {
    if let Some(why) = runner::skip_reason(scenario) {
        return Err(Failure::Usage(format!(
            "lab: {} cannot run here: {why}",
            scenario.name
        )));
    }
    let started = runner::start(scenario).map_err(Failure::Internal)?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}  ({})",
        styled(BOLD, scenario.name),
        styled(CAUSE, scenario.cause),
        title(scenario.cause, common.lang())
    );
    let _ = writeln!(out, "  url        {}", started.url());
    if let Some(ns) = started.bench.namespace() {
        let _ = writeln!(
            out,
            "  namespace  {0}  (ip netns exec {0} curl -i {1})",
            ns.name,
            started.url()
        );
    }
    let _ = writeln!(out, "  config     {}", started.nginx.conf.display());
    let _ = writeln!(out, "  error log  {}", started.nginx.error_log.display());
    let _ = writeln!(out, "  access log {}", started.nginx.access_log.display());
    if let Some(fpm) = started.bench.fpm() {
        let _ = writeln!(out, "  php-fpm    {}", fpm.log.display());
    }
    let _ = writeln!(
        out,
        "  nginx pid  {}\nPress Ctrl-C to stop and clean up.",
        started.nginx.pid()
    );
    common.print(&out)?;
    // Ctrl-C or SIGTERM (a service manager, `timeout`): either way everything is cleaned up.
    let waited = started.bench.runtime().block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    });
    let runner::Started { bench, nginx, .. } = started;
    nginx.stop();
    bench.shutdown();
    waited.map_err(|e| Failure::Internal(e.into()))?;
    Ok(0)
}

fn run_many(common: &Common, chosen: &[Scenario]) -> Result<u8, Failure> {
    let mut reports = Vec::new();
    let mut skipped = Vec::new();
    for scenario in chosen {
        if let Some(why) = runner::skip_reason(scenario) {
            skipped.push((scenario.name, why));
            continue;
        }
        let report = runner::run(scenario)
            .map_err(|e| Failure::Internal(e.context(format!("lab run {}", scenario.name))))?;
        if common.format == Format::Text {
            common.print(&render(&report, common.lang()))?;
        }
        reports.push(report);
    }
    if common.format == Format::Json {
        let value = json!({
            "runs": reports.iter().map(report_json).collect::<Vec<_>>(),
            "skipped": skipped.iter().map(|(n, why)| json!({"scenario": n, "why": why})).collect::<Vec<_>>(),
        });
        common.print(&format!("{value:#}\n"))?;
    } else {
        let mut out = String::new();
        for (name, why) in &skipped {
            let _ = writeln!(
                out,
                "{} {}",
                styled(BOLD, name),
                styled(DIM, &format!("skipped: {why}"))
            );
        }
        if reports.len() + skipped.len() > 1 {
            let passed = reports.iter().filter(|r| r.passed()).count();
            let _ = writeln!(
                out,
                "{passed} reproduced, {} not, {} skipped",
                reports.len() - passed,
                skipped.len()
            );
        }
        common.print(&out)?;
    }
    if chosen.len() == 1 && !skipped.is_empty() {
        return Err(Failure::Usage(format!(
            "lab: {} cannot run here: {}",
            skipped[0].0, skipped[0].1
        )));
    }
    Ok(if reports.iter().all(RunReport::passed) {
        0
    } else {
        1
    })
}

fn render(report: &RunReport, lang: Lang) -> String {
    let mut out = String::new();
    let verdict = if report.passed() {
        "reproduced"
    } else {
        "NOT reproduced"
    };
    let _ = writeln!(
        out,
        "{} {}  ({})  {} in {:.1} s",
        styled(BOLD, report.scenario),
        styled(CAUSE, report.cause),
        title(report.cause, lang),
        verdict,
        report.elapsed.as_secs_f64()
    );
    if !report.gateway_started {
        let _ = writeln!(out, "  nginx did not start");
    }
    for exchange in &report.exchanges {
        let _ = writeln!(
            out,
            "  {:<24} → {}",
            exchange.request,
            exchange.outcome.label()
        );
    }
    // Recognised lines, and unrecognised ones unless they are routine notices.
    let routine = |text: &str| {
        ["[notice]", "[info]", "NOTICE:", "[INFO]"]
            .iter()
            .any(|m| text.contains(m))
    };
    for line in report
        .log_lines
        .iter()
        .filter(|l| l.signature.is_some() || !routine(&l.text))
    {
        let name = line
            .file
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("log");
        let causes = if line.causes.is_empty() {
            String::new()
        } else {
            format!("  [{}]", line.causes.join(", "))
        };
        let text: String = line.text.chars().take(300).collect();
        let _ = writeln!(
            out,
            "  {}{}",
            styled(DIM, &format!("{name}:{}: ", line.number)),
            text
        );
        if !causes.is_empty() {
            let _ = writeln!(out, "      {}", styled(CAUSE, causes.trim()));
        }
    }
    for problem in &report.problems {
        let _ = writeln!(out, "  ! {problem}");
    }
    out
}

fn report_json(r: &RunReport) -> serde_json::Value {
    json!({
        "scenario": r.scenario,
        "cause": r.cause,
        "reproduced": r.passed(),
        "gateway": r.gateway.to_string(),
        "gateway_started": r.gateway_started,
        "elapsed_ms": r.elapsed.as_millis() as u64,
        "exchanges": r.exchanges.iter().map(|e| json!({"request": e.request, "outcome": e.outcome.label(), "status": e.outcome.status()})).collect::<Vec<_>>(),
        "log_lines": r.log_lines.iter().map(|l| json!({
            "location": format!("{}:{}", l.file.display(), l.number), "text": l.text, "signature": l.signature, "causes": l.causes,
        })).collect::<Vec<_>>(),
        "log_causes": r.log_causes(),
        "page_products": r.page_products,
        "problems": r.problems,
    })
}
