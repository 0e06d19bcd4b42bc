//! Orchestration for Mnemosyne: the [`Supervisor`] that owns every background
//! task and stops them on shutdown, the agents' [`WorkQueue`], and
//! [`QueueOwnership`], which decides whether this process owns a database's
//! queue.
//!
//! Invariants:
//! - no SQL: whatever this crate persists goes through core's `Storage` trait;
//! - [`Supervisor::spawn`] is the only way a Mnemosyne crate starts a
//!   background task, so every task has a name, an owner and a bounded end:
//!   cancelled on [`Supervisor::shutdown`], aborted after `shutdown_timeout_s`,
//!   aborted on `Drop`;
//! - nothing here prints: outcomes are returned or logged through `tracing`.

#![deny(missing_docs)]

mod supervisor;
mod work_queue;

pub use supervisor::{ABORT_GRACE_MS, ShutdownReport, Supervisor, SupervisorError, TaskId};
/// The token a supervised task receives; re-exported so callers need not
/// depend on tokio-util themselves.
pub use tokio_util::sync::CancellationToken;
pub use work_queue::{
    Completion, NewWorkItem, OtherOwner, QueueDatabase, QueueOwner, QueueOwnership,
    QueueOwnershipError, REAPER_TASK, Review, WRITER_TASK, WorkQueue, WorkQueueGauges, WorkStats,
};
