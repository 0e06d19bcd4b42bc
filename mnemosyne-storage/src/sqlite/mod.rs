//! The `sqlite` backend: bundled SQLite through rusqlite, pooled by
//! deadpool (`managed`, with our own [`Manager`]). One writer connection
//! (SQLite has one writer anyway) and `pool_readers_max` read-only
//! connections, every timeout set from [`Limits`]. Work runs on a blocking
//! thread that owns the checked-out connection, so it finishes (commit or
//! rollback) even if the caller stops waiting.
//! Vectors are indexed by the sqlite-vec extension (see [`vectors`]), which
//! is registered with every connection the process opens.
//!
//! Why not deadpool-sqlite: its recycle check runs `SELECT $1` through its
//! `interact` on every checkout, a second trip to a blocking thread and an
//! uncached statement parse per operation (a fifth of a durable remember).
//! Our recycle checks that the connection is outside any transaction,
//! without SQL, as the libsql backend does.

mod doc;
mod ops;
mod vectors;
mod work;

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use deadpool::managed::{self, Metrics, PoolError, RecycleError, RecycleResult, Timeouts};
use mnemosyne_core::{
    BatchOutcome, DocumentMeta, DocumentSave, Embedding, Error, KeywordHit, KeywordQuery, Limits,
    Link, LinkOutcome, LinkedMemory, ListQuery, Memory, MemoryId, MemoryPatch, Namespace,
    OnConflict, PendingEmbedding, PendingKind, Phase, PoolStatus, Result, Storage, StoredDocument,
    VectorHit, VectorQuery, WorkItem, WorkItemId, WorkPrune, WorkState,
};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ffi};

use crate::wal_bound::{CHECKPOINT_WAIT_MS, TRUNCATE_CHECKPOINT, WalBound};

use crate::location::Location;
use crate::rows::check_pending_ids;
use crate::schema;
use vectors::SameModel;

/// Prepared statements cached per connection.
const STATEMENT_CACHE_CAPACITY: usize = 64;

type Pool = managed::Pool<Manager>;
type Object = managed::Object<Manager>;

/// Opens and checks the rusqlite connections of one pool.
#[derive(Debug)]
struct Manager {
    path: PathBuf,
    /// Pragmas run on each new connection.
    setup: String,
    read_only: bool,
    busy_timeout_ms: u64,
}

impl managed::Manager for Manager {
    type Type = Connection;
    type Error = Error;

    async fn create(&self) -> Result<Connection> {
        let (path, setup, read_only) = (self.path.clone(), self.setup.clone(), self.read_only);
        let busy_timeout_ms = self.busy_timeout_ms;
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path).map_err(ops::db)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
            // Without the planner stability guarantee, SQLite marks a cached
            // statement stale whenever a new value is bound to a parameter
            // the planner looked at (a LIMIT, an FTS5 MATCH string) and
            // compiles it again on its next step: a statement cache that
            // saves nothing on keyword search.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
                .map_err(ops::db)?;
            // The busy timeout first: switching a new file to WAL takes a
            // lock that another process opening it at the same time may hold.
            conn.execute_batch(&setup).map_err(ops::db)?;
            if !read_only {
                switch_to_wal(&conn, busy_timeout_ms)?;
            }
            Ok(conn)
        })
        .await
        .map_err(|e| Error::Storage(format!("connection setup task failed: {e}")))?
    }

    async fn recycle(&self, conn: &mut Connection, _: &Metrics) -> RecycleResult<Error> {
        // Work always ends with COMMIT or ROLLBACK; a connection still inside a
        // transaction (a panic mid-work) is thrown away.
        if !conn.is_autocommit() {
            return Err(RecycleError::message(
                "connection was left inside a transaction",
            ));
        }
        Ok(())
    }
}

/// SQLite storage pooled by deadpool.
#[derive(Debug)]
pub struct SqliteStorage {
    /// The database file, named in [`Error::DiskFull`].
    path: PathBuf,
    writer: Pool,
    readers: Pool,
    pool_wait_timeout_ms: u64,
    memory_links_max: u32,
    sqlite_heap_bytes_max: u64,
    sqlite_busy_timeout_ms: u64,
    wal: WalBound,
}

