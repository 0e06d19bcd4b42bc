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

mod conn;
mod vectors;

use std::ffi::{c_char, c_int};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use mnemosyne_core::{Error, Limits, Result};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ffi};

pub use conn::SqliteConn;
use conn::db;

use crate::location::Location;
use crate::pooled::{Backend, Managers, PooledStorage};
use crate::schema;
use crate::sql;

/// Prepared statements cached per connection.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// Opens and checks the rusqlite connections of one pool.
#[derive(Debug)]
pub struct Manager {
    path: PathBuf,
    /// Pragmas run on each new connection.
    setup: String,
    read_only: bool,
    busy_timeout_ms: u64,
}

impl managed::Manager for Manager {
    type Type = SqliteConn;
    type Error = Error;

    async fn create(&self) -> Result<SqliteConn> {
        let (path, setup, read_only) = (self.path.clone(), self.setup.clone(), self.read_only);
        let busy_timeout_ms = self.busy_timeout_ms;
        tokio::task::spawn_blocking(move || {
            let conn = Connection::open(&path).map_err(db)?;
            conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
            // Without the planner stability guarantee, SQLite marks a cached
            // statement stale whenever a new value is bound to a parameter
            // the planner looked at (a LIMIT, an FTS5 MATCH string) and
            // compiles it again on its next step: a statement cache that
            // saves nothing on keyword search.
            conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
                .map_err(db)?;
            // The busy timeout first: switching a new file to WAL takes a
            // lock that another process opening it at the same time may hold.
            conn.execute_batch(&setup).map_err(db)?;
            if !read_only {
                switch_to_wal(&conn, busy_timeout_ms)?;
            }
            Ok(SqliteConn(conn))
        })
        .await
        .map_err(|e| Error::Storage(format!("connection setup task failed: {e}")))?
    }

    async fn recycle(&self, conn: &mut SqliteConn, _: &Metrics) -> RecycleResult<Error> {
        // Work always ends with COMMIT or ROLLBACK; a connection still inside a
        // transaction (a panic mid-work) is thrown away.
        if !sql::Conn::is_autocommit(conn) {
            return Err(RecycleError::message(
                "connection was left inside a transaction",
            ));
        }
        Ok(())
    }
}

/// The rusqlite backend: its connections and its vector index.
#[derive(Debug)]
pub struct Sqlite;

impl Backend for Sqlite {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    #[allow(unsafe_code)]
    fn heap_bytes(&self) -> u64 {
        // SAFETY: sqlite3_memory_used takes no arguments and only reads SQLite's
        // global memory statistics, which it guards with its own mutex.
        let used = unsafe { ffi::sqlite3_memory_used() };
        u64::try_from(used).unwrap_or(0)
    }
}

/// SQLite storage pooled by deadpool.
pub type SqliteStorage = PooledStorage<Sqlite>;

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

/// Puts the file in WAL mode (persistent).
fn switch_to_wal(conn: &Connection, busy_timeout_ms: u64) -> Result<()> {
    sql::admin::retry_while_busy(busy_timeout_ms, || {
        conn.query_row(schema::JOURNAL_MODE_WAL, [], |row| row.get::<_, String>(0))
            .map_err(db)
    })
    .map(|_| ())
}

fn manager(path: &Path, limits: &Limits, read_only: bool) -> Manager {
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
    Manager {
        path: path.to_owned(),
        setup,
        read_only,
        busy_timeout_ms: limits.sqlite_busy_timeout_ms,
    }
}

impl PooledStorage<Sqlite> {
    /// Creates the file at `path` with the first `version` migrations only:
    /// what an older mnemosyne left. For tests of migrations.
    pub async fn create_at_schema_version(path: &Path, version: u32) -> Result<()> {
        schema::pending_migrations(version)?;
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut conn = SqliteConn(Connection::open(&path).map_err(db)?);
            sql::admin::migrate_to(&mut conn, version)
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
        let managers = Managers {
            writer: manager(&path, limits, false),
            reader: manager(&path, limits, true),
        };
        let storage = Self::new(Sqlite, Some(path.clone()), managers, limits)?;
        storage.migrate(&path.display().to_string()).await?;
        Ok(storage)
    }
}
