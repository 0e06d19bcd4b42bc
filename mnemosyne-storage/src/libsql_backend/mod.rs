//! The `libsql` backend: a local SQLite file through libsql's bundled SQLite,
//! or a remote libsql server (sqld, Turso) over HTTP, pooled by deadpool.
//! One writer connection and `pool_readers_max` reader connections, every
//! timeout set from [`Limits`].
//!
//! libsql's local connection has an async API that does its work
//! synchronously, so local work runs on a blocking thread (like the sqlite
//! backend's `interact`); remote work is real async I/O and runs as a task.
//! Either way the work runs to completion (commit or rollback) even if the
//! caller stops waiting, and a panic inside libsql becomes a storage error.

mod doc;
mod ops;
mod vectors;
mod work;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult, Timeouts};
use libsql::Connection;
use mnemosyne_core::{
    BatchOutcome, DocumentMeta, DocumentSave, Embedding, Error, KeywordHit, KeywordQuery, Limits,
    Link, LinkOutcome, LinkedMemory, ListQuery, Memory, MemoryId, MemoryPatch, Namespace,
    OnConflict, PendingEmbedding, PendingKind, Phase, PoolStatus, Result, Storage, StoredDocument,
    VectorHit, VectorQuery, WorkItem, WorkItemId, WorkPrune, WorkState,
};

use crate::location::Location;
use crate::rows::check_pending_ids;
use crate::schema;
use crate::wal_bound::{CHECKPOINT_WAIT_MS, TRUNCATE_CHECKPOINT, WalBound};

type Pool = managed::Pool<Manager>;
type Object = managed::Object<Manager>;

/// Where the connections of a [`Manager`] go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A local file: connection pragmas apply, work runs on a blocking thread.
    Local,
    /// A libsql server: each autocommit statement runs on its own server
    /// stream, so per-connection pragmas would not stick and are not set.
    Remote,
}

/// Opens and checks libsql connections for one pool.
#[derive(Debug)]
struct Manager {
    database: Arc<libsql::Database>,
    kind: Kind,
    read_only: bool,
    busy_timeout_ms: u64,
    page_cache_bytes_max: u64,
    heap_bytes_max: u64,
    wal_bytes_max: u64,
}

impl Manager {
    fn setup_sql(&self) -> String {
        let mut setup = schema::connection_pragmas(self.busy_timeout_ms, self.page_cache_bytes_max);
        setup.push_str(&schema::heap_limit_pragma(self.heap_bytes_max));
        setup.push_str(&schema::wal_size_limit_pragma(self.wal_bytes_max));
        if self.read_only {
            setup.push_str("PRAGMA query_only = ON;");
        }
        setup
    }
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection> {
        if self.kind == Kind::Remote {
            // Lazy: no request is sent until the first statement.
            return self
                .database
                .connect()
                .map_err(|e| Error::Storage(format!("cannot create a libsql client: {e}")));
        }
        let database = self.database.clone();
        let setup = self.setup_sql();
        let writer = !self.read_only;
        let busy_timeout_ms = self.busy_timeout_ms;
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(async move {
                let conn = database.connect().map_err(ops::db)?;
                conn.execute_batch(&setup).await.map_err(ops::db)?;
                if writer {
                    let mode = ops::journal_mode_wal(&conn, busy_timeout_ms).await?;
                    if !mode.eq_ignore_ascii_case("wal") {
                        tracing::warn!(mode, "the database did not switch to WAL journal mode");
                    }
                }
                Ok(conn)
            })
        })
        .await
        .map_err(|e| Error::Storage(format!("connection setup task failed: {e}")))?
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<Error> {
        // Work always ends with COMMIT or ROLLBACK; a connection still inside a
        // transaction (failed rollback, a panic mid-work) is thrown away.
        if !conn.is_autocommit() {
            return Err(RecycleError::message(
                "connection was left inside a transaction",
            ));
        }
        if self.kind == Kind::Remote {
            // Forget the server stream of the last use (no request is sent): a
            // stream left idle expires on the server, and libsql would keep
            // sending its stale baton and fail every later statement.
            conn.reset().await;
        }
        Ok(())
    }
}

