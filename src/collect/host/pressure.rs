//! Load and CPU pressure: the load average against the number of CPUs, the share of CPU time
//! spent busy, waiting for I/O or stolen by the hypervisor over the sample interval, and the
//! kernel's pressure stall information (PSI, `/proc/pressure/*`, Linux 4.20+): the share of time
//! in which some (or all) runnable tasks waited for a CPU, for memory or for I/O.
//!
//! PSI is the better signal: a load of 8 on 4 cores may be threads blocked on disk, while
//! `cpu some avg10=60` says that tasks really waited for a CPU 60 % of the last 10 seconds.

use super::{Gaps, HostRoot};
use procfs::{ExplicitSystemInfo, FromBufReadSI, FromRead, KernelStats, LoadAverage};
use serde::Serialize;
use std::time::Duration;

/// Load, CPU use over the sample interval, and CPU pressure.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    /// Online CPUs (`cpuN` lines of `/proc/stat`).
    pub cores: u32,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
    /// Tasks runnable right now (`/proc/loadavg`, the number before the slash).
    pub runnable: u32,
    /// Share of CPU time not idle over the sample interval, in percent.
    pub busy_pct: Option<f64>,
    pub iowait_pct: Option<f64>,
    /// Time the hypervisor ran someone else while this machine wanted the CPU.
    pub steal_pct: Option<f64>,
    /// `/proc/pressure/cpu`.
    pub psi: Option<Psi>,
    /// `/proc/pressure/io`.
    pub io_psi: Option<Psi>,
    /// The files these numbers came from.
    pub source: String,
}

/// One pressure file: averages the kernel computed, and the stall share measured over our own
/// sample interval (from the `total=` microsecond counters).
#[derive(Debug, Clone, Serialize)]
pub struct Psi {
    pub some_avg10: f64,
    pub some_avg60: f64,
    pub some_avg300: f64,
    /// `full` exists for memory and I/O, and for CPU since Linux 5.13 (at cgroup level).
    pub full_avg10: Option<f64>,
    pub full_avg60: Option<f64>,
    /// Percent of the sample interval in which some task stalled.
    pub some_sampled_pct: Option<f64>,
    pub full_sampled_pct: Option<f64>,
    pub source: String,
}

/// CPU time counters of one sample (`/proc/stat`, first line), in clock ticks.
#[derive(Debug, Clone)]
pub struct CpuSample {
    total: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
    cores: u32,
}

/// The `total=` stall counters (microseconds) of every pressure file, `some` and `full`.
#[derive(Debug, Clone, Default)]
pub struct PsiTotals {
    pub(super) cpu: Option<(u64, Option<u64>)>,
    pub(super) memory: Option<(u64, Option<u64>)>,
    pub(super) io: Option<(u64, Option<u64>)>,
}

fn system_info() -> ExplicitSystemInfo {
    ExplicitSystemInfo {
        boot_time_secs: 0,
        ticks_per_second: 100,
        page_size: 4096,
        is_little_endian: cfg!(target_endian = "little"),
    }
}

/// Reads the CPU counters of `/proc/stat`.
pub fn cpu_sample(root: &HostRoot, gaps: &mut Gaps) -> Option<CpuSample> {
    let text = root.read_or_gap("/proc/stat", "CPU time counters", gaps)?;
    let stats = match <KernelStats as FromBufReadSI>::from_buf_read(text.as_bytes(), &system_info())
    {
        Ok(s) => s,
        Err(e) => {
            gaps.add(
                "CPU time counters",
                root.path("/proc/stat").display().to_string(),
                super::GapKind::Malformed,
                e.to_string(),
            );
            return None;
        }
    };
    let t = &stats.total;
    let iowait = t.iowait.unwrap_or(0);
    let steal = t.steal.unwrap_or(0);
    // guest time is already counted in user and nice.
    let total = t.user
        + t.nice
        + t.system
        + t.idle
        + iowait
        + t.irq.unwrap_or(0)
        + t.softirq.unwrap_or(0)
        + steal;
    Some(CpuSample {
        total,
        idle: t.idle + iowait,
        iowait,
        steal,
        cores: stats.cpu_time.len() as u32,
    })
}

