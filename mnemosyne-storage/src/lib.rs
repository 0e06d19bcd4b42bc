//! Pooled, bounded SQLite storage for Mnemosyne.
//!
//! One [`Storage`] contract (in `mnemosyne-core`), implemented once by
//! [`PooledStorage`] over the operations of [`sql`], which run on a small
//! connection abstraction. Two backends adapt their driver to it, chosen by
//! cargo feature: `sqlite` (rusqlite, the default) and `libsql` (local file
//! or remote libsql server). Both bundle SQLite, so they cannot be linked
//! into one binary: enable exactly one in the final binary. The
//! [`MemoryStore`] facade validates and stamps what goes in.
#![deny(missing_docs)]

#[cfg(all(feature = "sqlite", feature = "libsql"))]
compile_error!(
    "features `sqlite` and `libsql` of mnemosyne-storage are mutually exclusive: both bundle SQLite \
     and their sqlite3_* symbols clash; build with `--no-default-features --features libsql` for libsql"
);

pub mod doc_rows;
mod embedding_backlog;
pub mod embedding_worker;
pub mod fts_query;
pub mod fusion;
pub mod keyword_plan;
#[cfg(all(feature = "libsql", not(feature = "sqlite")))]
mod libsql_backend;
mod location;
mod neighbourhood;
#[cfg(any(feature = "sqlite", feature = "libsql"))]
mod pool_status;
#[cfg(any(feature = "sqlite", feature = "libsql"))]
mod pooled;
pub mod rows;
pub mod schema;
pub mod sql;
#[cfg(feature = "sqlite")]
mod sqlite;
mod store;
pub mod wal_bound;
pub mod work_rows;

use std::sync::Arc;

pub use embedding_backlog::EmbeddingBacklog;
pub use embedding_worker::EmbeddingWorker;
#[cfg(all(feature = "libsql", not(feature = "sqlite")))]
pub use libsql_backend::{Libsql, LibsqlStorage};
pub use location::Location;
pub use mnemosyne_core::Error;
use mnemosyne_core::{Limits, Result, Storage};
pub use neighbourhood::{ContextEdge, ContextQuery, LinkDirection, Neighbour, Neighbourhood};
#[cfg(any(feature = "sqlite", feature = "libsql"))]
pub use pooled::{Backend, HeldConnection, PooledStorage};
pub use schema::SCHEMA_VERSION;
#[cfg(feature = "sqlite")]
pub use sqlite::{Sqlite, SqliteStorage};
pub use store::{
    FusionWeights, MemoryStore, Recall, RecallHit, RecallMode, RecallQuery, SignalScores,
};

/// Name of the backend compiled in (`sqlite`, `libsql`, or `none`).
pub const BACKEND: &str = if cfg!(feature = "sqlite") {
    "sqlite"
} else if cfg!(feature = "libsql") {
    "libsql"
} else {
    "none"
};

/// Creates the database file at `path` with its first `version` migrations
/// only (what an older mnemosyne left), with the backend compiled in. For
/// tests of migrations; a version this build does not know is refused.
#[allow(unused_variables)]
pub async fn create_at_schema_version(path: &std::path::Path, version: u32) -> Result<()> {
    #[cfg(feature = "sqlite")]
    {
        return SqliteStorage::create_at_schema_version(path, version).await;
    }
    #[cfg(all(feature = "libsql", not(feature = "sqlite")))]
    {
        return LibsqlStorage::create_at_schema_version(path, version).await;
    }
    #[allow(unreachable_code)]
    Err(mnemosyne_core::Error::Storage(
        "no storage backend compiled in: enable the `sqlite` or `libsql` feature".into(),
    ))
}

/// Opens the database at `location` with the backend compiled in.
#[allow(unused_variables)]
pub async fn open_storage(location: &Location, limits: &Limits) -> Result<Arc<dyn Storage>> {
    #[cfg(feature = "sqlite")]
    {
        return Ok(Arc::new(SqliteStorage::open(location, limits).await?));
    }
    #[cfg(all(feature = "libsql", not(feature = "sqlite")))]
    {
        return Ok(Arc::new(LibsqlStorage::open(location, limits).await?));
    }
    #[allow(unreachable_code)]
    Err(mnemosyne_core::Error::Storage(
        "no storage backend compiled in: enable the `sqlite` or `libsql` feature".into(),
    ))
}
