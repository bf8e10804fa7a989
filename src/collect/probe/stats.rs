//! Repeated requests for intermittent failures: `--count N --concurrency C --interval D`.
//!
//! A 502 that shows once in twenty requests is invisible to a single probe. The run makes the
//! requests (round robin over the site's addresses), then counts: statuses and failure kinds,
//! latency percentiles (p50/p95/p99 over the requests that got an answer), a latency histogram,
//! and which addresses fail. It also reports its own cost (CPU time, peak memory), so a slow
//! result can be told from a slow tool.

use super::{proxy::Proxy, request, Context, RequestReport};
use serde::Serialize;
use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;
use url::Url;

/// Upper bounds of the latency histogram's buckets, in milliseconds (the last one is open).
pub const BUCKETS_MS: &[f64] = &[
    1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
];

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Latency {
    pub min_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
}

/// One bucket of the histogram: requests that took at most `up_to_ms` (and more than the
/// previous bucket's bound); `up_to_ms` is `None` for the last, open bucket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bucket {
    pub up_to_ms: Option<f64>,
    pub count: usize,
}

/// The requests made to one address.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AddressStats {
    pub address: String,
    pub requests: usize,
    pub healthy: usize,
    /// Outcome label → count (`200`, `502`, `refused` …).
    pub outcomes: BTreeMap<String, usize>,
}

impl AddressStats {
    pub fn failed(&self) -> usize {
        self.requests - self.healthy
    }
}

/// What the probe itself cost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overhead {
    /// CPU time of the process (user + system) while the requests ran.
    pub cpu_ms: f64,
    /// CPU time per request, in microseconds.
    pub cpu_per_request_us: f64,
    /// Peak resident memory of the process, KiB.
    pub max_rss_kib: u64,
}

/// The counts of a run of requests.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Stats {
    pub requests: usize,
    /// Complete 2xx/3xx answers.
    pub healthy: usize,
    /// HTTP status → count (requests that got an answer).
    pub statuses: BTreeMap<u16, usize>,
    /// Failure kind → count (requests that ended in a failure).
    pub failures: BTreeMap<String, usize>,
    /// Over the requests that got an HTTP answer.
    pub latency: Option<Latency>,
    pub histogram: Vec<Bucket>,
    pub addresses: Vec<AddressStats>,
    pub wall_ms: f64,
    pub rate_per_s: f64,
    pub overhead: Option<Overhead>,
}

/// What the requests of a run cost: their wall time, and the process' CPU time meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    pub wall: Duration,
    pub cpu: Option<Duration>,
}

/// The requests of a run and their cost.
#[derive(Debug, Clone, Default)]
pub struct Run {
    pub reports: Vec<RequestReport>,
    pub cost: Cost,
}

/// Makes the run's requests: one per address when `count` is 1, else `count` of them round
/// robin over the addresses (or all through the proxy), at most `concurrency` at once, starts
/// at least `interval` apart.
pub(crate) async fn run_requests(
    ctx: &Arc<Context>,
    url: &Url,
    addresses: &[SocketAddr],
    proxy: Option<&Proxy>,
    dns_ms: Option<f64>,
    run_started: Instant,
    warm_up: tokio::task::JoinHandle<()>,
) -> Run {
    let options = &ctx.options;
    let slots: Vec<Option<SocketAddr>> = if addresses.is_empty() {
        vec![None]
    } else {
        addresses.iter().copied().map(Some).collect()
    };
    let total = if options.count <= 1 {
        slots.len()
    } else {
        options.count as usize
    };
    // One request overlaps the signature database's compilation with its network work (and
    // waits for it only if it meets an error answer); a repeated run waits for it first, so that
    // its wall time and CPU time are the requests' own.
    if total > 1 {
        let _ = warm_up.await;
    } else {
        drop(warm_up);
    }
    let cpu_before = own_usage().map(|(cpu, _)| cpu);
    let semaphore = Arc::new(tokio::sync::Semaphore::new(options.concurrency as usize));
    let mut tasks = tokio::task::JoinSet::new();
    let mut results: Vec<RequestReport> = Vec::with_capacity(total);
    let mut labels_kept: HashSet<String> = HashSet::new();
    let began = Instant::now();
    for i in 0..total {
        if !options.interval.is_zero() {
            tokio::time::sleep_until(began + options.interval * i as u32).await;
        }
        // Wait for a free slot; collect what finished meanwhile.
        let permit = loop {
            if let Ok(p) = semaphore.clone().try_acquire_owned() {
                break p;
            }
            if let Some(Ok(r)) = tasks.join_next().await {
                results.push(slim(r, &mut labels_kept));
            }
        };
        let ctx = ctx.clone();
        let url = url.clone();
        let proxy = proxy.cloned();
        let address = slots[i % slots.len()];
        let dns = if i == 0 { dns_ms } else { None };
        tasks.spawn(async move {
            let report = request(
                &ctx,
                i as u32,
                &url,
                address,
                proxy.as_ref(),
                dns,
                run_started,
            )
            .await;
            drop(permit);
            report
        });
    }
    while let Some(done) = tasks.join_next().await {
        if let Ok(r) = done {
            results.push(slim(r, &mut labels_kept));
        }
    }
    let cost = Cost {
        wall: began.elapsed(),
        cpu: cpu_before
            .zip(own_usage())
            .map(|(before, (after, _))| after.saturating_sub(before)),
    };
    results.sort_by_key(|r| r.seq);
    Run {
        reports: results,
        cost,
    }
}

