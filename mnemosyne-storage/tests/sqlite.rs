//! The conformance suite against the `sqlite` backend (rusqlite pooled by deadpool).

#[macro_use]
mod conformance;

use std::path::Path;

use async_trait::async_trait;
use mnemosyne_core::{Limits, StorageAdmin};
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

fn main() -> std::process::ExitCode {
    if conformance::run_child::<SqliteStorage>() {
        return std::process::ExitCode::SUCCESS;
    }
    let mut trials = conformance_trials!(SqliteStorage);
    trials.extend(named_trials![
        opening_bounds_the_sqlite_heap_of_the_process,
        a_reader_that_pinned_the_wal_does_not_leave_it_grown
    ]);
    conformance::run(trials)
}

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

async fn a_reader_that_pinned_the_wal_does_not_leave_it_grown() {
    let f = conformance::fixture();
    let wal_max = 512 * 1024;
    let limits = Limits {
        sqlite_wal_bytes_max: wal_max,
        ..Limits::default()
    };
    let store = conformance::open::<SqliteStorage>(&f.path, limits).await;
    store
        .remember(conformance::new_memory("first", "global"))
        .await
        .unwrap();
    // A reader in the middle of a transaction keeps every later frame in
    // the WAL: no checkpoint can pass it, so the WAL grows past its bound.
    let mut reader = rusqlite::Connection::open(&f.path).unwrap();
    let snapshot = reader.transaction().unwrap();
    let count: i64 = snapshot
        .query_row("SELECT count(*) FROM memories", [], |row| row.get(0))
        .unwrap();
    assert_eq!(count, 1);
    let text = "pinned ".repeat(4_000);
    for i in 0..100 {
        store
            .remember(conformance::new_memory(&format!("{i} {text}"), "global"))
            .await
            .unwrap();
    }
    let wal =
        |path: &Path| std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len());
    let pinned = wal(&f.path);
    assert!(pinned > 2 * wal_max, "WAL {pinned} bytes while pinned");
    drop(snapshot);
    // The first write after the reader let go, and after the pause that
    // follows a checkpoint the reader kept from finishing, empties it.
    tokio::time::sleep(std::time::Duration::from_millis(
        mnemosyne_storage::wal_bound::CHECKPOINT_RETRY_MS + 100,
    ))
    .await;
    store
        .remember(conformance::new_memory("last", "global"))
        .await
        .unwrap();
    let after = wal(&f.path);
    assert!(
        after <= wal_max,
        "WAL {after} bytes after the reader let go (was {pinned}, limit {wal_max})"
    );
    assert_eq!(store.count(true).await.unwrap(), 102);
}
