//! The work queue operations both front ends call, with their arguments:
//! the queue's transition, then a `work_changed` event, then the item.
//!
//! The queue is opened by [`crate::Server::open_work_queue`] when this
//! process owns the database's queue; until then (or when another process
//! owns it) every call answers 503 `work_queue_unavailable` saying why.

use std::str::FromStr;
use std::sync::{Arc, OnceLock, RwLock};

use mnemosyne_core::{MemoryId, Phase, WorkItem, WorkItemId, WorkState};
use mnemosyne_orchestration::{Completion, NewWorkItem, Review, WorkQueue, WorkStats};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::events::{Event, EventBus};

/// Arguments of `work_submit` and the body of `POST /v1/work/items`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitParams {
    /// What to do, in a sentence or a paragraph.
    pub description: String,
    /// Phase it starts in: spec, plan, implement (default) or review.
    #[serde(default)]
    pub phase: Option<String>,
    /// Higher is claimed first (default 0; may be negative).
    #[serde(default)]
    pub priority: i32,
    /// Ids of work items that must be done before this one is ready.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// What it must satisfy; each starts unmet.
    #[serde(default)]
    pub requirements: Vec<String>,
    /// Tests it should get.
    #[serde(default)]
    pub suggested_tests: Vec<String>,
    /// Send it to review after implement instead of straight to done.
    #[serde(default)]
    pub review: bool,
}

/// Arguments of `work_claim` and the body of `POST /v1/work/claim`.
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClaimParams {
    /// Your agent name; the claim is yours until its lease (work_lease_s) runs out.
    pub agent: String,
}

/// Arguments of `work_heartbeat` (and its HTTP body, without `id`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatParams {
    /// The claimed work item.
    #[serde(default)]
    pub id: String,
    /// Your agent name (checked against the claimant when given).
    #[serde(default)]
    pub agent: Option<String>,
}

/// Arguments of `work_complete` (and its HTTP body, without `id`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompleteParams {
    /// The claimed work item.
    #[serde(default)]
    pub id: String,
    /// Your agent name (checked against the claimant when given).
    #[serde(default)]
    pub agent: Option<String>,
    /// Ids of stored memories that show the work (remember them first).
    #[serde(default)]
    pub evidence: Vec<String>,
    /// Indexes (from 0) of the requirements now met.
    #[serde(default)]
    pub met: Vec<usize>,
}

/// Arguments of `work_fail` (and its HTTP body, without `id`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailParams {
    /// The work item.
    #[serde(default)]
    pub id: String,
    /// Your agent name (checked against the claimant when given).
    #[serde(default)]
    pub agent: Option<String>,
    /// Why it failed; items that depend on it fail too.
    pub reason: String,
}

/// Arguments of `work_review` (and its HTTP body, without `id`).
#[derive(Clone, Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReviewParams {
    /// The work item in review.
    #[serde(default)]
    pub id: String,
    /// Your agent name (checked against the claimant when given).
    #[serde(default)]
    pub agent: Option<String>,
    /// true: done; false: back to implement (feedback required).
    pub approve: bool,
    /// What to change, or a remark.
    #[serde(default)]
    pub feedback: Option<String>,
    /// Tests you ask for.
    #[serde(default)]
    pub suggested_tests: Vec<String>,
}

/// Arguments of `work_list` and the query of `GET /v1/work/items`.
#[derive(Clone, Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkListParams {
    /// Only items in this state: pending, claimed, done, failed or cancelled.
    #[serde(default)]
    pub state: Option<String>,
    /// Only items in this phase: spec, plan, implement, review or done.
    #[serde(default)]
    pub phase: Option<String>,
    /// Items per page (default 20, at most list_page_rows_max).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[serde(default)]
    pub offset: Option<u64>,
}

/// What `work_claim` answers.
#[derive(Clone, Debug, Serialize)]
pub struct ClaimView {
    /// The claimed item, or null when none is ready.
    pub item: Option<WorkItem>,
}

/// What `work_list` answers.
#[derive(Clone, Debug, Serialize)]
pub struct WorkListView {
    /// Newest first.
    pub items: Vec<WorkItem>,
}

fn parse<T: FromStr<Err = mnemosyne_core::Error>>(text: &str) -> Result<T, ApiError> {
    text.parse::<T>().map_err(ApiError::from)
}

fn item_id(text: &str) -> Result<WorkItemId, ApiError> {
    parse(text)
}

/// The work queue operations (cheap to clone).
#[derive(Clone, Debug)]
pub struct Work {
    queue: Arc<OnceLock<WorkQueue>>,
    unavailable: Arc<RwLock<Option<String>>>,
    events: EventBus,
}

impl Work {
    /// No queue yet: calls answer 503 until [`Work::attach`].
    pub(crate) fn new(events: EventBus) -> Self {
        Self {
            queue: Arc::new(OnceLock::new()),
            unavailable: Arc::new(RwLock::new(None)),
            events,
        }
    }

