//! The one [`Storage`] implementation: a writer pool of one connection and
//! `pool_readers_max` reader connections of a [`Backend`], each operation
//! of [`crate::sql`] run on a blocking thread that owns its connection, so
//! it finishes (commit or rollback) even if the caller stops waiting.
//! Every input is checked here, before any backend sees it.

use std::fmt::Debug;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool::managed::{self, PoolError, Timeouts};
use mnemosyne_core::{
    BatchOutcome, DocumentMeta, DocumentSave, DocumentStorage, Embedding, Error, KeywordHit,
    KeywordQuery, Limits, Link, LinkOutcome, LinkedMemory, ListQuery, Memory, MemoryId,
    MemoryPatch, MemoryStorage, Namespace, OnConflict, PendingEmbedding, PendingKind, Phase,
    PoolStatus, Result, StorageAdmin, StoredDocument, VectorHit, VectorQuery, WorkItem, WorkItemId,
    WorkPrune, WorkState, WorkStorage, check_memory_ids,
};

use crate::sql::{self, SameModel, VectorIndex};
use crate::wal_bound::WalBound;

/// What a backend brings to [`PooledStorage`]: its connections (made by
/// its pool manager), its vector index, its name and SQLite's heap figure.
pub trait Backend:
    VectorIndex<Conn: Send + Debug + 'static> + Send + Sync + Debug + 'static
{
    /// Opens and checks the backend's connections.
    type Manager: managed::Manager<Type = Self::Conn, Error = Error> + Debug + Send + Sync;

    /// Short backend name (`sqlite`, `libsql`, `libsql-remote`).
    fn name(&self) -> &'static str;

    /// Bytes in SQLite's heap now, every connection of the process together.
    fn heap_bytes(&self) -> u64;

    /// True when every read operation should run inside one read
    /// transaction: a remote server opens a connection of its own for each
    /// statement outside a transaction, and under load fails to open them
    /// in time; inside one, an operation's statements share one.
    fn reads_in_transaction(&self) -> bool {
        false
    }
}

/// Storage over a pooled [`Backend`].
#[derive(Debug)]
pub struct PooledStorage<B: Backend> {
    backend: B,
    /// The database file, named in [`Error::DiskFull`] (empty for a remote server).
    path: PathBuf,
    writer: managed::Pool<B::Manager>,
    readers: managed::Pool<B::Manager>,
    pool_wait_timeout_ms: u64,
    memory_links_max: u32,
    sqlite_heap_bytes_max: u64,
    sqlite_busy_timeout_ms: u64,
    /// The WAL of a local file (a remote server keeps its own).
    wal: Option<WalBound>,
}

/// A reader connection held out of the pool until dropped.
pub struct HeldConnection(#[allow(dead_code)] Box<dyn Send>);

impl Debug for HeldConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HeldConnection")
    }
}

/// The managers of the writer pool and of the reader pool.
pub struct Managers<M> {
    /// Makes the one writer connection.
    pub writer: M,
    /// Makes the read-only connections.
    pub reader: M,
}

fn build_pool<M: managed::Manager>(
    manager: M,
    size: usize,
    wait: Duration,
) -> Result<managed::Pool<M>> {
    managed::Pool::builder(manager)
        .max_size(size)
        .timeouts(Timeouts {
            wait: Some(wait),
            create: Some(wait),
            recycle: Some(wait),
        })
        .runtime(deadpool::Runtime::Tokio1)
        .build()
        .map_err(|e| Error::Storage(format!("cannot build the connection pool: {e}")))
}

