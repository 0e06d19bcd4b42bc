//! Work items: the unit of the agents' shared work queue.
//!
//! Only the data lives here; the queue's rules (capacity, dependencies,
//! leases) belong to `mnemosyne-orchestration`.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Error, MemoryId};

/// Id of a work item: a UUIDv7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkItemId(Uuid);

impl WorkItemId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl Default for WorkItemId {
    fn default() -> Self {
        Self::new()
    }
}

impl From<Uuid> for WorkItemId {
    fn from(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl fmt::Display for WorkItemId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for WorkItemId {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(text.trim())
            .map(Self)
            .map_err(|_| Error::invalid(format!("not a work item id (expected a UUID): {text:?}")))
    }
}

string_enum!(
    /// Where a work item is in its life: written down, planned, built,
    /// checked, finished. `review` is where approval or rejection happens.
    Phase, "phase", default = Spec, {
        /// Working out what is wanted: the requirements.
        Spec => "spec",
        /// Deciding how to do it.
        Plan => "plan",
        /// Doing it.
        Implement => "implement",
        /// Checking it against the requirements; approval moves it on, rejection sends it back.
        Review => "review",
        /// Finished.
        Done => "done",
    }
);

string_enum!(
    /// Whether a work item waits, is being worked on, or is over.
    WorkState, "work state", default = Pending, {
        /// Waiting to be claimed (its dependencies may not be done yet).
        Pending => "pending",
        /// Claimed by an agent under a lease.
        Claimed => "claimed",
        /// Finished successfully.
        Done => "done",
        /// Gave up: failed by an agent or out of attempts.
        Failed => "failed",
        /// Withdrawn before it finished.
        Cancelled => "cancelled",
    }
);

impl WorkState {
    /// True for the states that count against `work_items_max` (pending, claimed).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Pending | Self::Claimed)
    }

    /// True for the states an item never leaves (done, failed, cancelled).
    pub fn is_finished(self) -> bool {
        !self.is_active()
    }
}

/// Something a work item must satisfy, and whether it does yet.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirement {
    /// What is required.
    pub text: String,
    /// Whether it is met.
    #[serde(default)]
    pub met: bool,
}

/// One unit of work shared by the agents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// UUIDv7 id.
    pub id: WorkItemId,
    /// What to do.
    pub description: String,
    /// Where it is in its life.
    #[serde(default)]
    pub phase: Phase,
    /// Waiting, claimed or over.
    #[serde(default)]
    pub state: WorkState,
    /// Higher is claimed first.
    #[serde(default)]
    pub priority: i32,
    /// Items that must be done before this one is ready.
    #[serde(default)]
    pub dependencies: Vec<WorkItemId>,
    /// What it must satisfy, each with its status.
    #[serde(default)]
    pub requirements: Vec<Requirement>,
    /// Whether finishing `implement` sends the item to `review` (true) or
    /// straight to done (false).
    #[serde(default)]
    pub review_required: bool,
    /// Memories that show the work was done.
    #[serde(default)]
    pub evidence: Vec<MemoryId>,
    /// What reviewers said, oldest first.
    #[serde(default)]
    pub review_feedback: Vec<String>,
    /// Tests a reviewer or planner suggests.
    #[serde(default)]
    pub suggested_tests: Vec<String>,
    /// The agent holding the claim.
    #[serde(default)]
    pub claimant: Option<String>,
    /// When the claim expires unless renewed.
    #[serde(default)]
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// Claims that ran out (or were given back) so far.
    #[serde(default)]
    pub attempts: u32,
    /// Why it failed.
    #[serde(default)]
    pub failure_reason: Option<String>,
    /// When it was submitted.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_reject_garbage() {
        let id = WorkItemId::new();
        assert_eq!(id.to_string().parse::<WorkItemId>().unwrap(), id);
        let err = "nope".parse::<WorkItemId>().unwrap_err().to_string();
        assert!(err.contains("work item id"), "{err}");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{id}\""));
    }

    #[test]
    fn enums_round_trip_and_know_which_states_are_active() {
        for phase in Phase::ALL {
            assert_eq!(phase.as_str().parse::<Phase>().unwrap(), *phase);
        }
        for state in WorkState::ALL {
            assert_eq!(state.as_str().parse::<WorkState>().unwrap(), *state);
        }
        let active: Vec<WorkState> = WorkState::ALL
            .iter()
            .copied()
            .filter(|s| s.is_active())
            .collect();
        assert_eq!(active, [WorkState::Pending, WorkState::Claimed]);
        let err = "later".parse::<WorkState>().unwrap_err().to_string();
        assert!(
            err.contains("unknown work state") && err.contains("claimed"),
            "{err}"
        );
        assert_eq!(
            serde_json::to_string(&Phase::Implement).unwrap(),
            "\"implement\""
        );
    }
}
