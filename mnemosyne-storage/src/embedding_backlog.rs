//! The bounded backlog of memories waiting for their vector: what the store
//! ([`MemoryStore::remember`](crate::MemoryStore::remember)) and its
//! embedding worker ([`crate::embedding_worker`]) share.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mnemosyne_core::{Error, MemoryId, Result};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{Semaphore, SemaphorePermit, TryAcquireError, mpsc};

/// `missing` before the worker has counted.
const NOT_COUNTED: u64 = u64::MAX;

/// The bounded backlog of memories waiting for their vector, and the
/// worker's figures. Shared by the store (which queues) and the worker.
#[derive(Debug)]
pub struct EmbeddingBacklog {
    sender: mpsc::Sender<MemoryId>,
    room: Semaphore,
    capacity: u32,
    wait: Duration,
    embedded_total: AtomicU64,
    errors_total: AtomicU64,
    missing: AtomicU64,
}

impl EmbeddingBacklog {
    /// A backlog of room for `capacity` memories whose `reserve` waits at
    /// most `wait`, and the receiving end of its queue (the worker's).
    pub(crate) fn new(
        capacity: u32,
        wait: Duration,
    ) -> (std::sync::Arc<Self>, mpsc::Receiver<MemoryId>) {
        let (sender, receiver) = mpsc::channel(capacity as usize);
        let backlog = Self {
            sender,
            room: Semaphore::new(capacity as usize),
            capacity,
            wait,
            embedded_total: AtomicU64::new(0),
            errors_total: AtomicU64::new(0),
            missing: AtomicU64::new(NOT_COUNTED),
        };
        (std::sync::Arc::new(backlog), receiver)
    }

    /// Gives back the room of `n` memories the worker took off the queue.
    pub(crate) fn give_back(&self, n: usize) {
        self.room.add_permits(n);
    }

    /// Counts a batch that failed.
    pub(crate) fn count_error(&self) {
        self.errors_total.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts the vectors a batch stored.
    pub(crate) fn count_stored(&self, stored: u64) {
        self.embedded_total.fetch_add(stored, Ordering::Relaxed);
        self.sub_missing(stored);
    }

    /// Sets the count of memories missing a vector, as the worker counted it.
    pub(crate) fn set_missing(&self, missing: u64) {
        self.missing
            .store(missing.min(NOT_COUNTED - 1), Ordering::Relaxed);
    }

    /// Closes the backlog: waiting and later reservations get `None`.
    pub(crate) fn close(&self) {
        self.room.close();
    }

    /// Memories accepted and not embedded yet: queued, or in the batch
    /// being embedded. Never more than [`EmbeddingBacklog::capacity`].
    pub fn waiting(&self) -> u64 {
        u64::from(self.capacity).saturating_sub(self.room.available_permits() as u64)
    }

    /// `embedding_backlog_max`.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Vectors the worker stored since it started.
    pub fn embedded_total(&self) -> u64 {
        self.embedded_total.load(Ordering::Relaxed)
    }

    /// Batches that failed (embedder or store) since the worker started;
    /// each was kept and retried.
    pub fn errors_total(&self) -> u64 {
        self.errors_total.load(Ordering::Relaxed)
    }

    /// Memories with no vector at all on disk, as the worker last counted
    /// them and adjusted since; `None` before its first count.
    pub fn missing(&self) -> Option<u64> {
        Some(self.missing.load(Ordering::Relaxed)).filter(|n| *n != NOT_COUNTED)
    }

    /// False once the worker has stopped (its queue is closed): the store
    /// then embeds inline again.
    pub fn is_running(&self) -> bool {
        !self.sender.is_closed()
    }

    /// Room for one memory, waiting at most `embedding_backlog_wait_ms`;
    /// `None` once the worker has stopped (the caller embeds inline).
    pub(crate) async fn reserve(&self) -> Result<Option<Reservation<'_>>> {
        let acquired = match self.room.try_acquire() {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::Closed) => return Ok(None),
            Err(TryAcquireError::NoPermits) => {
                match tokio::time::timeout(self.wait, self.room.acquire()).await {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_closed)) => return Ok(None),
                    Err(_elapsed) => Err(Error::EmbeddingBacklogFull {
                        capacity: self.capacity,
                        waited_ms: u64::try_from(self.wait.as_millis()).unwrap_or(u64::MAX),
                    }),
                }
            }
        };
        acquired.map(|permit| {
            Some(Reservation {
                backlog: self,
                permit,
            })
        })
    }

    /// Adds `n` to the count of missing vectors, once it is known.
    fn add_missing(&self, n: u64) {
        let _ = self
            .missing
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                (m != NOT_COUNTED).then(|| m.saturating_add(n).min(NOT_COUNTED - 1))
            });
    }

    /// Takes `n` from the count of missing vectors, once it is known.
    fn sub_missing(&self, n: u64) {
        let _ = self
            .missing
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |m| {
                (m != NOT_COUNTED).then(|| m.saturating_sub(n))
            });
    }
}

/// Room in the backlog for one memory, taken before its commit. Dropped
/// unused (the commit failed), it gives the room back.
#[derive(Debug)]
pub(crate) struct Reservation<'a> {
    backlog: &'a EmbeddingBacklog,
    permit: SemaphorePermit<'a>,
}

impl Reservation<'_> {
    /// Queues the committed memory `id` for the worker; `Err(id)` when the
    /// worker stopped since the room was taken (the room is given back).
    pub(crate) fn queue(self, id: MemoryId) -> std::result::Result<(), MemoryId> {
        match self.backlog.sender.try_send(id) {
            Ok(()) => {
                // The worker gives the room back once the id is embedded.
                self.permit.forget();
                self.backlog.add_missing(1);
                Ok(())
            }
            Err(TrySendError::Closed(id)) => Err(id),
            // Cannot happen: the channel holds at most one id per permit
            // taken and not given back, and has room for every permit.
            Err(TrySendError::Full(id)) => {
                tracing::error!(%id, "embedding queue full despite a reserved room");
                Err(id)
            }
        }
    }
}