impl<B: Backend> PooledStorage<B> {
    /// Builds both pools from `limits`; `path` is the local file (None for
    /// a remote server, which keeps its own WAL). Opens no connection yet.
    pub(crate) fn new(
        backend: B,
        path: Option<PathBuf>,
        managers: Managers<B::Manager>,
        limits: &Limits,
    ) -> Result<Self> {
        let wait = Duration::from_millis(limits.pool_wait_timeout_ms);
        Ok(Self {
            backend,
            wal: path
                .as_ref()
                .map(|path| WalBound::new(path, limits.sqlite_wal_bytes_max)),
            path: path.unwrap_or_default(),
            writer: build_pool(managers.writer, 1, wait)?,
            readers: build_pool(managers.reader, limits.pool_readers_max as usize, wait)?,
            pool_wait_timeout_ms: limits.pool_wait_timeout_ms,
            memory_links_max: limits.memory_links_max,
            sqlite_heap_bytes_max: limits.sqlite_heap_bytes_max,
            sqlite_busy_timeout_ms: limits.sqlite_busy_timeout_ms,
        })
    }

    /// Brings the schema up to date; `what` names the database in the error.
    pub(crate) async fn migrate(&self, what: &str) -> Result<()> {
        self.write(sql::admin::migrate).await.map_err(|e| match e {
            Error::Storage(message) => Error::Storage(format!("cannot open {what}: {message}")),
            other => other,
        })
    }

    /// Checks a reader connection out of the pool and holds it until the
    /// returned guard drops (lets tests and the stress harness exhaust the pool).
    pub async fn hold_reader(&self) -> Result<HeldConnection> {
        let conn = self
            .readers
            .get()
            .await
            .map_err(|e| self.pool_error(e, "reader"))?;
        Ok(HeldConnection(Box::new(conn)))
    }

    fn pool_error(&self, error: PoolError<Error>, role: &'static str) -> Error {
        match error {
            PoolError::Timeout(_) => Error::PoolTimeout {
                role,
                waited_ms: self.pool_wait_timeout_ms,
                pool_size: if role == "writer" {
                    1
                } else {
                    self.readers.status().max_size
                },
            },
            PoolError::Closed => Error::Storage("the store is closed".into()),
            PoolError::Backend(Error::Storage(message)) => {
                Error::Storage(format!("cannot open a {role} connection: {message}"))
            }
            PoolError::Backend(other) => other,
            other => Error::Storage(format!("cannot open a {role} connection: {other}")),
        }
    }

    /// Runs `work` on a pooled connection, on a blocking thread that owns
    /// it: the work runs to its end even if the caller stops waiting, then
    /// the connection returns to the pool.
    async fn run<T: Send + 'static>(
        &self,
        pool: &managed::Pool<B::Manager>,
        role: &'static str,
        work: impl FnOnce(&mut B::Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| self.pool_error(e, role).on_database(&self.path))?;
        tokio::task::spawn_blocking(move || work(&mut conn))
            .await
            .map_err(|e| Error::Storage(format!("{role} connection task failed: {e}")))?
            .map_err(|e| e.on_database(&self.path))
    }

    /// Runs `work` on the writer, then a WAL checkpoint when one is due.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut B::Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let wal = self.wal.clone();
        let busy_timeout_ms = self.sqlite_busy_timeout_ms;
        self.run(&self.writer, "writer", move |conn| {
            let done = work(conn)?;
            if let Some(wal) = wal.filter(WalBound::is_due) {
                // The write is committed whatever the checkpoint does.
                let finished = sql::admin::truncate_wal(conn, busy_timeout_ms);
                wal.attempted(finished);
            }
            Ok(done)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut B::Conn) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        if self.backend.reads_in_transaction() {
            return self
                .run(&self.readers, "reader", move |conn| {
                    sql::conn::read_transaction(conn, work)
                })
                .await;
        }
        self.run(&self.readers, "reader", work).await
    }

    /// Checks the vectors, then stores them in one write transaction.
    async fn store_embeddings(
        &self,
        items: &[(MemoryId, Embedding)],
        same_model: SameModel,
    ) -> Result<u64> {
        for (_, embedding) in items {
            embedding.check()?;
        }
        if items.is_empty() {
            return Ok(0);
        }
        let items = items.to_vec();
        self.write(move |conn| sql::memories::set_embeddings::<B>(conn, &items, same_model))
            .await
    }
}

