use std::fmt::Debug;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    DocumentMeta, DocumentSave, Embedding, Error, Importance, Link, Memory, MemoryId, MemoryPatch,
    Namespace, Phase, Result, StoredDocument, WorkItem, WorkItemId, WorkState,
};

/// Order of a list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListSort {
    /// Most recently updated first.
    #[default]
    Recent,
    /// Highest importance first, then most recent.
    Importance,
    /// Oldest id first: stable for paging through everything (export).
    Id,
}

/// Which memories to list and how many.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this exact namespace (`None`: all).
    pub namespace: Option<Namespace>,
    /// Only memories carrying every one of these tags.
    pub tags: Vec<String>,
    /// Order.
    pub sort: ListSort,
    /// Rows to return; the caller bounds it by `list_page_rows_max`.
    pub limit: u32,
    /// Rows to skip (for `Recent` and `Importance`).
    pub offset: u64,
    /// With [`ListSort::Id`]: only ids after this one (keyset paging).
    pub after: Option<MemoryId>,
    /// Include archived memories.
    pub include_archived: bool,
    /// Only memories of at least this importance.
    pub min_importance: Option<Importance>,
}

impl Default for ListQuery {
    fn default() -> Self {
        Self {
            namespace: None,
            tags: Vec::new(),
            sort: ListSort::Recent,
            limit: 20,
            offset: 0,
            after: None,
            include_archived: false,
            min_importance: None,
        }
    }
}

/// A keyword (full-text, BM25) search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeywordQuery {
    /// The user's text; the backend tokenises and quotes it, never passing it raw to the engine.
    pub text: String,
    /// Only these namespaces (empty: all).
    pub namespaces: Vec<Namespace>,
    /// Only memories carrying every one of these tags.
    pub tags: Vec<String>,
    /// Hits to return, best first.
    pub limit: u32,
    /// Include archived memories.
    pub include_archived: bool,
    /// Only memories of at least this importance.
    pub min_importance: Option<Importance>,
}

/// One keyword search result.
#[derive(Clone, Debug, PartialEq)]
pub struct KeywordHit {
    /// The memory.
    pub memory: Memory,
    /// BM25 relevance; higher is better (the engine's negated rank).
    pub bm25: f64,
}

/// A nearest-neighbour search over stored vectors.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorQuery {
    /// The query vector (L2-normalised, same model as the stored vectors).
    pub vector: Vec<f32>,
    /// Only vectors made by this model are compared.
    pub model_id: String,
    /// Only these namespaces (empty: all).
    pub namespaces: Vec<Namespace>,
    /// Only memories carrying every one of these tags.
    pub tags: Vec<String>,
    /// Hits to return, nearest first.
    pub limit: u32,
    /// Include archived memories.
    pub include_archived: bool,
    /// Only memories of at least this importance.
    pub min_importance: Option<Importance>,
}

/// One vector search result.
#[derive(Clone, Debug, PartialEq)]
pub struct VectorHit {
    /// The memory.
    pub memory: Memory,
    /// Cosine similarity to the query, -1..=1 (higher is nearer).
    pub similarity: f64,
}

/// A memory reached by following a link from (or to) one of the given memories.
#[derive(Clone, Debug, PartialEq)]
pub struct LinkedMemory {
    /// The memory the link was followed from.
    pub from: MemoryId,
    /// The memory at the other end.
    pub memory: Memory,
}

/// Most memory ids one storage call takes ([`MemoryStorage::linked_memories`],
/// [`MemoryStorage::pending_embeddings_among`], [`WorkStorage::missing_memories`]):
/// they are bound as statement parameters, of which SQLite binds at most 32 766.
pub const MEMORY_IDS_PER_CALL_MAX: usize = 10_000;

