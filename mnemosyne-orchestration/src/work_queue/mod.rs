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

mod lock;
mod ownership;
mod state;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::Utc;
use mnemosyne_core::{
    Error, Limits, MemoryId, Phase, Result, WorkItem, WorkItemId, WorkState, WorkStorage,
};
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

pub use ownership::{OtherOwner, QueueDatabase, QueueOwner, QueueOwnership, QueueOwnershipError};
use state::{LookedUp, QueueRules, QueueState, Submit};
use writer::WriteRequest;

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
/// Pause before a failed reload of the queue is tried again.
const RELOAD_RETRY_MS: u64 = 1_000;

/// A work item to submit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewWorkItem {
    /// Its id, when the caller chooses it (so items of one batch can depend
    /// on each other); a fresh UUIDv7 otherwise.
    pub id: Option<WorkItemId>,
    /// What to do.
    pub description: String,
    /// The phase it starts in (not `done`).
    pub phase: Phase,
    /// Higher is claimed first.
    pub priority: i32,
    /// Items that must be done first: existing items, or items of the same batch.
    pub dependencies: Vec<WorkItemId>,
    /// What it must satisfy (all unmet at first).
    pub requirements: Vec<String>,
    /// Tests a planner suggests.
    pub suggested_tests: Vec<String>,
    /// Whether finishing `implement` sends it to `review` instead of done.
    pub review_required: bool,
}

impl NewWorkItem {
    /// An item to implement, priority 0, no dependencies, no review.
    pub fn new(description: impl Into<String>) -> Self {
        Self {
            id: None,
            description: description.into(),
            phase: Phase::Implement,
            priority: 0,
            dependencies: Vec::new(),
            requirements: Vec::new(),
            suggested_tests: Vec::new(),
            review_required: false,
        }
    }
}

/// What an agent reports when it finishes the phase it claimed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Completion {
    /// The claimant; when given, it must hold the claim.
    pub agent: Option<String>,
    /// Stored memories showing the work (added to the item's evidence).
    pub evidence: Vec<MemoryId>,
    /// Indexes of the requirements now met.
    pub met: Vec<usize>,
}

/// A reviewer's verdict on an item in `review`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Review {
    /// The reviewer; when the item is claimed, it must be the claimant.
    pub agent: Option<String>,
    /// Approve (done) or reject (back to implement).
    pub approve: bool,
    /// What the reviewer says; required to reject.
    pub feedback: Option<String>,
    /// Tests the reviewer asks for.
    pub suggested_tests: Vec<String>,
}

/// Live figures of the queue (for diagnostics and `/metrics`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct WorkQueueGauges {
    /// Pending and claimed items (at most `capacity`).
    pub active: usize,
    /// Pending items whose dependencies are all done.
    pub ready: usize,
    /// Items claimed under a lease.
    pub claimed: usize,
    /// Pending items waiting for a dependency.
    pub waiting: usize,
    /// Finished items still held in memory.
    pub finished_retained: usize,
    /// `work_items_max`.
    pub capacity: u32,
    /// `work_completed_retained_max`.
    pub finished_retained_max: u32,
    /// Finished items stored on disk, as of the last prune plus those
    /// finished since (an upper bound).
    pub finished_stored: u64,
    /// `work_finished_stored_max`.
    pub finished_stored_max: u64,
    /// Transitions waiting for their commit.
    pub write_backlog: usize,
}

/// The queue's figures plus the stored items per state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkStats {
    /// Live figures.
    pub queue: WorkQueueGauges,
    /// Stored items per state, every state listed; serialised as an object
    /// (`{"pending": 3, ...}`), the same over HTTP, MCP and the CLI.
    #[serde(serialize_with = "states_as_object")]
    pub stored: Vec<(WorkState, u64)>,
}

fn states_as_object<S: serde::Serializer>(
    stored: &[(WorkState, u64)],
    serializer: S,
) -> std::result::Result<S::Ok, S::Error> {
    serializer.collect_map(stored.iter().map(|(state, count)| (state.as_str(), count)))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Open,
    Reloading,
    Closed,
}

#[derive(Debug)]
struct Inner {
    state: QueueState,
    status: Status,
}

#[derive(Debug)]
struct Shared {
    storage: Arc<dyn WorkStorage>,
    inner: Mutex<Inner>,
    writes: mpsc::Sender<WriteRequest>,
    backlog_max: u32,
    list_rows_max: u32,
    reaper_wake: Notify,
    /// See [`WorkQueueGauges::finished_stored`]; only the writer changes it.
    finished_stored: AtomicU64,
    finished_stored_max: u64,
}

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

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        // The state is only mutated by transitions that validate before they
        // change anything, so a panic elsewhere cannot leave it half-changed.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Applies `change` to the state and waits until the items it returns are
    /// committed. Nothing changes when `change` fails, the queue is closed or
    /// reloading, or the write backlog is full.
    async fn transition<T>(
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

fn closed() -> Error {
    Error::Storage("work queue is shut down".into())
}

/// The queue's state as storage holds it; items that can never become ready
/// are failed and persisted first.
async fn load_state(storage: &dyn WorkStorage, rules: QueueRules) -> Result<QueueState> {
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

#[cfg(test)]
mod tests;