#[async_trait]
impl<B: Backend> MemoryStorage for PooledStorage<B> {
    async fn insert_memory(&self, memory: &Memory, embedding: Option<&Embedding>) -> Result<()> {
        if let Some(embedding) = embedding {
            embedding.check()?;
        }
        let memory = memory.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| sql::memories::insert_memory::<B>(conn, &memory, embedding.as_ref()))
            .await
    }

    async fn insert_memories(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome> {
        let memories = memories.to_vec();
        self.write(move |conn| sql::memories::insert_memories(conn, &memories, on_conflict))
            .await
    }

    async fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>> {
        self.read(move |conn| sql::memories::get_memory(conn, id))
            .await
    }

    async fn record_access(&self, id: MemoryId, at: DateTime<Utc>) -> Result<()> {
        self.write(move |conn| sql::memories::record_access(conn, id, at))
            .await
    }

    async fn update_memory(
        &self,
        id: MemoryId,
        patch: &MemoryPatch,
        now: DateTime<Utc>,
        embedding: Option<&Embedding>,
    ) -> Result<Memory> {
        if let Some(embedding) = embedding {
            embedding.check()?;
        }
        let patch = patch.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| {
            sql::memories::update_memory::<B>(conn, id, &patch, now, embedding.as_ref())
        })
        .await
    }

    async fn set_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        self.store_embeddings(items, SameModel::Replace).await
    }

    async fn fill_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        self.store_embeddings(items, SameModel::Keep).await
    }

    async fn pending_embeddings(
        &self,
        model_id: &str,
        kind: PendingKind,
        after: Option<MemoryId>,
        limit: u32,
    ) -> Result<Vec<PendingEmbedding>> {
        let model_id = model_id.to_owned();
        self.read(move |conn| {
            sql::memories::pending_embeddings(conn, &model_id, kind, after, limit)
        })
        .await
    }

    async fn pending_embeddings_among(
        &self,
        model_id: &str,
        kind: PendingKind,
        ids: &[MemoryId],
    ) -> Result<Vec<PendingEmbedding>> {
        check_memory_ids(ids, "pending vectors")?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let model_id = model_id.to_owned();
        let ids = ids.to_vec();
        self.read(move |conn| sql::memories::pending_embeddings_among(conn, &model_id, kind, &ids))
            .await
    }

    async fn count_pending_embeddings(&self, model_id: &str, kind: PendingKind) -> Result<u64> {
        let model_id = model_id.to_owned();
        self.read(move |conn| sql::memories::count_pending_embeddings(conn, &model_id, kind))
            .await
    }

    async fn vector_search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        query.check()?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.read(move |conn| B::search(conn, &query)).await
    }

    async fn linked_memories(
        &self,
        ids: &[MemoryId],
        per_memory_max: u32,
        include_archived: bool,
    ) -> Result<Vec<LinkedMemory>> {
        check_memory_ids(ids, "linked memories")?;
        if ids.is_empty() || per_memory_max == 0 {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |conn| {
            sql::memories::linked_memories(conn, &ids, per_memory_max, include_archived)
        })
        .await
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<()> {
        self.write(move |conn| sql::memories::delete_memory::<B>(conn, id))
            .await
    }

    async fn add_link(&self, source: MemoryId, link: &Link) -> Result<()> {
        let link = link.clone();
        let links_max = self.memory_links_max;
        self.write(move |conn| sql::memories::add_link(conn, source, &link, links_max))
            .await
    }

    async fn add_links(&self, links: &[(MemoryId, Link)]) -> Result<LinkOutcome> {
        let links = links.to_vec();
        let links_max = self.memory_links_max;
        self.write(move |conn| sql::memories::add_links(conn, &links, links_max))
            .await
    }

    async fn list_memories(&self, query: &ListQuery) -> Result<Vec<Memory>> {
        let query = query.clone();
        self.read(move |conn| sql::memories::list_memories(conn, &query))
            .await
    }

    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<KeywordHit>> {
        let query = query.clone();
        self.read(move |conn| sql::memories::keyword_search(conn, &query))
            .await
    }

    async fn count_memories(&self, include_archived: bool) -> Result<u64> {
        self.read(move |conn| sql::memories::count_memories(conn, include_archived))
            .await
    }
}

