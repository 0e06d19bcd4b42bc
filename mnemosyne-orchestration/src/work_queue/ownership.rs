//! Who owns a database's work queue: the one place that decides it.
//!
//! The queue decides from its memory, so two processes running a queue on
//! one database would both hand out the same item. Before a process opens a
//! [`WorkQueue`](super::WorkQueue) it asks [`QueueOwnership::acquire`], and
//! opens the queue only when the answer is [`QueueOwnership::Owned`],
//! keeping the [`QueueOwner`] for as long as the queue runs. How ownership
//! is held depends on the database:
//!
//! - a local file: an advisory lock on `<db>.work-lock`, which the
//!   operating system releases when the process ends (even on SIGKILL);
//! - a remote database: nothing yet, every process owns its queue. Taking
//!   ownership through the database itself belongs here, and changes no
//!   caller.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::lock::{Attempt, OwnerLock};

/// The database whose work queue is asked for, as far as ownership goes.
#[derive(Clone, Copy, Debug)]
pub enum QueueDatabase<'a> {
    /// A local database file.
    File(&'a Path),
    /// A database with no local file (a remote libsql server).
    Remote,
}

/// Whether this process owns a database's work queue.
#[derive(Debug)]
#[must_use = "dropping the answer lets go of the queue"]
pub enum QueueOwnership {
    /// This process owns it until the [`QueueOwner`] is dropped: open the
    /// queue, and keep the owner while it runs.
    Owned(QueueOwner),
    /// Another process owns it: do not open the queue here.
    OwnedByOther(OtherOwner),
}

impl QueueOwnership {
    /// Takes ownership of the work queue of `db`, waiting up to `wait` while
    /// another process owns it (zero: asks once). A `work` command waits
    /// `work_owner_wait_timeout_ms` (the owner may be another short command);
    /// a server asks once and serves memories either way.
    ///
    /// The error is a lock file that cannot be opened or locked (a
    /// read-only directory, say): ownership could not be decided.
    pub async fn acquire(
        db: QueueDatabase<'_>,
        wait: Duration,
    ) -> Result<Self, QueueOwnershipError> {
        let path = match db {
            QueueDatabase::File(db) => OwnerLock::path_for(db),
            QueueDatabase::Remote => return Ok(Self::Owned(QueueOwner { lock: None })),
        };
        match OwnerLock::acquire(&path, wait).await {
            Ok(Attempt::Taken(lock)) => Ok(Self::Owned(QueueOwner { lock: Some(lock) })),
            Ok(Attempt::Held { pid }) => Ok(Self::OwnedByOther(OtherOwner {
                pid,
                lock_file: path,
            })),
            Err(e) => Err(QueueOwnershipError {
                lock_file: path,
                message: e.to_string(),
            }),
        }
    }

    /// The owner, or who else owns the queue (an error, for callers that
    /// cannot go on without the queue).
    pub fn into_owner(self) -> Result<QueueOwner, OtherOwner> {
        match self {
            Self::Owned(owner) => Ok(owner),
            Self::OwnedByOther(other) => Err(other),
        }
    }
}

/// This process's ownership of a work queue, held until dropped.
#[derive(Debug)]
#[must_use = "dropping the owner lets go of the queue"]
pub struct QueueOwner {
    lock: Option<OwnerLock>,
}

impl QueueOwner {
    /// The lock file held, for a local database.
    pub fn lock_file(&self) -> Option<&Path> {
        self.lock.as_ref().map(OwnerLock::path)
    }
}

/// Another process owns the work queue.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the work queue of this database is held by another mnemosyne process{}; stop it or use its API (lock file {})",
    .pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
    .lock_file.display()
)]
pub struct OtherOwner {
    pid: Option<u32>,
    lock_file: PathBuf,
}

impl OtherOwner {
    /// The owner's pid, when it could be read.
    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    /// The lock file the owner holds.
    pub fn lock_file(&self) -> &Path {
        &self.lock_file
    }
}

/// Ownership of a work queue could not be decided.
#[derive(Debug, thiserror::Error)]
#[error("cannot lock {}: {message}", .lock_file.display())]
pub struct QueueOwnershipError {
    lock_file: PathBuf,
    message: String,
}