/// Keeps the body's start of the first request of each outcome only: two thousand copies of
/// the same page would only cost memory (every request keeps its fingerprint).
fn slim(mut r: RequestReport, kept: &mut HashSet<String>) -> RequestReport {
    if !kept.insert(r.outcome_label()) {
        for hop in &mut r.hops {
            if let Some(h) = &mut hop.http {
                h.body_start = String::new();
            }
        }
    }
    r
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Stats {
    pub fn from_requests(requests: &[RequestReport], cost: Cost) -> Stats {
        let wall = cost.wall;
        let mut statuses = BTreeMap::new();
        let mut failures = BTreeMap::new();
        let mut latencies = Vec::new();
        let mut per_address: BTreeMap<String, AddressStats> = BTreeMap::new();
        for r in requests {
            match (r.failure(), r.final_status()) {
                (Some(f), _) => *failures.entry(f.kind.name().to_string()).or_insert(0) += 1,
                (None, Some(s)) => *statuses.entry(s).or_insert(0) += 1,
                (None, None) => {}
            }
            if r.final_status().is_some() {
                latencies.push(r.total_ms());
            }
            let address = r
                .address
                .map(|a| a.to_string())
                .unwrap_or_else(|| "(proxy)".to_string());
            let entry = per_address
                .entry(address.clone())
                .or_insert_with(|| AddressStats {
                    address,
                    requests: 0,
                    healthy: 0,
                    outcomes: BTreeMap::new(),
                });
            entry.requests += 1;
            if r.healthy() {
                entry.healthy += 1;
            }
            *entry.outcomes.entry(r.outcome_label()).or_insert(0) += 1;
        }
        latencies.sort_by(f64::total_cmp);
        let latency = (!latencies.is_empty()).then(|| Latency {
            min_ms: latencies[0],
            p50_ms: percentile(&latencies, 50.0),
            p95_ms: percentile(&latencies, 95.0),
            p99_ms: percentile(&latencies, 99.0),
            max_ms: latencies[latencies.len() - 1],
            mean_ms: (latencies.iter().sum::<f64>() / latencies.len() as f64 * 1000.0).round()
                / 1000.0,
        });
        let mut histogram: Vec<Bucket> = BUCKETS_MS
            .iter()
            .map(|b| Bucket {
                up_to_ms: Some(*b),
                count: 0,
            })
            .chain(std::iter::once(Bucket {
                up_to_ms: None,
                count: 0,
            }))
            .collect();
        for l in &latencies {
            let i = BUCKETS_MS
                .iter()
                .position(|b| l <= b)
                .unwrap_or(BUCKETS_MS.len());
            histogram[i].count += 1;
        }
        let wall_ms = super::ms(wall);
        let overhead = cost.cpu.zip(own_usage()).map(|(cpu, (_, rss))| Overhead {
            cpu_ms: super::ms(cpu),
            cpu_per_request_us: (cpu.as_secs_f64() * 1e6 / requests.len().max(1) as f64).round(),
            max_rss_kib: rss,
        });
        Stats {
            requests: requests.len(),
            healthy: requests.iter().filter(|r| r.healthy()).count(),
            statuses,
            failures,
            latency,
            histogram,
            addresses: per_address.into_values().collect(),
            wall_ms,
            rate_per_s: if wall_ms > 0.0 {
                (requests.len() as f64 / (wall_ms / 1000.0) * 10.0).round() / 10.0
            } else {
                0.0
            },
            overhead,
        }
    }
}

/// CPU time (user + system) and peak RSS of this process so far.
fn own_usage() -> Option<(Duration, u64)> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: rc == 0, so the kernel initialised it.
    let usage = unsafe { usage.assume_init() };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    Some((
        tv(usage.ru_utime) + tv(usage.ru_stime),
        usage.ru_maxrss as u64,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), 50.0);
        assert_eq!(percentile(&v, 95.0), 95.0);
        assert_eq!(percentile(&v, 99.0), 99.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert_eq!(percentile(&[], 50.0), 0.0);
    }
}