/// libsql storage (local file or remote server) pooled by deadpool.
#[derive(Debug)]
pub struct LibsqlStorage {
    /// The local database file, named in [`Error::DiskFull`] (empty for a
    /// remote server).
    path: PathBuf,
    writer: Pool,
    readers: Pool,
    kind: Kind,
    pool_wait_timeout_ms: u64,
    memory_links_max: u32,
    sqlite_heap_bytes_max: u64,
    sqlite_busy_timeout_ms: u64,
    /// The WAL of a local file (a remote server keeps its own).
    wal: Option<WalBound>,
}

/// A reader connection held out of the pool until dropped.
#[derive(Debug)]
pub struct HeldConnection(#[allow(dead_code)] Object);

fn build_pool(
    database: &Arc<libsql::Database>,
    kind: Kind,
    size: usize,
    limits: &Limits,
    read_only: bool,
) -> Result<Pool> {
    let wait = Duration::from_millis(limits.pool_wait_timeout_ms);
    let manager = Manager {
        database: database.clone(),
        kind,
        read_only,
        busy_timeout_ms: limits.sqlite_busy_timeout_ms,
        page_cache_bytes_max: limits.sqlite_page_cache_bytes_max,
        heap_bytes_max: limits.sqlite_heap_bytes_max,
        wal_bytes_max: limits.sqlite_wal_bytes_max,
    };
    Pool::builder(manager)
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

async fn open_local(path: &Path) -> Result<libsql::Database> {
    if path.as_os_str().as_encoded_bytes().contains(&0) {
        return Err(Error::Storage(format!(
            "cannot open {}: the path contains a NUL byte",
            path.display()
        )));
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| {
            Error::Storage(format!("cannot create directory {}: {e}", parent.display()))
        })?;
    }
    libsql::Builder::new_local(path)
        .build()
        .await
        .map_err(|e| Error::Storage(format!("cannot open {}: libsql: {e}", path.display())))
}

async fn open_remote(url: &str, auth_token: Option<&str>) -> Result<libsql::Database> {
    libsql::Builder::new_remote(url.to_owned(), auth_token.unwrap_or_default().to_owned())
        .build()
        .await
        .map_err(|e| Error::Storage(format!("cannot set up a libsql client for {url}: {e}")))
}

impl LibsqlStorage {
    /// Creates the local file at `path` with the first `version` migrations
    /// only: what an older mnemosyne left. For tests of migrations.
    pub async fn create_at_schema_version(path: &Path, version: u32) -> Result<()> {
        schema::pending_migrations(version)?;
        let database = open_local(path).await?;
        let conn = database.connect().map_err(ops::db)?;
        ops::migrate_to(&conn, version).await
    }

    /// Opens (creating and migrating as needed) the database at `location`:
    /// a local file or a remote libsql server.
    pub async fn open(location: &Location, limits: &Limits) -> Result<Self> {
        let (database, kind) = match location {
            Location::File(path) => (open_local(path).await?, Kind::Local),
            Location::Remote { url, auth_token } => {
                (open_remote(url, auth_token.as_deref()).await?, Kind::Remote)
            }
        };
        let database = Arc::new(database);
        let writer = build_pool(&database, kind, 1, limits, false)?;
        let readers = build_pool(
            &database,
            kind,
            limits.pool_readers_max as usize,
            limits,
            true,
        )?;
        let storage = Self {
            path: match location {
                Location::File(path) => path.clone(),
                Location::Remote { .. } => PathBuf::new(),
            },
            writer,
            readers,
            kind,
            pool_wait_timeout_ms: limits.pool_wait_timeout_ms,
            sqlite_heap_bytes_max: limits.sqlite_heap_bytes_max,
            memory_links_max: limits.memory_links_max,
            sqlite_busy_timeout_ms: limits.sqlite_busy_timeout_ms,
            wal: match location {
                Location::File(path) => Some(WalBound::new(path, limits.sqlite_wal_bytes_max)),
                Location::Remote { .. } => None,
            },
        };
        if let Location::Remote { url, .. } = location {
            storage
                .probe_remote(url, Duration::from_millis(limits.remote_connect_timeout_ms))
                .await?;
        }
        storage
            .write(|conn| async move { ops::migrate(&conn).await })
            .await
            .map_err(|e| match e {
                Error::Storage(message) => {
                    Error::Storage(format!("cannot open {location}: {message}"))
                }
                other => other,
            })?;
        Ok(storage)
    }

    /// Sends the first request to a remote server, so that an unreachable or
    /// refusing server is one clear error at open.
    async fn probe_remote(&self, url: &str, timeout: Duration) -> Result<()> {
        let probe = self.read(|conn| async move { ops::user_version(&conn).await });
        match tokio::time::timeout(timeout, probe).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(Error::Storage(message))) => Err(Error::Storage(format!(
                "cannot reach libsql server {url}: {message}"
            ))),
            Ok(Err(other)) => Err(other),
            Err(_) => Err(Error::Storage(format!(
                "cannot reach libsql server {url}: no answer within {} ms (remote_connect_timeout_ms)",
                timeout.as_millis()
            ))),
        }
    }

    /// Checks a reader connection out of the pool and holds it until the
    /// returned guard drops (lets tests and the stress harness exhaust the pool).
    pub async fn hold_reader(&self) -> Result<HeldConnection> {
        let conn = self
            .readers
            .get()
            .await
            .map_err(|e| self.pool_error(e, "reader"))?;
        Ok(HeldConnection(conn))
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

    /// Runs `work` on a pooled connection, to completion even if the caller stops waiting.
    async fn run<T, F, Fut>(&self, pool: &Pool, role: &'static str, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let object = pool
            .get()
            .await
            .map_err(|e| self.pool_error(e, role).on_database(&self.path))?;
        let conn = Connection::clone(&object);
        let task = match self.kind {
            Kind::Local => {
                let runtime = tokio::runtime::Handle::current();
                tokio::task::spawn_blocking(move || {
                    let outcome = runtime.block_on(work(conn));
                    drop(object);
                    outcome
                })
            }
            Kind::Remote => tokio::spawn(async move {
                let outcome = work(conn).await;
                drop(object);
                outcome
            }),
        };
        task.await
            .map_err(|e| Error::Storage(format!("{role} connection task failed: {e}")))?
            .map_err(|e| e.on_database(&self.path))
    }

    async fn write<T, F, Fut>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        let wal = self.wal.clone();
        let busy_timeout_ms = self.sqlite_busy_timeout_ms;
        self.run(&self.writer, "writer", move |conn| async move {
            let done = work(conn.clone()).await?;
            if let Some(wal) = wal.filter(WalBound::is_due) {
                // The write is committed whatever the checkpoint does.
                let finished = truncate_wal(&conn, busy_timeout_ms).await;
                wal.attempted(finished);
            }
            Ok(done)
        })
        .await
    }

    async fn read<T, F, Fut>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(Connection) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T>> + Send + 'static,
    {
        self.run(&self.readers, "reader", work).await
    }

    /// Checks the vectors, then stores them in one write transaction.
    async fn store_embeddings(
        &self,
        items: &[(MemoryId, Embedding)],
        same_model: vectors::SameModel,
    ) -> Result<u64> {
        for (_, embedding) in items {
            vectors::validate(embedding)?;
        }
        if items.is_empty() {
            return Ok(0);
        }
        let items = items.to_vec();
        self.write(move |conn| async move { ops::set_embeddings(&conn, &items, same_model).await })
            .await
    }
}

