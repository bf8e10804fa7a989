//! Runs a scenario: set up the bench, start nginx, send the script's requests, read what the
//! client got and what the logs say, check the expectations, and clean everything up.

use super::bench::Bench;
use super::client::{self, LabRequest, Outcome};
use super::nginx::{self, Nginx};
use super::scenario::{unmet, Plan, Scenario, Step};
use crate::catalog::signatures;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// The port nginx listens on, on the run's own loopback address.
pub const GATEWAY_PORT: u16 = 8080;
/// The deadline of one request.
const REQUEST_DEADLINE: Duration = Duration::from_secs(15);

/// A scenario whose bench and nginx are up.
pub struct Started {
    pub bench: Bench,
    pub nginx: Nginx,
    pub plan: Plan,
    /// Where nginx listens (inside the namespace when the gateway runs in one).
    pub gateway: SocketAddr,
}

impl Started {
    pub fn url(&self) -> String {
        format!("http://{}/", self.gateway)
    }

    /// What `diagnose` is given for this scenario: its URL (when the gateway is reachable from
    /// here, not inside a namespace), nginx's configuration and logs, the upstreams' logs.
    pub fn diagnose_options(&self) -> crate::diagnose::DiagnoseOptions {
        crate::diagnose::DiagnoseOptions {
            url: Some(self.url()).filter(|_| !self.plan.gateway_in_netns),
            nginx_configs: vec![self.nginx.conf.clone()],
            error_logs: vec![self.nginx.error_log.clone()],
            access_logs: vec![self.nginx.access_log.clone()],
            other_logs: self
                .bench
                .upstream_logs()
                .into_iter()
                .map(|(path, _)| path)
                .collect(),
            log_formats: vec![super::nginx::LAB_LOG_FORMAT.to_string()],
            budget: Duration::from_secs(10),
            no_host: false,
            ..Default::default()
        }
    }
}

/// One request and what came back.
#[derive(Debug, Clone)]
pub struct Exchange {
    pub request: String,
    pub outcome: Outcome,
}

/// A log line, where it came from, and the causes the signature database names for it.
#[derive(Debug, Clone)]
pub struct LogLine {
    pub file: PathBuf,
    pub number: usize,
    pub text: String,
    pub signature: Option<String>,
    pub causes: Vec<String>,
}

/// What a run showed.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub scenario: &'static str,
    pub cause: &'static str,
    pub gateway: SocketAddr,
    pub gateway_started: bool,
    pub nginx_pid: u32,
    /// The run's directory (removed at the end of the run).
    pub dir: PathBuf,
    pub exchanges: Vec<Exchange>,
    pub log_lines: Vec<LogLine>,
    /// Products recognised in the response bodies.
    pub page_products: Vec<String>,
    /// Expectations the run did not meet; empty when the scenario reproduced its failure.
    pub problems: Vec<String>,
    pub elapsed: Duration,
}

impl RunReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }

    /// Every cause named by a log line, in order of first appearance.
    pub fn log_causes(&self) -> Vec<&str> {
        let mut causes: Vec<&str> = Vec::new();
        for cause in self.log_lines.iter().flat_map(|l| l.causes.iter()) {
            if !causes.contains(&cause.as_str()) {
                causes.push(cause);
            }
        }
        causes
    }
}

/// Either the reason the scenario cannot run here, or nothing.
pub fn skip_reason(scenario: &Scenario) -> Option<String> {
    if !super::process::have_program(nginx::NGINX) {
        return Some("nginx is not installed".into());
    }
    scenario.needs.iter().find_map(|&need| unmet(need))
}

/// Sets the scenario up and starts nginx in front of it.
pub fn start(scenario: &Scenario) -> anyhow::Result<Started> {
    let mut bench = Bench::new()?;
    let plan = (scenario.setup)(&mut bench)?;
    let (gateway, netns) = if plan.gateway_in_netns {
        (
            SocketAddr::from((Ipv4Addr::LOCALHOST, GATEWAY_PORT)),
            bench.namespace(),
        )
    } else {
        (SocketAddr::from((bench.ip, GATEWAY_PORT)), None)
    };
    let nginx = Nginx::start(&bench.dir().join("nginx"), gateway, &plan.nginx, netns)?;
    Ok(Started {
        bench,
        nginx,
        plan,
        gateway,
    })
}

/// Runs the scenario from start to clean-up.
pub fn run(scenario: &Scenario) -> anyhow::Result<RunReport> {
    let began = Instant::now();
    let mut started = start(scenario)?;
    let gateway_started = started.nginx.is_running();
    let exchanges = exercise(&mut started)?;
    // Let the processes flush what they log after answering (PHP-FPM logs a kill after it).
    std::thread::sleep(Duration::from_millis(300));
    let log_lines = classify_logs(&started);
    let db = signatures();
    let mut page_products: Vec<String> = Vec::new();
    for exchange in &exchanges {
        if let Outcome::Status { body, .. } = &exchange.outcome {
            for m in db.match_page(body.as_str()) {
                if !page_products.contains(&m.signature.product) {
                    page_products.push(m.signature.product.clone());
                }
            }
        }
    }
    let nginx_pid = started.nginx.pid();
    let dir = started.bench.dir().to_path_buf();
    let gateway = started.gateway;
    let plan = started.plan.clone();
    started.nginx.stop();
    started.bench.shutdown();
    let mut report = RunReport {
        scenario: scenario.name,
        cause: scenario.cause,
        gateway,
        gateway_started,
        nginx_pid,
        dir,
        exchanges,
        log_lines,
        page_products,
        problems: Vec::new(),
        elapsed: began.elapsed(),
    };
    report.problems = check(&plan, &report);
    Ok(report)
}

