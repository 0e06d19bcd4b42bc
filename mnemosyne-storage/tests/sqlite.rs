//! The conformance suite against the `sqlite` backend (rusqlite pooled by deadpool).
#![cfg(feature = "sqlite")]

#[macro_use]
mod conformance;

use std::path::Path;

use async_trait::async_trait;
use mnemosyne_core::Limits;
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
