//! The `libsql` backend: a local SQLite file through libsql's bundled SQLite,
//! or a remote libsql server (sqld, Turso) over HTTP. Its connections
//! ([`LibsqlConn`]), their set-up, and its vector index (libsql's own,
//! [`vectors`]); the operations and the pools are shared ([`crate::sql`],
//! [`PooledStorage`]).

mod conn;
mod vectors;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool::managed::{self, Metrics, RecycleError, RecycleResult};
use mnemosyne_core::{Error, Limits, Result};
use tokio::runtime::Handle;

pub use conn::LibsqlConn;
use conn::{RequestTimeout, db};

use crate::location::Location;
use crate::pooled::{Backend, Managers, PooledStorage};
use crate::schema;
use crate::sql::{self, Conn};

/// Where the connections of a [`Manager`] go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A local file: connection pragmas apply.
    Local,
    /// A libsql server: each autocommit statement runs on its own server
    /// stream, so per-connection pragmas would not stick and are not set.
    Remote,
}

/// Opens and checks libsql connections for one pool.
#[derive(Debug)]
pub struct Manager {
    database: Arc<libsql::Database>,
    kind: Kind,
    /// A remote server's name and how long it has to answer a request.
    request_timeout: Option<RequestTimeout>,
    read_only: bool,
    busy_timeout_ms: u64,
    page_cache_bytes_max: u64,
    heap_bytes_max: u64,
    wal_bytes_max: u64,
}

impl Manager {
    fn new(
        database: &Arc<libsql::Database>,
        location: &Location,
        limits: &Limits,
        read_only: bool,
    ) -> Self {
        let (kind, request_timeout) = match location {
            Location::File(_) => (Kind::Local, None),
            Location::Remote { url, .. } => (
                Kind::Remote,
                Some(RequestTimeout {
                    server: url.clone(),
                    timeout: Duration::from_millis(limits.remote_request_timeout_ms),
                }),
            ),
        };
        Self {
            database: database.clone(),
            kind,
            request_timeout,
            read_only,
            busy_timeout_ms: limits.sqlite_busy_timeout_ms,
            page_cache_bytes_max: limits.sqlite_page_cache_bytes_max,
            heap_bytes_max: limits.sqlite_heap_bytes_max,
            wal_bytes_max: limits.sqlite_wal_bytes_max,
        }
    }

    fn setup_sql(&self) -> String {
        let mut setup = schema::connection_pragmas(self.busy_timeout_ms, self.page_cache_bytes_max);
        setup.push_str(&schema::heap_limit_pragma(self.heap_bytes_max));
        setup.push_str(&schema::wal_size_limit_pragma(self.wal_bytes_max));
        if self.read_only {
            setup.push_str("PRAGMA query_only = ON;");
        }
        setup
    }

    fn connect(&self) -> Result<LibsqlConn> {
        Ok(LibsqlConn {
            conn: self
                .database
                .connect()
                .map_err(|e| Error::Storage(format!("cannot create a libsql client: {e}")))?,
            runtime: Handle::current(),
            request_timeout: self.request_timeout.clone(),
        })
    }
}

impl managed::Manager for Manager {
    type Type = LibsqlConn;
    type Error = Error;

    async fn create(&self) -> Result<LibsqlConn> {
        let mut conn = self.connect()?;
        if self.kind == Kind::Remote {
            // Lazy: no request is sent until the first statement.
            return Ok(conn);
        }
        let setup = self.setup_sql();
        let writer = !self.read_only;
        let busy_timeout_ms = self.busy_timeout_ms;
        tokio::task::spawn_blocking(move || {
            conn.execute_batch(&setup)?;
            if writer {
                let mode = journal_mode_wal(&mut conn, busy_timeout_ms)?;
                if !mode.eq_ignore_ascii_case("wal") {
                    tracing::warn!(mode, "the database did not switch to WAL journal mode");
                }
            }
            Ok(conn)
        })
        .await
        .map_err(|e| Error::Storage(format!("connection setup task failed: {e}")))?
    }