/// Refuses more than [`MEMORY_IDS_PER_CALL_MAX`] ids in one call, with one
/// line naming `what` was asked for.
pub fn check_memory_ids(ids: &[MemoryId], what: &str) -> Result<()> {
    if ids.len() > MEMORY_IDS_PER_CALL_MAX {
        return Err(Error::invalid(format!(
            "{what} of {} ids asked for, at most {MEMORY_IDS_PER_CALL_MAX} in one call",
            ids.len()
        )));
    }
    Ok(())
}

impl VectorQuery {
    /// Checks the query vector: see [`crate::check_vector`].
    pub fn check(&self) -> Result<()> {
        crate::embed::check_vector(&self.vector, "the query vector")
    }
}

/// A memory whose stored vector is missing or was made by another model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEmbedding {
    /// The memory.
    pub id: MemoryId,
    /// The text to embed.
    pub text: String,
}

/// Which memories a pass over vectors takes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingKind {
    /// Memories with no vector at all: just remembered by a server (its
    /// embedding worker makes the vector), committed before a crash, or
    /// imported. What a server's worker embeds at start.
    #[default]
    Missing,
    /// Those, and memories whose vector was made by another model (stale:
    /// the embedder changed). What `reindex` embeds.
    MissingOrStale,
}

impl PendingKind {
    /// True when a vector of another model counts as pending.
    pub fn includes_stale(self) -> bool {
        self == Self::MissingOrStale
    }
}

/// What to do when an imported memory's id already exists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// Keep the stored memory, count the imported one as skipped.
    #[default]
    Skip,
    /// Fail the batch with [`crate::Error::AlreadyExists`]; the batch is rolled back.
    Fail,
}

/// Result of a batch insert (one transaction).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchOutcome {
    /// Memories written.
    pub inserted: u64,
    /// Memories skipped because their id existed.
    pub skipped: u64,
}

/// Result of adding links in bulk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkOutcome {
    /// Links written (or already present).
    pub linked: u64,
    /// Links skipped because an end does not exist.
    pub missing: u64,
    /// Links skipped because their source already has `memory_links_max` links.
    #[serde(default)]
    pub over_limit: u64,
}

/// Result of pruning the finished work items on disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPrune {
    /// Finished items deleted, oldest first.
    pub deleted: u64,
    /// Finished items still stored afterwards.
    pub finished_stored: u64,
}

/// How busy the connection pools are right now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Reader connections allowed.
    pub readers_max: usize,
    /// Reader connections open.
    pub readers_open: usize,
    /// Reader connections open and idle.
    pub readers_idle: usize,
    /// Callers waiting for a reader.
    pub readers_waiting: usize,
    /// Writer connection checked out (0 or 1).
    pub writer_in_use: usize,
    /// Callers waiting for the writer.
    pub writer_waiting: usize,
    /// Bytes the embedded SQLite holds in its heap now (page caches,
    /// statements, every connection of the process together; for a remote
    /// database only the local library's own).
    #[serde(default)]
    pub sqlite_heap_bytes: u64,
    /// `sqlite_heap_bytes_max`: the soft limit SQLite frees cached pages at.
    #[serde(default)]
    pub sqlite_heap_bytes_max: u64,
}

/// Memories, their tags, links and vectors.
#[async_trait]
pub trait MemoryStorage: Send + Sync + Debug {
    /// Stores a validated memory with its tags, links and vector in one
    /// transaction. Unknown link targets are [`crate::Error::NotFound`]; an
    /// existing id is [`crate::Error::AlreadyExists`].
    async fn insert_memory(&self, memory: &Memory, embedding: Option<&Embedding>) -> Result<()>;

