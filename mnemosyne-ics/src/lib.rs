//! Context documents that several agents edit at once.
//!
//! A document is a named text on an Automerge CRDT ([`CrdtText`]), with
//! metadata (namespace, title, epoch, times). Agents edit it by splices or
//! by sending a whole new text, which is turned into minimal splices by a
//! diff ([`splices`]). Edits based on an older read are applied to a replica
//! of that read and merged, so concurrent edits both survive.
//!
//! [`DocumentStore`] persists documents through core's `Storage` trait (no
//! SQL here): each save appends the CRDT's incremental bytes, and compaction
//! (after `crdt_compact_every_ops` operations or `crdt_compact_every_s`
//! seconds) rebuilds the document from its current text, drops the history
//! and bumps the epoch; edits based on an older epoch are refused with
//! `Error::StaleEpoch`. Undo is a bounded stack of inverse splices per actor.
//! Nothing here prints.
#![deny(missing_docs)]

mod chunks;
mod crdt;
mod diff;
mod load_error;
mod store;
mod undo;

pub use crdt::CrdtText;
pub use diff::{Splice, apply_to_string, splices};
pub use load_error::LoadError;
pub use store::{
    Action, Attribution, Base, CONFLICT_RETRIES_MAX, Change, Clock, DocumentStore, DocumentView,
    Edit, EditOutcome, History, NewDocument, UndoDepth,
};
pub use undo::{ActorSteps, Stack, StateJson, Step, UndoState};
