//! The agents' shared work queue: bounded, persistent, dependency-aware,
//! with leases.
//!
//! The rules live in [`state`] (pure, in memory). Every transition is applied
//! there under one lock, handed to the writer task in the same critical
//! section (so the writer sees transitions in the order they happened), and
//! acknowledged only after the writer has committed it through
//! [`Storage::save_work_items`]. The writer commits every transition waiting
//! at that moment in one transaction (group commit, up to
//! `work_commit_batch_max`), so concurrent agents share the cost of a commit.
//!
//! If a commit fails, the queue refuses new transitions, fails the ones
//! still waiting, and reloads its state from storage: memory never stays
//! ahead of the disk.
//!
//! Phases: `spec` → `plan` → `implement` → `review` (only when the item
//! requires review) → `done`. `complete` finishes the current phase; the item
//! is pending again in the next phase, or done after the last. In `review`,
//! `review` approves (done) or rejects (back to `implement`, with feedback).
//! An item is ready when every dependency is done; a dependency that fails or
//! is cancelled takes its dependents with it, so nothing waits forever.

mod gauges;
mod lock;
mod ownership;
mod requests;
mod shared;
mod state;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use mnemosyne_core::{Error, Limits, Phase, Result, WorkItem, WorkItemId, WorkState, WorkStorage};
use tokio::sync::{Notify, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use gauges::{WorkQueueGauges, WorkStats};
pub use ownership::{OtherOwner, QueueDatabase, QueueOwner, QueueOwnership, QueueOwnershipError};
pub use requests::{Completion, NewWorkItem, Review};
use shared::{Inner, Shared, Status, load_state};
use state::{LookedUp, QueueRules, QueueState, Submit};

use crate::Supervisor;

/// Name of the task that commits queue transitions.
pub const WRITER_TASK: &str = "work-queue-writer";
/// Name of the task that returns expired claims to the queue.
pub const REAPER_TASK: &str = "work-lease-reaper";
/// Times a submission re-reads storage for a dependency whose newest change
/// is still being written, before it gives up.
const DEPENDENCY_LOOKUPS_MAX: u32 = 20;
/// Pause between two of those reads.
const DEPENDENCY_LOOKUP_PAUSE_MS: u64 = 2;
/// The persistent work queue; cheap to clone (all clones share one queue).
///
/// One process should own the queue of a database at a time: open it only
/// under the [`QueueOwner`] that [`QueueOwnership::acquire`] returns (the
/// queue decides from its memory, not from the database).
#[derive(Clone, Debug)]
pub struct WorkQueue {
    shared: Arc<Shared>,
}

impl WorkQueue {
    /// Loads the active items from `storage` and starts the writer and the
    /// lease reaper under `supervisor`. Claims whose lease ran out while no
    /// queue was running return to the queue at once. Finished items past
    /// `work_finished_stored_max` are pruned first (a lowered limit applies
    /// at once).
    pub async fn open(
        storage: Arc<dyn WorkStorage>,
        limits: &Limits,
        supervisor: &Supervisor,
    ) -> Result<Self> {
        let rules = QueueRules::from_limits(limits);
        let pruned = storage
            .prune_finished_work_items(limits.work_finished_stored_max)
            .await?;
        let state = load_state(&*storage, rules).await?;
        let (writes, requests) = mpsc::channel(limits.work_write_backlog_max as usize);
        let shared = Arc::new(Shared {
            storage,
            inner: Mutex::new(Inner {
                state,
                status: Status::Open,
            }),
            writes,
            backlog_max: limits.work_write_backlog_max,
            list_rows_max: limits.list_page_rows_max,
            reaper_wake: Notify::new(),
            finished_stored: AtomicU64::new(pruned.finished_stored),
            finished_stored_max: limits.work_finished_stored_max,
        });
        let batch_max = limits.work_commit_batch_max as usize;
        let for_writer = Arc::clone(&shared);
        supervisor
            .spawn(WRITER_TASK, move |token| {
                writer::run(for_writer, requests, batch_max, token)
            })
            .map_err(|e| Error::Storage(format!("cannot start the work queue: {e}")))?;
        let queue = Self { shared };
        let for_reaper = queue.clone();
        supervisor
            .spawn(REAPER_TASK, move |token| for_reaper.run_reaper(token))
            .map_err(|e| Error::Storage(format!("cannot start the work queue: {e}")))?;
        queue.reap_expired().await?;
        Ok(queue)
    }

    /// Submits one item; see [`WorkQueue::submit_batch`].
    pub async fn submit(&self, new: NewWorkItem) -> Result<WorkItem> {
        let mut items = self.submit_batch(vec![new]).await?;
        Ok(items.remove(0))
    }

    /// Submits items all together or not at all. Refused with
    /// `WorkQueueFull` when they do not fit under `work_items_max`, and with
    /// `InvalidInput` for an unknown dependency, a dependency that failed or
    /// was cancelled, a dependency cycle, an id that exists, or bad text.
    pub async fn submit_batch(&self, new: Vec<NewWorkItem>) -> Result<Vec<WorkItem>> {
        let mut looked_up: LookedUp = HashMap::new();
        for lookup in 0..=DEPENDENCY_LOOKUPS_MAX {
            let unresolved = self.shared.lock().state.unresolved(&new, &looked_up);
            if !unresolved.is_empty() {
                self.look_up(&unresolved, &mut looked_up).await?;
            }
            let attempt = new.clone();
            let outcome = self
                .shared
                .transition(
                    |state| match state.submit(attempt, &looked_up, Utc::now())? {
                        Submit::Accepted(items) => Ok((Some(items.clone()), items)),
                        Submit::LookUp(ids) => {
                            for id in ids {
                                looked_up.remove(&id);
                            }
                            Ok((None, Vec::new()))
                        }
                    },
                )
                .await?;
            if let Some(items) = outcome {
                return Ok(items);
            }
            if lookup > 0 {
                tokio::time::sleep(Duration::from_millis(DEPENDENCY_LOOKUP_PAUSE_MS)).await;
            }
        }
        Err(Error::Storage(
            "a dependency is active in storage but not in this queue: another process is changing \
             the work queue of this database"
                .into(),
        ))
    }

    async fn look_up(&self, ids: &[WorkItemId], looked_up: &mut LookedUp) -> Result<()> {
        let found = self.shared.storage.work_item_states(ids).await?;
        for id in ids {
            looked_up.insert(*id, None);
        }
        for (id, state) in found {
            looked_up.insert(id, Some(state));
        }
        Ok(())
    }

    /// Claims the ready item with the highest priority (oldest first among
    /// equals) for `agent`, under a lease of `work_lease_s`; `None` when no
    /// item is ready.
    pub async fn claim(&self, agent: &str) -> Result<Option<WorkItem>> {
        self.shared
            .transition(|state| state.claim(agent, Utc::now(), Instant::now()))
            .await
    }

    /// Renews the lease of a claimed item (held by `agent`, when given).
    pub async fn heartbeat(&self, id: WorkItemId, agent: Option<&str>) -> Result<WorkItem> {
        let result = self
            .shared
            .transition(|state| {
                let item = state.heartbeat(id, agent, Utc::now(), Instant::now())?;
                Ok((item.clone(), vec![item]))
            })
            .await;
        self.explain_missing(id, result).await
    }

    /// Finishes the phase of a claimed item (see the module docs for the
    /// phases). Evidence must name stored memories.
    pub async fn complete(&self, id: WorkItemId, completion: Completion) -> Result<WorkItem> {
        let missing = self
            .shared
            .storage
            .missing_memories(&completion.evidence)
            .await?;
        if let Some(memory) = missing.first() {
            return Err(Error::invalid(format!(
                "evidence {memory} is not a stored memory"
            )));
        }
        self.change_item(id, |state| state.complete(id, &completion, Utc::now()))
            .await
    }

    /// Approves or rejects an item in `review`.
    pub async fn review(&self, id: WorkItemId, review: Review) -> Result<WorkItem> {
        self.change_item(id, |state| state.review(id, &review, Utc::now()))
            .await
    }

    /// Fails an active item (claimed by `agent`, when given); its dependents fail too.
    pub async fn fail(
        &self,
        id: WorkItemId,
        agent: Option<&str>,
        reason: &str,
    ) -> Result<WorkItem> {
        self.change_item(id, |state| state.fail(id, agent, reason, Utc::now()))
            .await
    }

    /// Cancels an active item; its dependents are cancelled too.
    pub async fn cancel(&self, id: WorkItemId) -> Result<WorkItem> {
        self.change_item(id, |state| state.cancel(id, Utc::now()))
            .await
    }

    /// Returns every claim whose lease ran out to the queue (or fails it
    /// when out of attempts); how many items changed.
    pub async fn reap_expired(&self) -> Result<usize> {
        self.shared
            .transition(|state| {
                let changed = state.reap_expired(Utc::now(), Instant::now());
                Ok((changed.len(), changed))
            })
            .await
    }

    /// The item with this id: the live copy when active, else the stored one.
    pub async fn get(&self, id: WorkItemId) -> Result<WorkItem> {
        if let Some(item) = self.shared.lock().state.active_item(id) {
            return Ok(item.clone());
        }
        self.shared
            .storage
            .work_item(id)
            .await?
            .ok_or(Error::WorkItemNotFound(id))
    }

    /// A page of stored items, newest first, at most `list_page_rows_max`.
    pub async fn list(
        &self,
        state: Option<WorkState>,
        phase: Option<Phase>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WorkItem>> {
        let limit = limit.min(self.shared.list_rows_max);
        self.shared
            .storage
            .list_work_items(state, phase, limit, offset)
            .await
    }

    /// Live figures plus the stored items per state.
    pub async fn stats(&self) -> Result<WorkStats> {
        let counted = self.shared.storage.count_work_items_by_state().await?;
        let stored = WorkState::ALL
            .iter()
            .map(|state| {
                let count = counted
                    .iter()
                    .find(|(s, _)| s == state)
                    .map_or(0, |(_, n)| *n);
                (*state, count)
            })
            .collect();
        Ok(WorkStats {
            queue: self.gauges(),
            stored,
        })
    }

    /// Live figures of the queue.
    pub fn gauges(&self) -> WorkQueueGauges {
        let mut gauges = self.shared.lock().state.gauges();
        gauges.write_backlog = self.shared.backlog_max as usize - self.shared.writes.capacity();
        gauges.finished_stored = self.shared.finished_stored.load(Ordering::Relaxed);
        gauges.finished_stored_max = self.shared.finished_stored_max;
        gauges
    }

    /// Runs a transition of item `id` that returns the changed items, the
    /// item itself first; "not active" becomes "not found" or "is done"
    /// (etc.) by asking storage.
    async fn change_item(
        &self,
        id: WorkItemId,
        change: impl FnOnce(&mut QueueState) -> Result<Vec<WorkItem>>,
    ) -> Result<WorkItem> {
        let result = self
            .shared
            .transition(|state| {
                let changed = change(state)?;
                Ok((changed[0].clone(), changed))
            })
            .await;
        self.explain_missing(id, result).await
    }

    /// Turns "not active" into "not found" or "is done" (etc.) by asking storage.
    async fn explain_missing<T>(&self, id: WorkItemId, result: Result<T>) -> Result<T> {
        match result {
            Err(Error::WorkItemNotFound(_)) => match self.shared.storage.work_item(id).await? {
                Some(item) => Err(Error::InvalidTransition(format!(
                    "work item {id} is {}",
                    item.state
                ))),
                None => Err(Error::WorkItemNotFound(id)),
            },
            other => other,
        }
    }

    /// The deadlock checker: sleeps until the first lease runs out (or a
    /// lease's length when none is held), then reaps.
    async fn run_reaper(self, token: CancellationToken) {
        loop {
            let (next, lease) = {
                let inner = self.shared.lock();
                (inner.state.next_lease_deadline(), inner.state.rules().lease)
            };
            let wake_at = next.unwrap_or_else(|| Instant::now() + lease);
            tokio::select! {
                biased;
                () = token.cancelled() => return,
                () = self.shared.reaper_wake.notified() => continue,
                () = tokio::time::sleep_until(wake_at) => {}
            }
            match self.reap_expired().await {
                Ok(0) => {}
                Ok(changed) => tracing::info!(changed, "expired work claims returned to the queue"),
                Err(error) => tracing::warn!(%error, "cannot return expired work claims"),
            }
        }
    }
}

#[cfg(test)]
mod tests;
