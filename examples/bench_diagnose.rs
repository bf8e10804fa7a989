//! Times `diagnose` on every lab scenario: the scenario is started and its requests sent first
//! (their deliberate waits are not counted), then only the diagnosis is timed: the whole walk,
//! with the configuration read and its targets checked live, the logs, the host and the probe
//! of the URL. What a scenario makes diagnose wait for (a timed request to an upstream that
//! answers late or never, a live check of one) is counted: that wait is the diagnosis.
//! Run: `cargo run --release --example bench_diagnose` (as root, with nginx, php-fpm, gunicorn,
//! uwsgi installed, as for the tests).

use gwdoctor::diagnose::diagnose;
use gwdoctor::lab::{runner, scenarios};
use std::time::{Duration, Instant};

fn main() -> anyhow::Result<()> {
    let mut times = Vec::new();
    println!("{:<24} {:>9}  first finding", "scenario", "diagnose");
    for scenario in scenarios::all() {
        if let Some(why) = runner::skip_reason(&scenario) {
            println!("{:<24} skipped: {why}", scenario.name);
            continue;
        }
        let mut started = runner::start(&scenario)?;
        runner::exercise(&mut started)?;
        std::thread::sleep(Duration::from_millis(300));
        let options = started.diagnose_options();
        let begin = Instant::now();
        let d = diagnose(&options)?;
        let took = begin.elapsed();
        times.push(took.as_secs_f64());
        println!(
            "{:<24} {:>7.0}ms  {}",
            scenario.name,
            took.as_secs_f64() * 1000.0,
            d.findings.first().map_or("none", |f| f.cause.as_str())
        );
        let runner::Started { bench, nginx, .. } = started;
        nginx.stop();
        bench.shutdown();
    }
    times.sort_by(f64::total_cmp);
    if !times.is_empty() {
        let median = times[times.len() / 2];
        println!(
            "{} scenarios: median {:.0} ms, max {:.0} ms (includes the host's two samples, ~200 ms apart, and the live checks)",
            times.len(),
            median * 1000.0,
            times[times.len() - 1] * 1000.0
        );
    }
    Ok(())
}
