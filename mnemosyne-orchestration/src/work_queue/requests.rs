//! What callers give the queue: a new item, a completion, a review.

use mnemosyne_core::{MemoryId, Phase, WorkItemId};

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
