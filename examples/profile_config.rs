//! Times `gwdoctor config`'s parse and model alone, repeatedly, on one configuration: the loop
//! a profiler is pointed at (`perf record -- target/release/examples/profile_config FILE 50`).
use std::time::Instant;

// The allocator the binary uses (src/main.rs), so that the profile is the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(path) = args.next() else {
        eprintln!("usage: profile_config NGINX.CONF [RUNS]");
        std::process::exit(2);
    };
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(20);
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        let config = match gwdoctor::collect::config::parser::load(std::path::Path::new(&path)) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(2);
            }
        };
        let parsed = start.elapsed().as_secs_f64() * 1000.0;
        let model = gwdoctor::collect::config::model::build(&config);
        times.push((start.elapsed().as_secs_f64() * 1000.0, parsed));
        std::hint::black_box(&model);
    }
    times.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (total, parsed) = times[times.len() / 2];
    println!(
        "{runs} runs: median {total:.1} ms (parse {parsed:.1} ms, model {:.1} ms), min {:.1} ms",
        total - parsed,
        times[0].0
    );
}