    /// Stores many memories in one transaction, all or nothing. Links are not
    /// written here (see [`MemoryStorage::add_links`]), so a batch may be in any order.
    async fn insert_memories(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome>;

    /// The memory with this id, archived or not.
    async fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>>;

    /// Records a read: bumps `access_count` and sets `accessed_at`.
    async fn record_access(&self, id: MemoryId, at: DateTime<Utc>) -> Result<()>;

    /// Applies a validated patch in one transaction and returns the new
    /// memory; a given embedding replaces the stored vector in the same transaction.
    async fn update_memory(
        &self,
        id: MemoryId,
        patch: &MemoryPatch,
        now: DateTime<Utc>,
        embedding: Option<&Embedding>,
    ) -> Result<Memory>;

    /// Stores (or replaces) the vectors of existing memories in one
    /// transaction; ids that no longer exist are skipped. Returns how many were stored.
    async fn set_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64>;

    /// Stores each vector in one transaction, unless the memory has a vector
    /// of the same model already (one made from a newer text: an update
    /// stored it while this one was being made) or no longer exists.
    /// Returns how many were stored. What the embedding passes use
    /// ([`PendingKind`]): a vector made from a text read before a change
    /// never replaces the vector of the changed text.
    async fn fill_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64>;

    /// Up to `limit` memories, in id order after `after`, whose vector is
    /// pending by `kind`: missing, or (with [`PendingKind::MissingOrStale`])
    /// also made by a model other than `model_id`.
    async fn pending_embeddings(
        &self,
        model_id: &str,
        kind: PendingKind,
        after: Option<MemoryId>,
        limit: u32,
    ) -> Result<Vec<PendingEmbedding>>;

    /// The memories among `ids` whose vector is pending by `kind`, in id
    /// order, with their current text; ids that no longer exist (or whose
    /// vector is there) are left out. At most [`MEMORY_IDS_PER_CALL_MAX`] ids.
    async fn pending_embeddings_among(
        &self,
        model_id: &str,
        kind: PendingKind,
        ids: &[MemoryId],
    ) -> Result<Vec<PendingEmbedding>>;

    /// Number of memories whose vector is pending by `kind`.
    async fn count_pending_embeddings(&self, model_id: &str, kind: PendingKind) -> Result<u64>;

    /// Nearest stored vectors of the query's model, by cosine similarity, best first.
    async fn vector_search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>>;

    /// Memories linked to or from the given ones (either direction), at most
    /// `per_memory_max` per given memory (given memories linked to each other included).
    async fn linked_memories(
        &self,
        ids: &[MemoryId],
        per_memory_max: u32,
        include_archived: bool,
    ) -> Result<Vec<LinkedMemory>>;

    /// Deletes the memory, its tags, its links (both directions) and its index entries.
    async fn delete_memory(&self, id: MemoryId) -> Result<()>;

    /// Adds one link; both ends must exist. Adding an existing link is a no-op.
    async fn add_link(&self, source: MemoryId, link: &Link) -> Result<()>;

    /// Adds many links in one transaction, skipping those with a missing end
    /// and those that would take a memory past `memory_links_max`.
    async fn add_links(&self, links: &[(MemoryId, Link)]) -> Result<LinkOutcome>;

    /// A page of memories.
    async fn list_memories(&self, query: &ListQuery) -> Result<Vec<Memory>>;

    /// Keyword search ranked by BM25, best first.
    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<KeywordHit>>;

    /// Number of stored memories.
    async fn count_memories(&self, include_archived: bool) -> Result<u64>;
}

/// The work queue's items: all the work queue needs of a store.
#[async_trait]
pub trait WorkStorage: Send + Sync + Debug {
    /// Stores each work item, inserting it or replacing the stored item with
    /// the same id, all in one transaction: a queue transition that touches
    /// several items is persisted whole or not at all. Returns after commit.
    async fn save_work_items(&self, items: &[WorkItem]) -> Result<()>;

    /// The work item with this id, in any state.
    async fn work_item(&self, id: WorkItemId) -> Result<Option<WorkItem>>;

    /// Every active (pending or claimed) work item, oldest first: what a
    /// restarted queue reloads.
    async fn active_work_items(&self) -> Result<Vec<WorkItem>>;

