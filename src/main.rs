//! The `gwdoctor` command line: parses arguments and hands each command to `cli::*`.

mod cli;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// mimalloc instead of glibc's malloc: the configuration parser and the log scanner make many
/// small allocations on several threads, where glibc's arenas spent a third of the parse time
/// (bench/config.sh). Built without transparent huge pages (Cargo.toml: `no_thp`): with them
/// every first touch zeroes 2 MiB, twice the memory gwdoctor uses, and on a fragmented host the
/// kernel compacts memory first (50-100 ms stalls measured on a 20 ms parse).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Finds out why a website answers 502 Bad Gateway (and 504, 503) and says how to fix it.
#[derive(Parser, Debug)]
#[command(name = "gwdoctor", version, about, long_about = None)]
struct Args {
    #[command(flatten)]
    common: cli::Common,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Parse the gateway's configuration (nginx, PHP-FPM), list every upstream target, check
    /// them statically and live.
    Config(cli::config::ConfigArgs),
    /// The main job: collect every kind of evidence that applies and name the root causes, most
    /// likely first, with evidence and fix.
    Diagnose(cli::diagnose::DiagnoseArgs),
    /// Explain a pasted error-log line, error page or cause id: which product said it, what it
    /// means, what to check, how to fix it.
    Explain(cli::explain::ExplainArgs),
    /// Classify gateway and app-server logs: causes, 5xx over time, upstreams, paths, and
    /// what happened just before the errors began.
    Logs(cli::logs::LogsArgs),
    /// The host's limits that turn into 502s (descriptors, ports, accept queues, memory, CPU,
    /// disk, conntrack, OOM kills, failed units), and who listens where.
    Host(cli::host::HostArgs),
    /// Probe a URL from the user's side: DNS, TCP, TLS and HTTP with phase timings, repeated;
    /// which hop produced an error page.
    Probe(cli::probe::ProbeArgs),
    /// Keep watching: probe URLs, follow the logs through rotation, serve a status page and
    /// Prometheus metrics, and alert through webhooks with the diagnosis attached.
    Watch(cli::watch::WatchArgs),
    /// The fault lab: real nginx in front of a misbehaving upstream on loopback, one scenario per
    /// failure mode, to learn a failure or to check a monitoring setup.
    Lab(cli::lab::LabArgs),
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.command {
        Command::Config(config) => cli::config::run(&args.common, config),
        Command::Diagnose(d) => cli::diagnose::run(&args.common, d),
        Command::Explain(explain) => cli::explain::run(&args.common, explain),
        Command::Host(host) => cli::host::run(&args.common, host),
        Command::Probe(probe) => cli::probe::run(&args.common, probe),
        Command::Watch(watch) => cli::watch::run(&args.common, watch),
        Command::Lab(lab) => cli::lab::run(&args.common, lab),
        Command::Logs(logs) => cli::logs::run(&args.common, logs),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(cli::Failure::Usage(message)) => {
            eprintln!("gwdoctor: {message}");
            ExitCode::from(2)
        }
        Err(cli::Failure::Internal(error)) => {
            eprintln!("gwdoctor: internal error: {error:#}");
            ExitCode::from(3)
        }
    }
}