/// A reader connection held out of the pool until dropped.
#[derive(Debug)]
pub struct HeldConnection(#[allow(dead_code)] Object);

/// The signature SQLite calls an extension's entry point with.
type ExtensionEntryPoint = unsafe extern "C" fn(
    *mut ffi::sqlite3,
    *mut *mut c_char,
    *const ffi::sqlite3_api_routines,
) -> c_int;

/// Registers sqlite-vec (the `vec0` virtual table and the `vec_*` functions)
/// as an automatic extension: every SQLite connection this process opens
/// afterwards loads it. Runs once; later calls return the first outcome.
#[allow(unsafe_code)]
fn register_sqlite_vec() -> Result<()> {
    static REGISTERED: OnceLock<c_int> = OnceLock::new();
    let rc = *REGISTERED.get_or_init(|| {
        // SAFETY: `sqlite3_vec_init` is sqlite-vec's C entry point, compiled
        // (with SQLITE_CORE) against and linked with the SQLite that rusqlite
        // bundles. Its C signature is `int (sqlite3*, char**, const
        // sqlite3_api_routines*)`, exactly `ExtensionEntryPoint`; the crate
        // merely declares it without arguments, hence the transmute between
        // two function pointers of the same size. sqlite3_auto_extension is
        // thread-safe, copies the pointer, and ignores a second registration
        // of the same function.
        unsafe {
            let entry_point = std::mem::transmute::<*const (), ExtensionEntryPoint>(
                sqlite_vec::sqlite3_vec_init as *const (),
            );
            ffi::sqlite3_auto_extension(Some(entry_point))
        }
    });
    if rc == ffi::SQLITE_OK {
        Ok(())
    } else {
        Err(Error::Storage(format!(
            "cannot register the sqlite-vec extension (SQLite error {rc})"
        )))
    }
}

/// Puts the file in WAL mode (persistent), retrying for `busy_timeout_ms`
/// while another opener holds the lock: see [`schema::WAL_SWITCH_RETRY_MS`].
fn switch_to_wal(conn: &Connection, busy_timeout_ms: u64) -> Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_millis(busy_timeout_ms);
    loop {
        match conn.query_row(schema::JOURNAL_MODE_WAL, [], |row| row.get::<_, String>(0)) {
            Ok(_) => return Ok(()),
            Err(e) if ops::is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(schema::WAL_SWITCH_RETRY_MS));
            }
            Err(e) => return Err(ops::db(e)),
        }
    }
}

