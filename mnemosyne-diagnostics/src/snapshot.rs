//! [`Snapshot`]: everything the tracker and the OS say at one instant, as
//! JSON (serde) or Prometheus text.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::allocator::AllocatorStats;
use crate::gauge::Gauge;
use crate::memory_limit::MemoryLimit;
use crate::process::ProcessStats;

/// One sample of the process and every gauge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// When it was taken.
    pub taken_at: DateTime<Utc>,
    /// RSS, fds, threads, fd limit.
    pub process: ProcessStats,
    /// The memory this process may use.
    pub memory_limit: MemoryLimit,
    /// jemalloc's figures (feature `jemalloc`).
    pub allocator: Option<AllocatorStats>,
    /// Every registered gauge.
    pub gauges: Vec<Gauge>,
}

impl Snapshot {
    /// Samples the process around `gauges`.
    pub fn take(gauges: Vec<Gauge>) -> Self {
        Self {
            taken_at: Utc::now(),
            process: ProcessStats::sample(),
            memory_limit: MemoryLimit::detect(),
            allocator: AllocatorStats::sample(),
            gauges,
        }
    }

    /// The gauge named `name`.
    pub fn gauge(&self, name: &str) -> Option<&Gauge> {
        self.gauges.iter().find(|g| g.name == name)
    }

    /// Prometheus text exposition format (version 0.0.4): every figure as a
    /// gauge, and each bounded gauge's limit as `<name>_max`.
    pub fn to_prometheus(&self) -> String {
        let mut out = String::new();
        let mut put = |name: &str, help: &str, value: Option<u64>| {
            if let Some(value) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                );
            }
        };
        let p = &self.process;
        put(
            "mnemosyne_process_resident_memory_bytes",
            "resident set size of the process",
            p.rss_bytes,
        );
        put(
            "mnemosyne_process_open_fds",
            "open file descriptors",
            p.open_fds,
        );
        put(
            "mnemosyne_process_max_fds",
            "soft limit on open file descriptors",
            p.fd_limit,
        );
        put("mnemosyne_process_threads", "threads", p.threads);
        put(
            "mnemosyne_memory_limit_bytes",
            "memory the process may use (cgroup limit or MemTotal)",
            Some(self.memory_limit.bytes).filter(|b| *b > 0),
        );
        if let Some(a) = &self.allocator {
            put(
                "mnemosyne_allocator_allocated_bytes",
                "bytes allocated by the application (jemalloc)",
                Some(a.allocated_bytes),
            );
            put(
                "mnemosyne_allocator_resident_bytes",
                "bytes in resident pages mapped by the allocator (jemalloc)",
                Some(a.resident_bytes),
            );
        }
        for gauge in &self.gauges {
            put(&gauge.name, &gauge.help, Some(gauge.value));
            if let Some(max) = gauge.max {
                put(
                    &format!("{}_max", gauge.name),
                    &format!("limit of {}", gauge.name),
                    Some(max),
                );
            }
        }
        out
    }
}
