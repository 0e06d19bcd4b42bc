//! Durable single remembers through the store, for a profiler:
//! `cargo run --release -p mnemosyne-storage --example remember_profile -- [COUNT]`
//! (default 20 000) on fresh databases of the standard workload; prints the
//! mean time per remember through the store, of one bare `spawn_blocking`
//! round trip (the floor of any pooled call), and of raw rusqlite doing the
//! same insert. Run it under `perf record` to see where a write goes (the
//! store bench gives the criterion figures).
#![allow(clippy::print_stdout, missing_docs)]

use std::time::Instant;

use chrono::Utc;
use mnemosyne_core::workload::Workload;
use mnemosyne_core::{Limits, MemoryId};
use mnemosyne_storage::{Location, MemoryStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(20_000, |n| n.parse().expect("COUNT is a number"));
    let dir = tempfile::tempdir().unwrap();
    let store = MemoryStore::open(&Location::File(dir.path().join("w.db")), Limits::default())
        .await
        .unwrap();
    let mut workload = Workload::new(42);
    let now = Utc::now();
    let memories: Vec<_> = (0..1_000)
        .map(|_| {
            let mut memory = workload.memory(now);
            memory.links.clear();
            memory
        })
        .collect();
    let started = Instant::now();
    for n in 0..count {
        let mut memory = memories[n % memories.len()].clone();
        memory.id = MemoryId::new();
        store.storage().insert_memory(&memory, None).await.unwrap();
    }
    let per_op = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("{count} durable remembers: {per_op:.1} us each");
    let started = Instant::now();
    for _ in 0..count {
        tokio::task::spawn_blocking(|| 1).await.unwrap();
    }
    let per_op = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("spawn_blocking round trip: {per_op:.1} us each");
    let conn = rusqlite::Connection::open(dir.path().join("raw.db")).unwrap();
    conn.execute_batch(&mnemosyne_storage::schema::connection_pragmas(
        5_000,
        2 << 20,
    ))
    .unwrap();
    let _m: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .unwrap();
    for index in 0..mnemosyne_storage::schema::MIGRATIONS.len() {
        conn.execute_batch(&mnemosyne_storage::schema::migration_script(index))
            .unwrap();
    }
    let started = Instant::now();
    for n in 0..count {
        let memory = &memories[n % memories.len()];
        let ms = memory.created_at.timestamp_millis();
        let tx = conn.unchecked_transaction().unwrap();
        tx.prepare_cached(
            "INSERT INTO memories (id, namespace, content, summary, memory_type, importance, \
     tags, created_at_ms, updated_at_ms, accessed_at_ms, access_count, archived) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, 0)",
        )
        .unwrap()
        .execute(rusqlite::params![
            MemoryId::new().to_string(),
            memory.namespace.to_string(),
            memory.content,
            memory.summary,
            memory.memory_type.as_str(),
            memory.importance.get(),
            memory.tags.join(" "),
            ms,
            ms,
            ms
        ])
        .unwrap();
        let seq = tx.last_insert_rowid();
        let mut tag = tx
            .prepare_cached("INSERT INTO memory_tags (tag, memory_seq) VALUES (?1, ?2)")
            .unwrap();
        for t in &memory.tags {
            tag.execute(rusqlite::params![t, seq]).unwrap();
        }
        drop(tag);
        tx.commit().unwrap();
    }
    let per_op = started.elapsed().as_secs_f64() * 1e6 / count as f64;
    println!("raw: {per_op:.1} us each");
    store.storage().close().await;
}
