//! [`MemoryTracker`]: one place that reads every gauge of every subsystem.
//!
//! A subsystem does not copy its figures into the tracker (a copy can go
//! stale or be forgotten); it registers a source that reads them from the
//! live structure itself: the pool's status, the queue's indexes, the cache's
//! weight, the supervisor's registry. A snapshot reads every source.

use std::sync::{Arc, RwLock};

use mnemosyne_core::Storage;
use mnemosyne_orchestration::{Supervisor, WorkQueue};

use crate::gauge::Gauge;
use crate::snapshot::Snapshot;

/// Sources one tracker holds; registering more is refused.
pub const SOURCES_MAX: usize = 32;

/// Name of the gauge of supervised tasks running ([`MemoryTracker::watch_supervisor`];
/// the server's `/metrics` renders the same figure under it).
pub const TASKS_ALIVE: &str = "mnemosyne_tasks_alive";

/// Name of the count of supervised tasks that panicked since start
/// ([`MemoryTracker::watch_supervisor`]; the server's `/metrics` renders the
/// same figure under it).
pub const TASKS_PANICKED_TOTAL: &str = "mnemosyne_tasks_panicked_total";

/// Why a source was not registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrackerError {
    /// [`SOURCES_MAX`] sources are registered already.
    #[error("memory tracker holds {max} gauge sources already; {name} not registered")]
    TooManySources {
        /// The refused source.
        name: String,
        /// [`SOURCES_MAX`].
        max: usize,
    },
}

type ReadGauges = Box<dyn Fn(&mut Vec<Gauge>) + Send + Sync>;

struct Source {
    name: String,
    read: ReadGauges,
}

/// The registry of gauge sources; cheap to share (`Arc`).
#[derive(Default)]
pub struct MemoryTracker {
    sources: RwLock<Vec<Source>>,
}

impl std::fmt::Debug for MemoryTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryTracker")
            .field("sources", &self.source_names())
            .finish()
    }
}

impl MemoryTracker {
    /// An empty tracker (process figures only).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces, by `name`) a source that pushes its gauges.
    pub fn register(
        &self,
        name: impl Into<String>,
        read: impl Fn(&mut Vec<Gauge>) + Send + Sync + 'static,
    ) -> Result<(), TrackerError> {
        let name = name.into();
        let mut sources = self.sources.write().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = sources.iter_mut().find(|s| s.name == name) {
            existing.read = Box::new(read);
            return Ok(());
        }
        if sources.len() >= SOURCES_MAX {
            return Err(TrackerError::TooManySources {
                name,
                max: SOURCES_MAX,
            });
        }
        sources.push(Source {
            name,
            read: Box::new(read),
        });
        Ok(())
    }

    /// The connection pool of `storage`: connections in use, idle, waiting.
    pub fn watch_storage(&self, storage: Arc<dyn Storage>) -> Result<(), TrackerError> {
        self.register("pool", move |gauges| {
            let pool = storage.pool_status();
            let max = pool.readers_max as u64;
            let in_use = pool.readers_open.saturating_sub(pool.readers_idle) as u64;
            gauges.extend([
                Gauge::new(
                    "mnemosyne_pool_readers_open",
                    "reader connections open",
                    pool.readers_open as u64,
                )
                .with_max(max),
                Gauge::new(
                    "mnemosyne_pool_readers_in_use",
                    "reader connections checked out",
                    in_use,
                )
                .with_max(max),
                Gauge::new(
                    "mnemosyne_pool_readers_idle",
                    "reader connections open and idle",
                    pool.readers_idle as u64,
                )
                .with_max(max),
                Gauge::new(
                    "mnemosyne_pool_readers_waiting",
                    "callers waiting for a reader connection",
                    pool.readers_waiting as u64,
                ),
                Gauge::new(
                    "mnemosyne_pool_writer_in_use",
                    "writer connection checked out",
                    pool.writer_in_use as u64,
                )
                .with_max(1),
                Gauge::new(
                    "mnemosyne_pool_writer_waiting",
                    "callers waiting for the writer connection",
                    pool.writer_waiting as u64,
                ),
                Gauge::new(
                    "mnemosyne_sqlite_heap_bytes",
                    "bytes in SQLite's heap (page caches, statements), all connections",
                    pool.sqlite_heap_bytes,
                )
                .with_cap(pool.sqlite_heap_bytes_max),
            ]);
        })
    }

    /// The work queue: active items against `work_items_max`, finished items
    /// retained against `work_completed_retained_max`, finished items stored
    /// against `work_finished_stored_max` (plus the 1% it may pass by before
    /// a prune), the write backlog.
    pub fn watch_work_queue(&self, queue: WorkQueue) -> Result<(), TrackerError> {
        self.register("work_queue", move |gauges| {
            let q = queue.gauges();
            gauges.extend([
                Gauge::new(
                    "mnemosyne_work_items_active",
                    "pending and claimed work items",
                    q.active as u64,
                )
                .with_max(q.capacity.into()),
                Gauge::new(
                    "mnemosyne_work_items_ready",
                    "work items ready to claim",
                    q.ready as u64,
                ),
                Gauge::new(
                    "mnemosyne_work_items_claimed",
                    "work items under a lease",
                    q.claimed as u64,
                ),
                Gauge::new(
                    "mnemosyne_work_completed_retained",
                    "finished work items held in memory",
                    q.finished_retained as u64,
                )
                .with_cap(q.finished_retained_max.into()),
                Gauge::new(
                    "mnemosyne_work_finished_stored",
                    "finished work items stored on disk",
                    q.finished_stored,
                )
                .with_cap(q.finished_stored_max + q.finished_stored_max / 100),
                Gauge::new(
                    "mnemosyne_work_write_backlog",
                    "work queue transitions waiting for their commit",
                    q.write_backlog as u64,
                ),
            ]);
        })
    }

    /// The supervisor's live tasks.
    pub fn watch_supervisor(&self, supervisor: Arc<Supervisor>) -> Result<(), TrackerError> {
        self.register("supervisor", move |gauges| {
            gauges.extend([
                Gauge::new(
                    TASKS_ALIVE,
                    "supervised background tasks running",
                    supervisor.alive() as u64,
                ),
                Gauge::new(
                    TASKS_PANICKED_TOTAL,
                    "supervised tasks that panicked since start",
                    supervisor.panicked_total(),
                ),
            ]);
        })
    }

    /// Names of the registered sources, in registration order.
    pub fn source_names(&self) -> Vec<String> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        sources.iter().map(|s| s.name.clone()).collect()
    }

    /// Every gauge now, in registration order.
    pub fn gauges(&self) -> Vec<Gauge> {
        let sources = self.sources.read().unwrap_or_else(|e| e.into_inner());
        let mut gauges = Vec::new();
        for source in sources.iter() {
            (source.read)(&mut gauges);
        }
        gauges
    }

    /// Process figures and every gauge now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::take(self.gauges())
    }
}