/// Sends the scenario's script to its gateway (or, when the gateway did not start, shows what a
/// client of the down gateway gets), and returns what came back.
pub fn exercise(started: &mut Started) -> anyhow::Result<Vec<Exchange>> {
    let mut exchanges = Vec::new();
    let mut sent = 0u16;
    let running = started.nginx.is_running();
    for step in started.plan.steps.clone() {
        match step {
            Step::Sequential(requests) if running => {
                for request in requests {
                    exchanges.extend(send(started, vec![request], &mut sent)?);
                }
            }
            Step::Sequential(requests) | Step::Parallel(requests) => {
                exchanges.extend(send(started, requests, &mut sent)?)
            }
            Step::Pause(d) if running => std::thread::sleep(d),
            Step::Reload(parts) if running => reload(started, &parts)?,
            Step::Pause(_) | Step::Reload(_) => {}
        }
    }
    Ok(exchanges)
}

fn send(
    started: &Started,
    requests: Vec<LabRequest>,
    sent: &mut u16,
) -> anyhow::Result<Vec<Exchange>> {
    let gateway = started.gateway;
    let first = *sent;
    *sent += requests.len() as u16;
    let ports = started.plan.client_ports;
    let work = move || -> Vec<Exchange> {
        let threads: Vec<_> = requests
            .into_iter()
            .enumerate()
            .map(|(i, request)| {
                let source = ports
                    .map(|base| SocketAddr::from((Ipv4Addr::LOCALHOST, base + first + i as u16)));
                std::thread::spawn(move || Exchange {
                    request: format!("{} {}", request.method, request.path),
                    outcome: client::send(gateway, &request, REQUEST_DEADLINE, source),
                })
            })
            .collect();
        threads.into_iter().filter_map(|t| t.join().ok()).collect()
    };
    match (started.plan.gateway_in_netns, started.bench.namespace()) {
        // Threads started by a thread inside the namespace stay inside it.
        (true, Some(ns)) => ns.enter(work),
        _ => Ok(work()),
    }
}

fn reload(started: &Started, parts: &nginx::NginxParts) -> anyhow::Result<()> {
    let dir = started.bench.dir().join("nginx");
    std::fs::write(
        &started.nginx.conf,
        nginx::render(&dir, started.gateway, parts),
    )?;
    // SAFETY: kill(2) with SIGHUP on the master this run started.
    unsafe { libc::kill(started.nginx.pid() as libc::pid_t, libc::SIGHUP) };
    Ok(())
}

fn classify_logs(started: &Started) -> Vec<LogLine> {
    let db = signatures();
    let mut sources = vec![(started.nginx.error_log.clone(), started.nginx.error_lines())];
    sources.extend(started.bench.upstream_logs());
    let mut out = Vec::new();
    for (file, lines) in sources {
        for (index, text) in lines.into_iter().enumerate() {
            let m = db.match_line(&text);
            out.push(LogLine {
                file: file.clone(),
                number: index + 1,
                signature: m.as_ref().map(|m| m.signature.id.clone()),
                causes: m.map(|m| m.causes).unwrap_or_default(),
                text,
            });
        }
    }
    out
}

fn check(plan: &Plan, report: &RunReport) -> Vec<String> {
    let mut problems = Vec::new();
    let labels: Vec<String> = report.exchanges.iter().map(|e| e.outcome.label()).collect();
    for want in &plan.expect.outcomes {
        if !labels.iter().any(|l| l.starts_with(want)) {
            problems.push(format!(
                "expected a {want} answer, saw {}",
                labels.join(", ")
            ));
        }
    }
    for never in &plan.expect.never {
        if labels.iter().any(|l| l.starts_with(never)) {
            problems.push(format!("saw a {never} answer"));
        }
    }
    let causes = report.log_causes();
    for want in &plan.expect.log_causes {
        if !causes.contains(want) {
            problems.push(format!(
                "no log line names {want} (logs name: {})",
                causes.join(", ")
            ));
        }
    }
    if let Some(product) = plan.expect.page_product {
        if !report.page_products.iter().any(|p| p == product) {
            problems.push(format!("no response body recognised as {product}'s page"));
        }
    }
    if plan.expect.gateway_down == report.gateway_started {
        problems.push(if report.gateway_started {
            "nginx started, expected it to fail".into()
        } else {
            "nginx did not start".into()
        });
    }
    problems
}
