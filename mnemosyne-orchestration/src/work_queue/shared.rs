//! The state every clone of a queue and its writer share, and the one way
//! it changes: a transition, applied in memory, acknowledged after commit.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::Utc;
use mnemosyne_core::{Error, Result, WorkItem, WorkItemId, WorkState, WorkStorage};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;

use super::state::{QueueRules, QueueState};

/// Pause before a failed reload of the queue is tried again.
pub(super) const RELOAD_RETRY_MS: u64 = 1_000;

/// One transition's changed items and the caller waiting for their commit.
#[derive(Debug)]
pub(crate) struct WriteRequest {
    pub items: Vec<WorkItem>,
    pub done: oneshot::Sender<Result<()>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Status {
    Open,
    Reloading,
    Closed,
}

#[derive(Debug)]
pub(super) struct Inner {
    pub(super) state: QueueState,
    pub(super) status: Status,
}

#[derive(Debug)]
pub(super) struct Shared {
    pub(super) storage: Arc<dyn WorkStorage>,
    pub(super) inner: Mutex<Inner>,
    pub(super) writes: mpsc::Sender<WriteRequest>,
    pub(super) backlog_max: u32,
    pub(super) list_rows_max: u32,
    pub(super) reaper_wake: Notify,
    /// See [`WorkQueueGauges::finished_stored`]; only the writer changes it.
    pub(super) finished_stored: AtomicU64,
    pub(super) finished_stored_max: u64,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is only mutated by transitions that validate before they
        // change anything, so a panic elsewhere cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the state and waits until the items it returns are
    /// committed. Nothing changes when `change` fails, the queue is closed or
    /// reloading, or the write backlog is full.
    pub(super) async fn transition<T>(
        &self,
        change: impl FnOnce(&mut QueueState) -> Result<(T, Vec<WorkItem>)>,
    ) -> Result<T> {
        let (value, written) = {
            let mut inner = self.lock();
            match inner.status {
                Status::Open => {}
                Status::Reloading => {
                    return Err(Error::Storage(
                        "work queue is reloading after a failed write; retry".into(),
                    ));
                }
                Status::Closed => return Err(closed()),
            }
            let permit = self.writes.try_reserve().map_err(|error| match error {
                mpsc::error::TrySendError::Full(()) => Error::WorkWriteBacklogFull {
                    capacity: self.backlog_max,
                },
                mpsc::error::TrySendError::Closed(()) => closed(),
            })?;
            let (value, items) = change(&mut inner.state)?;
            if items.is_empty() {
                return Ok(value);
            }
            let (done, written) = oneshot::channel();
            permit.send(WriteRequest { items, done });
            (value, written)
        };
        written.await.map_err(|_| {
            Error::Storage("work queue writer stopped before the change was written".into())
        })??;
        Ok(value)
    }
}

pub(super) fn closed() -> Error {
    Error::Storage("work queue is shut down".into())
}

/// The queue's state as storage holds it; items that can never become ready
/// are failed and persisted first.
pub(super) async fn load_state(storage: &dyn WorkStorage, rules: QueueRules) -> Result<QueueState> {
    let items = storage.active_work_items().await?;
    let active: std::collections::HashSet<WorkItemId> = items.iter().map(|i| i.id).collect();
    let mut outside: Vec<WorkItemId> = items
        .iter()
        .flat_map(|item| item.dependencies.iter().copied())
        .filter(|id| !active.contains(id))
        .collect();
    outside.sort_unstable();
    outside.dedup();
    let dependency_states: HashMap<WorkItemId, WorkState> = if outside.is_empty() {
        HashMap::new()
    } else {
        storage
            .work_item_states(&outside)
            .await?
            .into_iter()
            .collect()
    };
    let (state, failed) =
        QueueState::load(rules, items, &dependency_states, Utc::now(), Instant::now());
    if !failed.is_empty() {
        storage.save_work_items(&failed).await?;
    }
    Ok(state)
}
