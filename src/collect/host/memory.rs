//! Memory, swap and memory pressure from `/proc/meminfo` and `/proc/pressure/memory`.
//!
//! `MemAvailable` (the kernel's estimate of what can be had without swapping) is the number that
//! matters, not `MemFree`: a healthy host keeps little memory free and much in the page cache.
//! Memory pressure (`full`: every task stalled on memory) says whether the lack is felt.

use super::pressure::{round1, Psi};
use super::{GapKind, Gaps, HostRoot};
use procfs::{FromRead, Meminfo};
use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Memory {
    pub total_bytes: u64,
    /// `MemAvailable`; estimated from free + cache on kernels before 3.14.
    pub available_bytes: u64,
    pub available_pct: f64,
    pub swap_total_bytes: u64,
    pub swap_free_bytes: u64,
    /// `/proc/pressure/memory`, filled in after the second sample.
    pub psi: Option<Psi>,
    pub source: String,
}

impl Memory {
    pub fn swap_used_bytes(&self) -> u64 {
        self.swap_total_bytes.saturating_sub(self.swap_free_bytes)
    }
}

pub fn collect(root: &HostRoot, gaps: &mut Gaps) -> Option<Memory> {
    let path = root.path("/proc/meminfo");
    let text = root.read_or_gap("/proc/meminfo", "memory and swap", gaps)?;
    let info = match Meminfo::from_read(text.as_bytes()) {
        Ok(info) => info,
        Err(e) => {
            gaps.add(
                "memory and swap",
                path.display().to_string(),
                GapKind::Malformed,
                e.to_string(),
            );
            return None;
        }
    };
    let available = info
        .mem_available
        .unwrap_or(info.mem_free + info.cached + info.buffers);
    Some(Memory {
        total_bytes: info.mem_total,
        available_bytes: available,
        available_pct: if info.mem_total > 0 {
            round1(available as f64 * 100.0 / info.mem_total as f64)
        } else {
            0.0
        },
        swap_total_bytes: info.swap_total,
        swap_free_bytes: info.swap_free,
        psi: None,
        source: path.display().to_string(),
    })
}
