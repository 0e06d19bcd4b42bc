//! Domain types, limits, errors and the storage trait of Mnemosyne.
//!
//! This crate knows nothing about SQL, files, sockets or a runtime: it is the
//! vocabulary the other crates share. Every bound lives in [`Limits`].
#![deny(missing_docs)]

#[macro_use]
mod string_enum;

mod document;
mod embed;
mod error;
mod ids;
mod limits;
mod memory;
mod namespace;
mod storage;
mod work;
#[cfg(feature = "workload")]
pub mod workload;

pub use document::{
    DocumentBody, DocumentMeta, DocumentSave, StoredDocument, UndoChange, UndoRow,
    validate_actor_name, validate_document_name, validate_document_title,
};
pub use embed::{EMBEDDING_DIMS_MAX, Embedder, Embedding, check_vector};
pub use error::{Error, Result};
pub use ids::MemoryId;
pub use limits::{
    CONTEXT_MEMORIES_HARD_CAP, EMBEDDING_TOKENS_HARD_CAP, ENV_PREFIX, Limits, LimitsError,
    MCP_MESSAGE_BYTES_MIN, RECALL_RESULTS_HARD_CAP,
};
pub use memory::{
    Importance, Link, LinkType, Memory, MemoryPatch, MemoryType, NewMemory, normalise_tags,
    timestamp_now, validate_tags,
};
pub use namespace::{NAMESPACE_PART_BYTES_MAX, Namespace};
pub use storage::{
    BatchOutcome, DocumentStorage, KeywordHit, KeywordQuery, LinkOutcome, LinkedMemory, ListQuery,
    ListSort, MEMORY_IDS_PER_CALL_MAX, MemoryStorage, OnConflict, PendingEmbedding, PendingKind,
    PoolStatus, Storage, StorageAdmin, VectorHit, VectorQuery, WorkPrune, WorkStorage,
    check_memory_ids,
};
pub use work::{Phase, Requirement, WorkItem, WorkItemId, WorkState};
