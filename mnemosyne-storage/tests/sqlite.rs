//! The conformance suite against the `sqlite` backend (rusqlite pooled by deadpool).
#![cfg(feature = "sqlite")]

#[macro_use]
mod conformance;

use std::path::Path;

use async_trait::async_trait;
use mnemosyne_core::{Limits, Storage};
use mnemosyne_storage::{Location, SqliteStorage};

#[async_trait]
impl conformance::Backend for SqliteStorage {
    type Held = mnemosyne_storage::HeldConnection;

    async fn open_at(path: &Path, limits: &Limits) -> mnemosyne_core::Result<Self> {
        SqliteStorage::open(&Location::File(path.to_owned()), limits).await
    }

    async fn hold(&self) -> mnemosyne_core::Result<Self::Held> {
        self.hold_reader().await
    }

    async fn exec_raw(path: &Path, sql: &str) {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch(sql).unwrap();
    }
}

conformance_tests!(SqliteStorage);

#[tokio::test]
async fn opening_bounds_the_sqlite_heap_of_the_process() {
    let f = conformance::fixture();
    let limits = Limits::default();
    let storage = SqliteStorage::open(&Location::File(f.path.clone()), &limits)
        .await
        .unwrap();
    // The soft heap limit is process-wide: a connection of our own sees it.
    let conn = rusqlite::Connection::open(&f.path).unwrap();
    let heap_limit: i64 = conn
        .query_row("PRAGMA soft_heap_limit", [], |row| row.get(0))
        .unwrap();
    assert_eq!(heap_limit as u64, limits.sqlite_heap_bytes_max);
    storage.close().await;
}
