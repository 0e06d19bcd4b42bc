//! [`Core`]: the state both front ends share, which every handler and
//! background task of a server reaches.

use std::sync::{Arc, Weak};

use mnemosyne_core::Limits;
use mnemosyne_diagnostics::{MemoryTracker, Monitor};
use mnemosyne_orchestration::Supervisor;

use crate::docs::Docs;
use crate::events::EventBus;
use crate::metrics::Metrics;
use crate::ops::Memories;
use crate::work::Work;

/// State shared with the tasks and handlers. It holds the supervisor weakly,
/// so that no task keeps its own owner alive: dropping the [`Server`](crate::Server) drops
/// the supervisor, which aborts whatever still runs.
#[derive(Debug)]
pub(crate) struct Core {
    pub(crate) memories: Memories,
    pub(crate) work: Work,
    pub(crate) docs: Docs,
    pub(crate) tracker: Arc<MemoryTracker>,
    pub(crate) monitor: std::sync::OnceLock<Monitor>,
    pub(crate) events: EventBus,
    pub(crate) metrics: Metrics,
    pub(crate) limits: Limits,
    pub(crate) supervisor: Weak<Supervisor>,
    /// Set once the embedding worker was started (or found unneeded).
    pub(crate) embedding_worker: std::sync::OnceLock<()>,
}
