//! Diagnostics for Mnemosyne: the [`MemoryTracker`]
//! that reads every subsystem's gauges, process figures from the OS, the
//! real memory limit (cgroup or `MemTotal`), a serialisable [`Snapshot`]
//! (also as Prometheus text), and the [`Monitor`] task that judges samples
//! against thresholds and raises alerts.
//!
//! Invariants:
//! - gauges are read from the live structures (pool status, queue indexes,
//!   cache weight, supervisor registry) when a snapshot is taken, never
//!   copied into a second place that could go stale;
//! - thresholds are relative to the real limits (memory limit, fd limit, each
//!   gauge's named limit), never constants;
//! - the monitor runs under the `Supervisor`; nothing here prints.

#![deny(missing_docs)]

mod allocator;
mod gauge;
mod memory_limit;
mod monitor;
mod process;
mod snapshot;
mod tracker;

pub use allocator::{AllocatorError, AllocatorStats};
pub use gauge::Gauge;
pub use memory_limit::{LimitSource, MemoryLimit};
pub use monitor::{Alert, Level, MONITOR_TASK, Monitor, Thresholds};
pub use process::{ProcessStats, mem_total_bytes};
pub use snapshot::Snapshot;
pub use tracker::{MemoryTracker, SOURCES_MAX, TASKS_ALIVE, TASKS_PANICKED_TOTAL, TrackerError};

#[cfg(test)]
mod tests;
