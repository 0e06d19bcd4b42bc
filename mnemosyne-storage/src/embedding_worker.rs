//! Embedding off the write path.
//!
//! A [`MemoryStore`] with an embedding worker attached
//! ([`MemoryStore::start_embedding_worker`]) commits a remembered memory
//! with its keywords and no vector, and hands its id to the worker, which
//! embeds memories in batches of `embedding_batch_max` (one embedder call,
//! one transaction each). Recall finds the memory by keyword at once and by
//! meaning once its vector is stored.
//!
//! The backlog is bounded: at most `embedding_backlog_max` ids are held,
//! queued or in the batch being embedded (a semaphore counts them; the
//! channel never holds more ids than permits taken). `remember` takes its
//! room before its commit and waits at most `embedding_backlog_wait_ms` for
//! it, then fails with [`Error::EmbeddingBacklogFull`] having written
//! nothing; an accepted memory is always queued. Only ids are held: texts
//! (up to 64 KiB each) are read from the store when their batch is embedded,
//! so a memory deleted meanwhile is skipped and an updated one is embedded
//! from its current text.
//!
//! [`EmbeddingWorker::run`] is the worker's whole life, a future for the
//! caller to spawn (the server runs it under its `Supervisor`): this crate
//! starts no task of its own. It first takes up the memories that have no
//! vector at all (committed before a crash, or imported), alternating that
//! pass with batches of the backlog, so a long pass never makes `remember`
//! fail. Memories whose vector came from another model are stale, not
//! missing: only `reindex` replaces them. A batch that fails (embedder or
//! store) is kept and retried after `embedder_backoff_ms`, doubled after
//! each further failure up to `embedder_timeout_ms`. The worker stops
//! between batches when its token is cancelled, also in the middle of a
//! wait or an embedder call; the ids it held are still missing a vector on
//! disk, and the next start takes them up.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use mnemosyne_core::{Embedder, Error, MEMORY_IDS_PER_CALL_MAX, MemoryId, PendingKind, Result};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::embedding_backlog::EmbeddingBacklog;
use crate::store::MemoryStore;

/// The worker recounts the memories missing a vector (one query that reads
/// two indexes, about 2 ms at 100k memories) when it goes idle, at most
/// this often; in between it adjusts the count by what it stores.
pub const MISSING_RECOUNT_INTERVAL_MS: u64 = 1_000;

impl MemoryStore {
    /// Moves embedding off the write path: from now on `remember` commits a
    /// memory without its vector and queues its id for the returned worker
    /// (bounded by `embedding_backlog_max`, see [`crate::embedding_worker`]).
    /// The caller runs [`EmbeddingWorker::run`] (a server spawns it under
    /// its supervisor); once it has stopped, or if it is dropped unrun,
    /// `remember` embeds inline again. Refused without an embedder, and
    /// while another worker of this store runs.
    pub fn start_embedding_worker(&self) -> Result<EmbeddingWorker> {
        let Some(embedder) = self.embedder() else {
            return Err(Error::invalid("an embedding worker needs an embedder"));
        };
        let worker = EmbeddingWorker::new(self.clone(), Arc::clone(embedder));
        self.attach_backlog(worker.backlog())?;
        Ok(worker)
    }
}

/// The other end of a store's embedding backlog: run it with
/// [`EmbeddingWorker::run`]. Dropping it (or the end of `run`) closes the
/// backlog, and the store embeds inline again.
#[derive(Debug)]
pub struct EmbeddingWorker {
    store: MemoryStore,
    embedder: Arc<dyn Embedder>,
    receiver: mpsc::Receiver<MemoryId>,
    backlog: Arc<EmbeddingBacklog>,
}

impl EmbeddingWorker {
    /// A worker for `store`, whose remembers will queue on the returned backlog.
    pub(crate) fn new(store: MemoryStore, embedder: Arc<dyn Embedder>) -> Self {
        let limits = store.limits();
        let capacity = limits.embedding_backlog_max.max(1);
        let (backlog, receiver) = EmbeddingBacklog::new(
            capacity,
            Duration::from_millis(limits.embedding_backlog_wait_ms),
        );
        Self {
            store,
            embedder,
            receiver,
            backlog,
        }
    }

    /// The backlog and the worker's figures (for gauges).
    pub fn backlog(&self) -> Arc<EmbeddingBacklog> {
        Arc::clone(&self.backlog)
    }

