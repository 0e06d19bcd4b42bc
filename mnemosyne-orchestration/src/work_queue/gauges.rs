//! The queue's live figures, for diagnostics and `/metrics`.

use mnemosyne_core::WorkState;
use serde::Serialize;

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