    async fn recycle(&self, conn: &mut LibsqlConn, _: &Metrics) -> RecycleResult<Error> {
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
            conn.conn.reset().await;
        }
        Ok(())
    }
}

/// Switches the file to WAL mode and returns the journal mode now in
/// effect. Runs on a blocking thread.
fn journal_mode_wal(conn: &mut LibsqlConn, busy_timeout_ms: u64) -> Result<String> {
    let runtime = conn.runtime.clone();
    let mode = sql::admin::retry_while_busy(busy_timeout_ms, || {
        runtime
            .block_on(async {
                let mut rows = conn.conn.query(schema::JOURNAL_MODE_WAL, ()).await?;
                let row = rows.next().await?;
                row.map(|row| row.get::<String>(0)).transpose()
            })
            .map_err(db)
    })?;
    mode.ok_or_else(|| {
        Error::Storage(format!(
            "libsql: no row returned by {}",
            schema::JOURNAL_MODE_WAL
        ))
    })
}

/// The libsql backend: local or remote.
#[derive(Debug)]
pub struct Libsql {
    kind: Kind,
}

impl Backend for Libsql {
    type Manager = Manager;

    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Local => "libsql",
            Kind::Remote => "libsql-remote",
        }
    }

    #[allow(unsafe_code)]
    fn heap_bytes(&self) -> u64 {
        // SAFETY: sqlite3_memory_used takes no arguments and only reads SQLite's
        // global memory statistics, which it guards with its own mutex.
        let used = unsafe { libsql::ffi::sqlite3_memory_used() };
        u64::try_from(used).unwrap_or(0)
    }

    fn reads_in_transaction(&self) -> bool {
        self.kind == Kind::Remote
    }
}

/// libsql storage (local file or remote server) pooled by deadpool.
pub type LibsqlStorage = PooledStorage<Libsql>;

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

impl PooledStorage<Libsql> {
    /// Creates the local file at `path` with the first `version` migrations
    /// only: what an older mnemosyne left. For tests of migrations.
    pub async fn create_at_schema_version(path: &Path, version: u32) -> Result<()> {
        schema::pending_migrations(version)?;
        let database = open_local(path).await?;
        let mut conn = LibsqlConn {
            conn: database.connect().map_err(|e| Error::from(db(e)))?,
            runtime: Handle::current(),
            request_timeout: None,
        };
        tokio::task::spawn_blocking(move || sql::admin::migrate_to(&mut conn, version))
            .await
            .map_err(|e| Error::Storage(format!("migration task failed: {e}")))?
    }

    /// Opens (creating and migrating as needed) the database at `location`:
    /// a local file or a remote libsql server.
    pub async fn open(location: &Location, limits: &Limits) -> Result<Self> {
        let (database, kind, path) = match location {
            Location::File(path) => (open_local(path).await?, Kind::Local, Some(path.clone())),
            Location::Remote { url, auth_token } => (
                open_remote(url, auth_token.as_deref()).await?,
                Kind::Remote,
                None,
            ),
        };
        let database = Arc::new(database);
        let managers = Managers {
            writer: Manager::new(&database, location, limits, false),
            reader: Manager::new(&database, location, limits, true),
        };
        let storage = Self::new(Libsql { kind }, path, managers, limits)?;
        if let Location::Remote { url, .. } = location {
            storage
                .probe_remote(url, Duration::from_millis(limits.remote_connect_timeout_ms))
                .await?;
        }
        storage.migrate(&location.to_string()).await?;
        Ok(storage)
    }

    /// Sends the first request to a remote server, so that an unreachable or
    /// refusing server is one clear error at open.
    async fn probe_remote(&self, url: &str, timeout: Duration) -> Result<()> {
        use mnemosyne_core::StorageAdmin;
        match tokio::time::timeout(timeout, self.schema_version()).await {
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
}