    /// Embeds until `cancel` is cancelled: first counts the memories missing
    /// a vector, then alternates batches of the backlog with batches of the
    /// pass over the memories missing a vector at start, then waits for the
    /// backlog. Returns between batches once cancelled (a batch being
    /// embedded is abandoned; its memories stay without a vector on disk).
    pub async fn run(mut self, cancel: CancellationToken) {
        let batch_max =
            (self.store.limits().embedding_batch_max as usize).clamp(1, MEMORY_IDS_PER_CALL_MAX);
        let recount_every = Duration::from_millis(MISSING_RECOUNT_INTERVAL_MS);
        let mut ids: Vec<MemoryId> = Vec::with_capacity(batch_max);
        // Where the pass over the memories missing a vector is (`None`: done).
        let mut pass: Option<Option<MemoryId>> = Some(None);
        let mut last_count: Option<Instant> = None;
        let mut recount = true;
        tracing::debug!(model = self.embedder.model_id(), "embedding worker started");
        loop {
            if cancel.is_cancelled() {
                break;
            }
            if recount && last_count.is_none() {
                self.recount(&mut last_count, &mut recount).await;
            }
            let mut worked = false;
            while ids.len() < batch_max {
                match self.receiver.try_recv() {
                    Ok(id) => ids.push(id),
                    Err(_) => break,
                }
            }
            if !ids.is_empty() {
                let batch = &ids;
                let store = &self.store;
                let Some(stored) = self
                    .retrying(&cancel, "embedding remembered memories", || {
                        store.embed_ids(batch)
                    })
                    .await
                else {
                    break;
                };
                self.stored(stored);
                self.backlog.give_back(ids.len());
                ids.clear();
                worked = true;
            }
            if let Some(after) = pass {
                let store = &self.store;
                let Some((stored, next)) = self
                    .retrying(&cancel, "embedding memories missing a vector", || {
                        store.embed_pending_page(PendingKind::Missing, after, batch_max as u32)
                    })
                    .await
                else {
                    break;
                };
                self.stored(stored);
                pass = next.map(Some);
                if pass.is_none() {
                    tracing::debug!("memories missing a vector at start: all embedded");
                }
                worked = true;
            }
            if worked {
                recount = true;
                continue;
            }
            // Idle: recount now or when due, and wait for the backlog.
            let due = last_count.map(|at| at + recount_every);
            if recount && due.is_none_or(|due| due <= Instant::now()) {
                self.recount(&mut last_count, &mut recount).await;
                continue;
            }
            let due = due.filter(|_| recount);
            tokio::select! {
                () = cancel.cancelled() => break,
                received = self.receiver.recv_many(&mut ids, batch_max) => {
                    if received == 0 {
                        break;
                    }
                }
                () = sleep_until(due), if due.is_some() => {}
            }
        }
        tracing::debug!(
            held = ids.len(),
            embedded = self.backlog.embedded_total(),
            "embedding worker stopped"
        );
    }

    /// Counts what a batch stored.
    fn stored(&self, stored: u64) {
        self.backlog.count_stored(stored);
    }

    /// Reads the number of memories missing a vector from the store.
    async fn recount(&self, last_count: &mut Option<Instant>, recount: &mut bool) {
        *last_count = Some(Instant::now());
        match self.store.pending_count(PendingKind::Missing).await {
            Ok(missing) => {
                self.backlog.set_missing(missing);
                *recount = false;
            }
            Err(error) => {
                tracing::warn!(%error, "cannot count the memories missing a vector");
            }
        }
    }

    /// Runs `attempt` until it succeeds, waiting `embedder_backoff_ms` after
    /// a failure, doubled after each further one, at most
    /// `embedder_timeout_ms`; `None` once `cancel` is cancelled.
    async fn retrying<T, F, Fut>(
        &self,
        cancel: &CancellationToken,
        what: &'static str,
        mut attempt: F,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        let limits = self.store.limits();
        let longest = Duration::from_millis(limits.embedder_timeout_ms.max(1));
        let mut wait = Duration::from_millis(limits.embedder_backoff_ms.max(1)).min(longest);
        loop {
            let result = tokio::select! {
                biased;
                () = cancel.cancelled() => return None,
                result = attempt() => result,
            };
            match result {
                Ok(value) => return Some(value),
                Err(error) => {
                    self.backlog.count_error();
                    tracing::warn!(
                        %error,
                        retry_in_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                        "{what} failed; the batch is kept and retried"
                    );
                    tokio::select! {
                        biased;
                        () = cancel.cancelled() => return None,
                        () = tokio::time::sleep(wait) => {}
                    }
                    wait = (wait * 2).min(longest);
                }
            }
        }
    }
}

impl Drop for EmbeddingWorker {
    /// The worker is gone (stopped, or never run): a `remember` waiting for
    /// room stops waiting and embeds inline.
    fn drop(&mut self) {
        self.backlog.close();
    }
}

/// Sleeps until `at` (never completes for `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