#[async_trait]
impl Storage for LibsqlStorage {
    fn backend_name(&self) -> &'static str {
        match self.kind {
            Kind::Local => "libsql",
            Kind::Remote => "libsql-remote",
        }
    }

    async fn insert_memory(&self, memory: &Memory, embedding: Option<&Embedding>) -> Result<()> {
        if let Some(embedding) = embedding {
            vectors::validate(embedding)?;
        }
        let memory = memory.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| async move {
            ops::insert_memory(&conn, &memory, embedding.as_ref()).await
        })
        .await
    }

    async fn insert_memories(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome> {
        let memories = memories.to_vec();
        self.write(
            move |conn| async move { ops::insert_memories(&conn, &memories, on_conflict).await },
        )
        .await
    }

    async fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>> {
        self.read(move |conn| async move { ops::get_memory(&conn, id).await })
            .await
    }

    async fn record_access(&self, id: MemoryId, at: DateTime<Utc>) -> Result<()> {
        self.write(move |conn| async move { ops::record_access(&conn, id, at).await })
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
            vectors::validate(embedding)?;
        }
        let patch = patch.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| async move {
            ops::update_memory(&conn, id, &patch, now, embedding.as_ref()).await
        })
        .await
    }

    async fn set_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        self.store_embeddings(items, vectors::SameModel::Replace)
            .await
    }

    async fn fill_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        self.store_embeddings(items, vectors::SameModel::Keep).await
    }

    async fn pending_embeddings(
        &self,
        model_id: &str,
        kind: PendingKind,
        after: Option<MemoryId>,
        limit: u32,
    ) -> Result<Vec<PendingEmbedding>> {
        let model_id = model_id.to_owned();
        self.read(move |conn| async move {
            ops::pending_embeddings(&conn, &model_id, kind, after, limit).await
        })
        .await
    }

    async fn pending_embeddings_among(
        &self,
        model_id: &str,
        kind: PendingKind,
        ids: &[MemoryId],
    ) -> Result<Vec<PendingEmbedding>> {
        check_pending_ids(ids)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let model_id = model_id.to_owned();
        let ids = ids.to_vec();
        self.read(move |conn| async move {
            ops::pending_embeddings_among(&conn, &model_id, kind, &ids).await
        })
        .await
    }

    async fn count_pending_embeddings(&self, model_id: &str, kind: PendingKind) -> Result<u64> {
        let model_id = model_id.to_owned();
        self.read(
            move |conn| async move { ops::count_pending_embeddings(&conn, &model_id, kind).await },
        )
        .await
    }

    async fn vector_search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        vectors::validate_query(query)?;
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        let query = query.clone();
        self.read(move |conn| async move { vectors::search(&conn, &query).await })
            .await
    }

    async fn linked_memories(
        &self,
        ids: &[MemoryId],
        per_memory_max: u32,
        include_archived: bool,
    ) -> Result<Vec<LinkedMemory>> {
        if ids.is_empty() || per_memory_max == 0 {
            return Ok(Vec::new());
        }
        ops::check_linked_ids(ids)?;
        let ids = ids.to_vec();
        self.read(move |conn| async move {
            ops::linked_memories(&conn, &ids, per_memory_max, include_archived).await
        })
        .await
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<()> {
        self.write(move |conn| async move { ops::delete_memory(&conn, id).await })
            .await
    }

    async fn add_link(&self, source: MemoryId, link: &Link) -> Result<()> {
        let link = link.clone();
        let links_max = self.memory_links_max;
        self.write(move |conn| async move { ops::add_link(&conn, source, &link, links_max).await })
            .await
    }

    async fn add_links(&self, links: &[(MemoryId, Link)]) -> Result<LinkOutcome> {
        let links = links.to_vec();
        let links_max = self.memory_links_max;
        self.write(move |conn| async move { ops::add_links(&conn, &links, links_max).await })
            .await
    }

    async fn list_memories(&self, query: &ListQuery) -> Result<Vec<Memory>> {
        let query = query.clone();
        self.read(move |conn| async move { ops::list_memories(&conn, &query).await })
            .await
    }

    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<KeywordHit>> {
        let query = query.clone();
        self.read(move |conn| async move { ops::keyword_search(&conn, &query).await })
            .await
    }

    async fn count_memories(&self, include_archived: bool) -> Result<u64> {
        self.read(move |conn| async move { ops::count_memories(&conn, include_archived).await })
            .await
    }

    async fn save_work_items(&self, items: &[WorkItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let items = items.to_vec();
        self.write(move |conn| async move { work::save_work_items(&conn, &items).await })
            .await
    }

    async fn work_item(&self, id: WorkItemId) -> Result<Option<WorkItem>> {
        self.read(move |conn| async move { work::work_item(&conn, id).await })
            .await
    }

    async fn active_work_items(&self) -> Result<Vec<WorkItem>> {
        self.read(|conn| async move { work::active_work_items(&conn).await })
            .await
    }

    async fn work_item_states(&self, ids: &[WorkItemId]) -> Result<Vec<(WorkItemId, WorkState)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |conn| async move { work::work_item_states(&conn, &ids).await })
            .await
    }

    async fn list_work_items(
        &self,
        state: Option<WorkState>,
        phase: Option<Phase>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WorkItem>> {
        self.read(move |conn| async move {
            work::list_work_items(&conn, state, phase, limit, offset).await
        })
        .await
    }

    async fn count_work_items_by_state(&self) -> Result<Vec<(WorkState, u64)>> {
        self.read(|conn| async move { work::count_work_items_by_state(&conn).await })
            .await
    }

    async fn prune_finished_work_items(&self, keep: u64) -> Result<WorkPrune> {
        self.write(move |conn| async move { work::prune_finished_work_items(&conn, keep).await })
            .await
    }

    async fn create_document(
        &self,
        meta: &DocumentMeta,
        snapshot: &[u8],
        state: &str,
        log: &str,
    ) -> Result<()> {
        let (meta, snapshot, state) = (meta.clone(), snapshot.to_vec(), state.to_owned());
        let log = log.to_owned();
        self.write(move |conn| async move {
            doc::create_document(&conn, &meta, &snapshot, &state, &log).await
        })
        .await
    }

    async fn load_document(&self, name: &str) -> Result<Option<StoredDocument>> {
        let name = name.to_owned();
        self.read(move |conn| async move { doc::load_document(&conn, &name).await })
            .await
    }

    async fn save_document(&self, save: &DocumentSave) -> Result<()> {
        let save = save.clone();
        self.write(move |conn| async move { doc::save_document(&conn, &save).await })
            .await
    }

    async fn document_log(&self, name: &str, limit: u32) -> Result<Vec<String>> {
        let name = name.to_owned();
        self.read(move |conn| async move { doc::document_log(&conn, &name, limit).await })
            .await
    }

    async fn list_documents(
        &self,
        namespace: Option<&Namespace>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DocumentMeta>> {
        let namespace = namespace.cloned();
        self.read(move |conn| async move {
            doc::list_documents(&conn, namespace.as_ref(), limit, offset).await
        })
        .await
    }

    async fn delete_document(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| async move { doc::delete_document(&conn, &name).await })
            .await
    }

    async fn schema_version(&self) -> Result<u32> {
        self.read(|conn| async move { ops::user_version(&conn).await })
            .await
    }

    async fn integrity_check(&self) -> Result<String> {
        self.read(|conn| async move { ops::integrity_check(&conn).await })
            .await
    }

    fn pool_status(&self) -> PoolStatus {
        crate::pool_status::from_pools(
            self.readers.status(),
            self.writer.status(),
            sqlite_heap_bytes(),
            self.sqlite_heap_bytes_max,
        )
    }

    async fn close(&self) {
        self.readers.close();
        self.writer.close();
    }
}