/// Reads the stall totals of the three pressure files (missing files are simply absent: PSI
/// needs Linux 4.20 and `CONFIG_PSI`, and can be turned off with `psi=0`).
pub fn psi_totals(root: &HostRoot) -> PsiTotals {
    let totals = |name: &str| {
        let text = root.read(&format!("/proc/pressure/{name}")).ok()?;
        let (some, full) = parse_psi(&text)?;
        Some((some.total, full.map(|f| f.total)))
    };
    PsiTotals {
        cpu: totals("cpu"),
        memory: totals("memory"),
        io: totals("io"),
    }
}

/// Parses a pressure file: the `some` line and, where present, the `full` line.
pub fn parse_psi(text: &str) -> Option<(procfs::PressureRecord, Option<procfs::PressureRecord>)> {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        if line.starts_with("some ") {
            some = procfs::parse_pressure_record(line).ok();
        } else if line.starts_with("full ") {
            full = procfs::parse_pressure_record(line).ok();
        }
    }
    Some((some?, full))
}

/// A pressure file with the stall share over the interval between two totals.
pub fn psi(
    root: &HostRoot,
    name: &str,
    first: Option<(u64, Option<u64>)>,
    second: Option<(u64, Option<u64>)>,
    interval: Duration,
) -> Option<Psi> {
    let path = root.path(&format!("/proc/pressure/{name}"));
    let text = super::read_bounded(&path, 4096).ok()?;
    let (some, full) = parse_psi(&text)?;
    let micros = interval.as_micros().max(1) as f64;
    let share = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) if b >= a => Some(round1((b - a) as f64 * 100.0 / micros).min(100.0)),
        _ => None,
    };
    Some(Psi {
        // The kernel prints two decimals; f32 → f64 would add noise digits.
        some_avg10: round2(f64::from(some.avg10)),
        some_avg60: round2(f64::from(some.avg60)),
        some_avg300: round2(f64::from(some.avg300)),
        full_avg10: full.as_ref().map(|f| round2(f64::from(f.avg10))),
        full_avg60: full.as_ref().map(|f| round2(f64::from(f.avg60))),
        some_sampled_pct: share(first.map(|f| f.0), second.map(|s| s.0)),
        full_sampled_pct: share(first.and_then(|f| f.1), second.and_then(|s| s.1)),
        source: path.display().to_string(),
    })
}

/// Load, CPU shares between the two samples, and pressure.
#[allow(clippy::too_many_arguments)]
pub fn cpu(
    root: &HostRoot,
    first: Option<&CpuSample>,
    second: Option<&CpuSample>,
    psi_first: &PsiTotals,
    psi_second: &PsiTotals,
    interval: Duration,
    gaps: &mut Gaps,
) -> Option<Cpu> {
    let load_text = root.read_or_gap("/proc/loadavg", "load average", gaps)?;
    let load = match LoadAverage::from_read(load_text.as_bytes()) {
        Ok(l) => l,
        Err(e) => {
            gaps.add(
                "load average",
                root.path("/proc/loadavg").display().to_string(),
                super::GapKind::Malformed,
                e.to_string(),
            );
            return None;
        }
    };
    let share = |pick: fn(&CpuSample) -> u64| -> Option<f64> {
        let (a, b) = (first?, second?);
        let total = b.total.checked_sub(a.total)?;
        if total == 0 {
            return None;
        }
        let part = pick(b).checked_sub(pick(a))?;
        Some(round1(part as f64 * 100.0 / total as f64))
    };
    let idle = share(|s| s.idle);
    let cores = second
        .or(first)
        .map(|s| s.cores)
        .filter(|&c| c > 0)
        .unwrap_or(1);
    Some(Cpu {
        cores,
        load1: round2(f64::from(load.one)),
        load5: round2(f64::from(load.five)),
        load15: round2(f64::from(load.fifteen)),
        // The count includes the reader itself.
        runnable: load.cur.saturating_sub(1),
        busy_pct: idle.map(|i| round1(100.0 - i)),
        iowait_pct: share(|s| s.iowait),
        steal_pct: share(|s| s.steal),
        psi: psi(root, "cpu", psi_first.cpu, psi_second.cpu, interval),
        io_psi: psi(root, "io", psi_first.io, psi_second.io, interval),
        source: format!(
            "{}, {}",
            root.path("/proc/loadavg").display(),
            root.path("/proc/stat").display()
        ),
    })
}

pub(super) fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

pub(super) fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_without_full_line_still_parses() {
        let (some, full) =
            parse_psi("some avg10=61.50 avg60=40.00 avg300=12.00 total=123456\n").unwrap();
        assert_eq!(some.avg10, 61.5);
        assert_eq!(some.total, 123456);
        assert!(full.is_none());
    }
}