    /// The state of each known id among `ids`; unknown ids are left out.
    async fn work_item_states(&self, ids: &[WorkItemId]) -> Result<Vec<(WorkItemId, WorkState)>>;

    /// The ids among `ids` that name no stored memory, in the given order
    /// (what a work item's evidence must not hold). At most
    /// [`MEMORY_IDS_PER_CALL_MAX`] ids.
    async fn missing_memories(&self, ids: &[MemoryId]) -> Result<Vec<MemoryId>>;

    /// A page of work items, newest first, optionally only in one state and/or phase.
    async fn list_work_items(
        &self,
        state: Option<WorkState>,
        phase: Option<Phase>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WorkItem>>;

    /// Number of stored work items per state (states with none are left out).
    async fn count_work_items_by_state(&self) -> Result<Vec<(WorkState, u64)>>;

    /// Deletes the finished (done, failed, cancelled) work items beyond the
    /// newest `keep`, oldest finished first, in one transaction; active items
    /// are never touched.
    async fn prune_finished_work_items(&self, keep: u64) -> Result<WorkPrune>;
}

/// Context documents: all the document store needs of a store.
#[async_trait]
pub trait DocumentStorage: Send + Sync + Debug {
    /// Stores a new context document: its metadata, its first CRDT snapshot,
    /// its state text and the first record of its log, in one transaction.
    /// An existing name is [`crate::Error::DocumentExists`].
    async fn create_document(
        &self,
        meta: &DocumentMeta,
        snapshot: &[u8],
        state: &str,
        log: &str,
    ) -> Result<()>;

    /// The document with this name: metadata, snapshot, chunks in order,
    /// state, undo steps by `seq`.
    async fn load_document(&self, name: &str) -> Result<Option<StoredDocument>>;

    /// Saves a document in one transaction if its stored revision is still
    /// `save.expected_revision`: metadata and state replaced, and either one
    /// chunk appended or the snapshot replaced and every chunk dropped.
    /// `save.undo` is applied to the stored undo steps in order.
    /// `save.log`, when given, is appended to the document's log, which then
    /// keeps only its newest `save.log_keep` records.
    /// A moved revision is [`crate::Error::DocumentConflict`] (nothing
    /// written), a missing document [`crate::Error::DocumentNotFound`].
    async fn save_document(&self, save: &DocumentSave) -> Result<()>;

    /// The newest `limit` log records of a document, newest first.
    async fn document_log(&self, name: &str, limit: u32) -> Result<Vec<String>>;

    /// A page of document metadata, by name, optionally in one namespace.
    /// Reads no CRDT bytes, so a corrupt document never hides the others.
    async fn list_documents(
        &self,
        namespace: Option<&Namespace>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DocumentMeta>>;

    /// Deletes a document, its chunks and its log; false when it did not exist.
    async fn delete_document(&self, name: &str) -> Result<bool>;
}

/// What diagnostics and maintenance ask of a store.
#[async_trait]
pub trait StorageAdmin: Send + Sync + Debug {
    /// Short backend name (`sqlite`, `libsql`, `libsql-remote`).
    fn backend_name(&self) -> &'static str;

    /// Schema version of the open database.
    async fn schema_version(&self) -> Result<u32>;

    /// `PRAGMA integrity_check` output: `ok` when healthy.
    async fn integrity_check(&self) -> Result<String>;

    /// Connection pool gauges.
    fn pool_status(&self) -> PoolStatus;

    /// Closes every pooled connection; later calls fail.
    async fn close(&self);
}

/// The whole storage contract: what a backend implements and one
/// conformance suite checks. Writes return only after commit. Backend types
/// never appear here. Users that need one concern take that trait alone
/// (the work queue a [`WorkStorage`], the document store a [`DocumentStorage`]).
pub trait Storage: MemoryStorage + WorkStorage + DocumentStorage + StorageAdmin {}

impl<T: MemoryStorage + WorkStorage + DocumentStorage + StorageAdmin> Storage for T {}