#[async_trait]
impl<B: Backend> WorkStorage for PooledStorage<B> {
    async fn save_work_items(&self, items: &[WorkItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let items = items.to_vec();
        self.write(move |conn| sql::work::save_work_items(conn, &items))
            .await
    }

    async fn work_item(&self, id: WorkItemId) -> Result<Option<WorkItem>> {
        self.read(move |conn| sql::work::work_item(conn, id)).await
    }

    async fn active_work_items(&self) -> Result<Vec<WorkItem>> {
        self.read(sql::work::active_work_items).await
    }

    async fn work_item_states(&self, ids: &[WorkItemId]) -> Result<Vec<(WorkItemId, WorkState)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |conn| sql::work::work_item_states(conn, &ids))
            .await
    }

    async fn missing_memories(&self, ids: &[MemoryId]) -> Result<Vec<MemoryId>> {
        check_memory_ids(ids, "stored memories")?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |conn| sql::work::missing_memories(conn, &ids))
            .await
    }

    async fn list_work_items(
        &self,
        state: Option<WorkState>,
        phase: Option<Phase>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WorkItem>> {
        self.read(move |conn| sql::work::list_work_items(conn, state, phase, limit, offset))
            .await
    }

    async fn count_work_items_by_state(&self) -> Result<Vec<(WorkState, u64)>> {
        self.read(sql::work::count_work_items_by_state).await
    }

    async fn prune_finished_work_items(&self, keep: u64) -> Result<WorkPrune> {
        self.write(move |conn| sql::work::prune_finished_work_items(conn, keep))
            .await
    }
}

#[async_trait]
impl<B: Backend> DocumentStorage for PooledStorage<B> {
    async fn create_document(
        &self,
        meta: &DocumentMeta,
        snapshot: &[u8],
        state: &str,
        log: &str,
    ) -> Result<()> {
        let (meta, snapshot, state) = (meta.clone(), snapshot.to_vec(), state.to_owned());
        let log = log.to_owned();
        self.write(move |conn| {
            sql::documents::create_document(conn, &meta, &snapshot, &state, &log)
        })
        .await
    }

    async fn load_document(&self, name: &str) -> Result<Option<StoredDocument>> {
        let name = name.to_owned();
        self.read(move |conn| sql::documents::load_document(conn, &name))
            .await
    }

    async fn save_document(&self, save: &DocumentSave) -> Result<()> {
        let save = save.clone();
        self.write(move |conn| sql::documents::save_document(conn, &save))
            .await
    }

    async fn document_log(&self, name: &str, limit: u32) -> Result<Vec<String>> {
        let name = name.to_owned();
        self.read(move |conn| sql::documents::document_log(conn, &name, limit))
            .await
    }

    async fn list_documents(
        &self,
        namespace: Option<&Namespace>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DocumentMeta>> {
        let namespace = namespace.cloned();
        self.read(move |conn| {
            sql::documents::list_documents(conn, namespace.as_ref(), limit, offset)
        })
        .await
    }

    async fn delete_document(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| sql::documents::delete_document(conn, &name))
            .await
    }
}

#[async_trait]
impl<B: Backend> StorageAdmin for PooledStorage<B> {
    fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    async fn schema_version(&self) -> Result<u32> {
        self.read(sql::admin::user_version).await
    }

    async fn integrity_check(&self) -> Result<String> {
        self.read(sql::admin::integrity_check).await
    }

    fn pool_status(&self) -> PoolStatus {
        crate::pool_status::from_pools(
            self.readers.status(),
            self.writer.status(),
            self.backend.heap_bytes(),
            self.sqlite_heap_bytes_max,
        )
    }

    async fn close(&self) {
        self.readers.close();
        self.writer.close();
    }
}