fn build_pool(path: &Path, size: usize, limits: &Limits, read_only: bool) -> Result<Pool> {
    let mut setup = schema::connection_pragmas(
        limits.sqlite_busy_timeout_ms,
        limits.sqlite_page_cache_bytes_max,
    );
    setup.push_str(&schema::heap_limit_pragma(limits.sqlite_heap_bytes_max));
    setup.push_str(&schema::wal_size_limit_pragma(limits.sqlite_wal_bytes_max));
    // Off by default (see the limit): mapped file pages count in RSS.
    setup.push_str(&format!(
        "PRAGMA mmap_size = {};",
        limits.sqlite_mmap_bytes_max
    ));
    if read_only {
        setup.push_str("PRAGMA query_only = ON;");
    }
    let wait = Duration::from_millis(limits.pool_wait_timeout_ms);
    let manager = Manager {
        path: path.to_owned(),
        setup,
        read_only,
        busy_timeout_ms: limits.sqlite_busy_timeout_ms,
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

impl SqliteStorage {
    /// Creates the file at `path` with the first `version` migrations only:
    /// what an older mnemosyne left. For tests of migrations.
    pub async fn create_at_schema_version(path: &Path, version: u32) -> Result<()> {
        schema::pending_migrations(version)?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = Connection::open(&path).map_err(ops::db)?;
            ops::migrate_to(&mut conn, version)
        })
        .await
        .map_err(|e| Error::Storage(format!("migration task failed: {e}")))?
    }

    /// Opens (creating and migrating as needed) the SQLite file at `location`.
    pub async fn open(location: &Location, limits: &Limits) -> Result<Self> {
        let path = match location {
            Location::File(path) => path.clone(),
            Location::Remote { url, .. } => {
                return Err(Error::invalid(format!(
                    "{url} is a remote database: remote URLs need the libsql backend \
                     (build with --no-default-features --features libsql)"
                )));
            }
        };
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::Storage(format!("cannot create directory {}: {e}", parent.display()))
            })?;
        }
        register_sqlite_vec()?;
        let writer = build_pool(&path, 1, limits, false)?;
        let readers = build_pool(&path, limits.pool_readers_max as usize, limits, true)?;
        let storage = Self {
            path: path.clone(),
            writer,
            readers,
            pool_wait_timeout_ms: limits.pool_wait_timeout_ms,
            sqlite_heap_bytes_max: limits.sqlite_heap_bytes_max,
            sqlite_busy_timeout_ms: limits.sqlite_busy_timeout_ms,
            wal: WalBound::new(&path, limits.sqlite_wal_bytes_max),
            memory_links_max: limits.memory_links_max,
        };
        storage.write(ops::migrate).await.map_err(|e| match e {
            Error::Storage(message) => {
                Error::Storage(format!("cannot open {}: {message}", path.display()))
            }
            other => other,
        })?;
        Ok(storage)
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

    async fn run<T: Send + 'static>(
        &self,
        pool: &Pool,
        role: &'static str,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut conn = pool
            .get()
            .await
            .map_err(|e| self.pool_error(e, role).on_database(&self.path))?;
        // The blocking task owns the connection: the work runs to its end
        // (commit or rollback) even if the caller stops waiting, then the
        // connection returns to the pool.
        tokio::task::spawn_blocking(move || work(&mut conn))
            .await
            .map_err(|e| Error::Storage(format!("{role} connection task failed: {e}")))?
            .map_err(|e| e.on_database(&self.path))
    }

    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let wal = self.wal.clone();
        let busy_timeout = Duration::from_millis(self.sqlite_busy_timeout_ms);
        self.run(&self.writer, "writer", move |conn| {
            let done = work(conn)?;
            if wal.is_due() {
                // The write is committed whatever the checkpoint does.
                let finished = truncate_wal(conn, busy_timeout);
                wal.attempted(finished);
            }
            Ok(done)
        })
        .await
    }

    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.run(&self.readers, "reader", work).await
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn insert_memory(&self, memory: &Memory, embedding: Option<&Embedding>) -> Result<()> {
        let memory = memory.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| ops::insert_memory(conn, &memory, embedding.as_ref()))
            .await
    }

    async fn insert_memories(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome> {
        let memories = memories.to_vec();
        self.write(move |conn| ops::insert_memories(conn, &memories, on_conflict))
            .await
    }

    async fn get_memory(&self, id: MemoryId) -> Result<Option<Memory>> {
        self.read(move |conn| ops::get_memory(conn, id)).await
    }

    async fn record_access(&self, id: MemoryId, at: DateTime<Utc>) -> Result<()> {
        self.write(move |conn| ops::record_access(conn, id, at))
            .await
    }

    async fn update_memory(
        &self,
        id: MemoryId,
        patch: &MemoryPatch,
        now: DateTime<Utc>,
        embedding: Option<&Embedding>,
    ) -> Result<Memory> {
        let patch = patch.clone();
        let embedding = embedding.cloned();
        self.write(move |conn| ops::update_memory(conn, id, &patch, now, embedding.as_ref()))
            .await
    }

    async fn set_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let items = items.to_vec();
        self.write(move |conn| vectors::set_embeddings(conn, &items, SameModel::Replace))
            .await
    }

    async fn fill_embeddings(&self, items: &[(MemoryId, Embedding)]) -> Result<u64> {
        if items.is_empty() {
            return Ok(0);
        }
        let items = items.to_vec();
        self.write(move |conn| vectors::set_embeddings(conn, &items, SameModel::Keep))
            .await
    }

    async fn pending_embeddings(
        &self,
        model_id: &str,
        kind: PendingKind,
        after: Option<MemoryId>,
        limit: u32,
    ) -> Result<Vec<PendingEmbedding>> {
        let model_id = model_id.to_owned();
        self.read(move |conn| ops::pending_embeddings(conn, &model_id, kind, after, limit))
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
        self.read(move |conn| ops::pending_embeddings_among(conn, &model_id, kind, &ids))
            .await
    }

    async fn count_pending_embeddings(&self, model_id: &str, kind: PendingKind) -> Result<u64> {
        let model_id = model_id.to_owned();
        self.read(move |conn| ops::count_pending_embeddings(conn, &model_id, kind))
            .await
    }

    async fn vector_search(&self, query: &VectorQuery) -> Result<Vec<VectorHit>> {
        let query = query.clone();
        self.read(move |conn| vectors::vector_search(conn, &query))
            .await
    }

    async fn linked_memories(
        &self,
        ids: &[MemoryId],
        per_memory_max: u32,
        include_archived: bool,
    ) -> Result<Vec<LinkedMemory>> {
        let ids = ids.to_vec();
        self.read(move |conn| ops::linked_memories(conn, &ids, per_memory_max, include_archived))
            .await
    }

    async fn delete_memory(&self, id: MemoryId) -> Result<()> {
        self.write(move |conn| ops::delete_memory(conn, id)).await
    }

    async fn add_link(&self, source: MemoryId, link: &Link) -> Result<()> {
        let link = link.clone();
        let links_max = self.memory_links_max;
        self.write(move |conn| ops::add_link(conn, source, &link, links_max))
            .await
    }

    async fn add_links(&self, links: &[(MemoryId, Link)]) -> Result<LinkOutcome> {
        let links = links.to_vec();
        let links_max = self.memory_links_max;
        self.write(move |conn| ops::add_links(conn, &links, links_max))
            .await
    }

    async fn list_memories(&self, query: &ListQuery) -> Result<Vec<Memory>> {
        let query = query.clone();
        self.read(move |conn| ops::list_memories(conn, &query))
            .await
    }

    async fn keyword_search(&self, query: &KeywordQuery) -> Result<Vec<KeywordHit>> {
        let query = query.clone();
        self.read(move |conn| ops::keyword_search(conn, &query))
            .await
    }

    async fn count_memories(&self, include_archived: bool) -> Result<u64> {
        self.read(move |conn| ops::count_memories(conn, include_archived))
            .await
    }

    async fn save_work_items(&self, items: &[WorkItem]) -> Result<()> {
        if items.is_empty() {
            return Ok(());
        }
        let items = items.to_vec();
        self.write(move |conn| work::save_work_items(conn, &items))
            .await
    }

    async fn work_item(&self, id: WorkItemId) -> Result<Option<WorkItem>> {
        self.read(move |conn| work::work_item(conn, id)).await
    }

    async fn active_work_items(&self) -> Result<Vec<WorkItem>> {
        self.read(work::active_work_items).await
    }

    async fn work_item_states(&self, ids: &[WorkItemId]) -> Result<Vec<(WorkItemId, WorkState)>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = ids.to_vec();
        self.read(move |conn| work::work_item_states(conn, &ids))
            .await
    }

    async fn list_work_items(
        &self,
        state: Option<WorkState>,
        phase: Option<Phase>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<WorkItem>> {
        self.read(move |conn| work::list_work_items(conn, state, phase, limit, offset))
            .await
    }

    async fn count_work_items_by_state(&self) -> Result<Vec<(WorkState, u64)>> {
        self.read(work::count_work_items_by_state).await
    }

    async fn prune_finished_work_items(&self, keep: u64) -> Result<WorkPrune> {
        self.write(move |conn| work::prune_finished_work_items(conn, keep))
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
        self.write(move |conn| doc::create_document(conn, &meta, &snapshot, &state, &log))
            .await
    }

    async fn load_document(&self, name: &str) -> Result<Option<StoredDocument>> {
        let name = name.to_owned();
        self.read(move |conn| doc::load_document(conn, &name)).await
    }

    async fn save_document(&self, save: &DocumentSave) -> Result<()> {
        let save = save.clone();
        self.write(move |conn| doc::save_document(conn, &save))
            .await
    }

    async fn document_log(&self, name: &str, limit: u32) -> Result<Vec<String>> {
        let name = name.to_owned();
        self.read(move |conn| doc::document_log(conn, &name, limit))
            .await
    }

    async fn list_documents(
        &self,
        namespace: Option<&Namespace>,
        limit: u32,
        offset: u64,
    ) -> Result<Vec<DocumentMeta>> {
        let namespace = namespace.cloned();
        self.read(move |conn| doc::list_documents(conn, namespace.as_ref(), limit, offset))
            .await
    }

    async fn delete_document(&self, name: &str) -> Result<bool> {
        let name = name.to_owned();
        self.write(move |conn| doc::delete_document(conn, &name))
            .await
    }

    async fn schema_version(&self) -> Result<u32> {
        self.read(ops::user_version).await
    }

    async fn integrity_check(&self) -> Result<String> {
        self.read(ops::integrity_check).await
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
    let used = unsafe { ffi::sqlite3_memory_used() };
    u64::try_from(used).unwrap_or(0)
}

/// A TRUNCATE checkpoint that waits at most [`CHECKPOINT_WAIT_MS`] for
/// readers; true when it emptied the WAL.
fn truncate_wal(conn: &Connection, busy_timeout: Duration) -> bool {
    if conn
        .busy_timeout(Duration::from_millis(CHECKPOINT_WAIT_MS))
        .is_err()
    {
        return false;
    }
    let busy: rusqlite::Result<i64> = conn.query_row(TRUNCATE_CHECKPOINT, [], |row| row.get(0));
    // Back to the connection's own timeout; if even that fails the next
    // statement still runs, only with the short wait.
    let _ = conn.busy_timeout(busy_timeout);
    matches!(busy, Ok(0))
}