/// Bytes in SQLite's heap now, every connection of the process together.
#[allow(unsafe_code)]
fn sqlite_heap_bytes() -> u64 {
    // SAFETY: sqlite3_memory_used takes no arguments and only reads SQLite's
    // global memory statistics, which it guards with its own mutex.
    let used = unsafe { libsql::ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

/// A TRUNCATE checkpoint that waits at most [`CHECKPOINT_WAIT_MS`] for
/// readers; true when it emptied the WAL.
async fn truncate_wal(conn: &Connection, busy_timeout_ms: u64) -> bool {
    let busy_timeout = |ms: u64| format!("PRAGMA busy_timeout = {ms}");
    if conn
        .query(&busy_timeout(CHECKPOINT_WAIT_MS), ())
        .await
        .is_err()
    {
        return false;
    }
    let busy = match conn.query(TRUNCATE_CHECKPOINT, ()).await {
        Ok(mut rows) => match rows.next().await {
            Ok(Some(row)) => row.get::<i64>(0).ok(),
            _ => None,
        },
        Err(_) => None,
    };
    // Back to the connection's own timeout; if even that fails the next
    // statement still runs, only with the short wait.
    let _ = conn.query(&busy_timeout(busy_timeout_ms), ()).await;
    busy == Some(0)
}
