//! The bound on the write-ahead log, shared by both local backends.
//!
//! SQLite checkpoints the WAL after commits (PASSIVE: it copies only frames
//! no reader still needs) and starts the file over only when no reader is
//! using it. Under a steady stream of overlapping reads that moment may never
//! come, and the WAL grows without end (it reached 1.6 GB in a soak). So
//! after each write the writer checks the file's size, and past
//! `sqlite_wal_bytes_max` it runs a TRUNCATE checkpoint, which waits for the
//! readers still on old frames (new readers read the database file) and
//! then empties the file. The wait is short ([`CHECKPOINT_WAIT_MS`]): a
//! reader holding a transaction open for long must not stall every write;
//! after a checkpoint that could not finish, the next attempt comes
//! [`CHECKPOINT_RETRY_MS`] later at the earliest.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The checkpoint run when the WAL is over its bound: one row `(busy, log
/// frames, checkpointed frames)`, busy 1 when readers kept it from finishing.
pub const TRUNCATE_CHECKPOINT: &str = "PRAGMA wal_checkpoint(TRUNCATE)";

/// Longest wait of that checkpoint for readers still on old frames.
pub const CHECKPOINT_WAIT_MS: u64 = 50;

/// Least time between a checkpoint that could not finish and the next
/// attempt (so a long-pinned WAL costs the writer at most 5% of its time).
pub const CHECKPOINT_RETRY_MS: u64 = 1_000;

/// Where the WAL of one database file is, and its bound. Clones share the
/// state of the last attempt.
#[derive(Clone, Debug)]
pub struct WalBound {
    wal_path: PathBuf,
    wal_bytes_max: u64,
    /// No attempt before this instant (set by one that could not finish).
    retry_after: Arc<Mutex<Option<Instant>>>,
}

impl WalBound {
    /// The WAL of the database at `db` (`<db>-wal`), bounded to `wal_bytes_max`.
    pub fn new(db: &Path, wal_bytes_max: u64) -> Self {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        Self {
            wal_path: PathBuf::from(wal),
            wal_bytes_max,
            retry_after: Arc::default(),
        }
    }

    /// True when a checkpoint is due: the WAL file is over its bound, and
    /// no attempt that could not finish was made in the last
    /// [`CHECKPOINT_RETRY_MS`].
    pub fn is_due(&self) -> bool {
        let waiting = self
            .retry_after
            .lock()
            .is_ok_and(|after| after.is_some_and(|at| Instant::now() < at));
        !waiting && std::fs::metadata(&self.wal_path).is_ok_and(|m| m.len() > self.wal_bytes_max)
    }

    /// Records how the checkpoint went.
    pub fn attempted(&self, finished: bool) {
        if let Ok(mut after) = self.retry_after.lock() {
            *after =
                (!finished).then(|| Instant::now() + Duration::from_millis(CHECKPOINT_RETRY_MS));
        }
    }
}