    /// Serves `queue` from now on.
    pub(crate) fn attach(&self, queue: WorkQueue) {
        let _ = self.queue.set(queue);
    }

    /// Says why there is no queue (another process owns it, say).
    pub fn set_unavailable(&self, reason: impl Into<String>) {
        *self.unavailable.write().unwrap_or_else(|e| e.into_inner()) = Some(reason.into());
    }

    /// The queue, when this server has one.
    pub fn queue(&self) -> Option<&WorkQueue> {
        self.queue.get()
    }

    fn live(&self) -> Result<&WorkQueue, ApiError> {
        self.queue.get().ok_or_else(|| {
            let reason = self
                .unavailable
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_else(|| "this server has no work queue".into());
            ApiError::new(503, "work_queue_unavailable", reason)
        })
    }

    fn changed(&self, item: &WorkItem) {
        self.events.publish(Event::WorkChanged {
            id: item.id,
            state: item.state,
            phase: item.phase,
        });
    }

    /// `work_submit`.
    pub async fn submit(&self, params: SubmitParams) -> Result<WorkItem, ApiError> {
        let queue = self.live()?;
        let phase = match &params.phase {
            Some(phase) => parse::<Phase>(phase)?,
            None => Phase::Implement,
        };
        let dependencies = params
            .depends_on
            .iter()
            .map(|id| item_id(id))
            .collect::<Result<Vec<_>, _>>()?;
        let new = NewWorkItem {
            id: None,
            description: params.description,
            phase,
            priority: params.priority,
            dependencies,
            requirements: params.requirements,
            suggested_tests: params.suggested_tests,
            review_required: params.review,
        };
        let item = queue.submit(new).await?;
        self.changed(&item);
        Ok(item)
    }

    /// `work_claim`.
    pub async fn claim(&self, params: ClaimParams) -> Result<ClaimView, ApiError> {
        let item = self.live()?.claim(&params.agent).await?;
        if let Some(item) = &item {
            self.changed(item);
        }
        Ok(ClaimView { item })
    }

    /// `work_heartbeat`.
    pub async fn heartbeat(&self, params: HeartbeatParams) -> Result<WorkItem, ApiError> {
        let id = item_id(&params.id)?;
        Ok(self.live()?.heartbeat(id, params.agent.as_deref()).await?)
    }

    /// `work_complete`.
    pub async fn complete(&self, params: CompleteParams) -> Result<WorkItem, ApiError> {
        let id = item_id(&params.id)?;
        let evidence = params
            .evidence
            .iter()
            .map(|m| parse::<MemoryId>(m))
            .collect::<Result<Vec<_>, _>>()?;
        let completion = Completion {
            agent: params.agent,
            evidence,
            met: params.met,
        };
        let item = self.live()?.complete(id, completion).await?;
        self.changed(&item);
        Ok(item)
    }

    /// `work_fail`.
    pub async fn fail(&self, params: FailParams) -> Result<WorkItem, ApiError> {
        let id = item_id(&params.id)?;
        let item = self
            .live()?
            .fail(id, params.agent.as_deref(), &params.reason)
            .await?;
        self.changed(&item);
        Ok(item)
    }

    /// `work_cancel`.
    pub async fn cancel(&self, id: &str) -> Result<WorkItem, ApiError> {
        let item = self.live()?.cancel(item_id(id)?).await?;
        self.changed(&item);
        Ok(item)
    }

    /// `work_review`.
    pub async fn review(&self, params: ReviewParams) -> Result<WorkItem, ApiError> {
        let id = item_id(&params.id)?;
        let review = Review {
            agent: params.agent,
            approve: params.approve,
            feedback: params.feedback,
            suggested_tests: params.suggested_tests,
        };
        let item = self.live()?.review(id, review).await?;
        self.changed(&item);
        Ok(item)
    }

    /// `work_get`.
    pub async fn get(&self, id: &str) -> Result<WorkItem, ApiError> {
        Ok(self.live()?.get(item_id(id)?).await?)
    }

    /// `work_list`.
    pub async fn list(&self, params: WorkListParams) -> Result<WorkListView, ApiError> {
        let state = params
            .state
            .as_deref()
            .map(parse::<WorkState>)
            .transpose()?;
        let phase = params.phase.as_deref().map(parse::<Phase>).transpose()?;
        let items = self
            .live()?
            .list(
                state,
                phase,
                params.limit.unwrap_or(20),
                params.offset.unwrap_or(0),
            )
            .await?;
        Ok(WorkListView { items })
    }

    /// `GET /v1/work/stats`.
    pub async fn stats(&self) -> Result<WorkStats, ApiError> {
        Ok(self.live()?.stats().await?)
    }
}
