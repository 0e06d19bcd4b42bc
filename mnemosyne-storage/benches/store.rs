//! Store benchmarks on the standard workload (`mnemosyne-core/src/workload.rs`), each next
//! to raw rusqlite doing the same work in the same run (same schema, same
//! pragmas: WAL, synchronous=NORMAL; prepared statements; no pool, no async).
//!
//! `cargo bench -p mnemosyne-storage --bench store` runs the criterion groups,
//! then a latency pass that prints p50/p99 for keyword and hybrid recall
//! (hash embedder) and the ratios
//! to the raw baseline, and writes them to `target/bench-store.json`.
//! `MNEMOSYNE_BENCH_QUICK=1` shrinks the corpus for a smoke run.
#![allow(clippy::print_stdout, missing_docs)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, Throughput};
use mnemosyne_core::workload::WorkloadQuery;
use mnemosyne_core::{Limits, Memory, OnConflict};
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_storage::fts_query::{match_any, query_terms};
use mnemosyne_storage::schema;
use mnemosyne_storage::{Location, MemoryStore, RecallMode, SqliteStorage};
use rusqlite::{Connection, params};
use tokio::runtime::Runtime;

use common::{Latency, RECALL_LIMIT, corpus, percentiles, recall_query, runtime, store_latency};

async fn open_store(path: &Path) -> MemoryStore {
    let limits = Limits {
        import_batch_rows: 10_000,
        ..Limits::default()
    };
    let storage = SqliteStorage::open(&Location::File(path.to_owned()), &limits)
        .await
        .unwrap();
    MemoryStore::new(Arc::new(storage), limits)
}

/// The store with the default (hash) embedder, as the CLI opens it.
async fn open_embedded_store(path: &Path) -> MemoryStore {
    let store = open_store(path).await;
    let embedder = build_embedder(&EmbedderConfig::default(), store.limits()).unwrap();
    store.with_embedder(embedder)
}

/// A raw connection on a database with our schema and pragmas.
fn raw_connection(path: &Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(&schema::connection_pragmas(5_000, 2 << 20))
        .unwrap();
    let _mode: String = conn
        .query_row(schema::JOURNAL_MODE_WAL, [], |r| r.get(0))
        .unwrap();
    let version: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    for index in version as usize..schema::MIGRATIONS.len() {
        conn.execute_batch(&schema::migration_script(index))
            .unwrap();
    }
    conn
}

const RAW_INSERT: &str = "INSERT INTO memories (id, namespace, content, summary, memory_type, importance, \
     tags, created_at_ms, updated_at_ms, accessed_at_ms, access_count, archived) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 0, 0)";
const RAW_INSERT_TAG: &str = "INSERT INTO memory_tags (tag, memory_seq) VALUES (?1, ?2)";

fn raw_insert(conn: &Connection, memory: &Memory) {
    let ms = memory.created_at.timestamp_millis();
    let mut insert = conn.prepare_cached(RAW_INSERT).unwrap();
    insert
        .execute(params![
            memory.id.to_string(),
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
    let seq = conn.last_insert_rowid();
    let mut tag = conn.prepare_cached(RAW_INSERT_TAG).unwrap();
    for t in &memory.tags {
        tag.execute(params![t, seq]).unwrap();
    }
}

fn fresh_ids(memories: &[Memory]) -> Vec<Memory> {
    memories
        .iter()
        .map(|m| Memory {
            id: mnemosyne_core::MemoryId::new(),
            ..m.clone()
        })
        .collect()
}

fn bench_single_writes(c: &mut Criterion, rt: &Runtime, memories: &[Memory]) {
    let mut group = c.benchmark_group("remember_durable");
    group.throughput(Throughput::Elements(1));
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(open_store(&dir.path().join("store.db")));
    let mut next = 0usize;
    group.bench_function("store", |b| {
        b.to_async(rt).iter(|| {
            let memory = Memory {
                id: mnemosyne_core::MemoryId::new(),
                ..memories[next % memories.len()].clone()
            };
            next += 1;
            let store = &store;
            async move { store.storage().insert_memory(&memory, None).await.unwrap() }
        })
    });
    let conn = raw_connection(&dir.path().join("raw.db"));
    let mut next = 0usize;
    group.bench_function("raw_rusqlite", |b| {
        b.iter(|| {
            let memory = &memories[next % memories.len()];
            let id = mnemosyne_core::MemoryId::new();
            next += 1;
            let tx = conn.unchecked_transaction().unwrap();
            raw_insert(
                &tx,
                &Memory {
                    id,
                    ..memory.clone()
                },
            );
            tx.commit().unwrap();
        })
    });
    group.finish();
}

fn bench_batches(c: &mut Criterion, rt: &Runtime, memories: &[Memory]) {
    let batch = 10_000.min(memories.len());
    let mut group = c.benchmark_group("import_batch");
    group.sample_size(10);
    group.throughput(Throughput::Elements(batch as u64));
    let dir = tempfile::tempdir().unwrap();
    let store = rt.block_on(open_store(&dir.path().join("store.db")));
    group.bench_function(BenchmarkId::new("store", batch), |b| {
        b.iter_batched(
            || fresh_ids(&memories[..batch]),
            |rows| {
                rt.block_on(store.import_batch(&rows, OnConflict::Fail))
                    .unwrap()
            },
            criterion::BatchSize::PerIteration,
        )
    });
    let conn = raw_connection(&dir.path().join("raw.db"));
    group.bench_function(BenchmarkId::new("raw_rusqlite", batch), |b| {
        b.iter_batched(
            || fresh_ids(&memories[..batch]),
            |rows| {
                let tx = conn.unchecked_transaction().unwrap();
                for memory in &rows {
                    raw_insert(&tx, memory);
                }
                tx.commit().unwrap();
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

struct Loaded {
    _dir: tempfile::TempDir,
    store: MemoryStore,
    raw: Connection,
    queries: Vec<WorkloadQuery>,
    import_rows_per_s: f64,
}

fn load(rt: &Runtime, count: usize) -> Loaded {
    let (memories, queries) = corpus(count);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = rt.block_on(open_embedded_store(&path));
    let started = Instant::now();
    for chunk in memories.chunks(1_000) {
        rt.block_on(store.import_batch(chunk, OnConflict::Fail))
            .unwrap();
    }
    let import_rows_per_s = count as f64 / started.elapsed().as_secs_f64();
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch(&schema::connection_pragmas(5_000, 2 << 20))
        .unwrap();
    Loaded {
        _dir: dir,
        store,
        raw,
        queries,
        import_rows_per_s,
    }
}

const RAW_KEYWORD: &str =
    "SELECT rowid, rank FROM memories_fts WHERE memories_fts MATCH ?1 ORDER BY rank LIMIT ?2";

fn raw_keyword(conn: &Connection, query: &WorkloadQuery) -> usize {
    let expression = match_any(&query_terms(&query.text));
    let mut stmt = conn.prepare_cached(RAW_KEYWORD).unwrap();
    let rows = stmt
        .query_map(params![expression, RECALL_LIMIT], |r| r.get::<_, i64>(0))
        .unwrap();
    rows.count()
}

fn bench_recall(c: &mut Criterion, rt: &Runtime, loaded: &Loaded, count: usize) {
    let mut group = c.benchmark_group("keyword_recall");
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new("store", count), |b| {
        b.to_async(rt).iter(|| {
            let query = recall_query(
                &loaded.queries[next % loaded.queries.len()],
                RecallMode::Keyword,
            );
            next += 1;
            let store = &loaded.store;
            async move { store.recall(query).await.unwrap() }
        })
    });
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new("raw_rusqlite", count), |b| {
        b.iter(|| {
            let query = &loaded.queries[next % loaded.queries.len()];
            next += 1;
            raw_keyword(&loaded.raw, query)
        })
    });
    group.finish();
    let mut group = c.benchmark_group("hybrid_recall");
    let mut next = 0usize;
    group.bench_function(BenchmarkId::new("store", count), |b| {
        b.to_async(rt).iter(|| {
            let query = recall_query(
                &loaded.queries[next % loaded.queries.len()],
                RecallMode::Hybrid,
            );
            next += 1;
            let store = &loaded.store;
            async move { store.recall(query).await.unwrap() }
        })
    });
    group.finish();
}

fn raw_latency(loaded: &Loaded) -> Latency {
    let mut samples = Vec::with_capacity(loaded.queries.len());
    for query in &loaded.queries {
        let started = Instant::now();
        raw_keyword(&loaded.raw, query);
        samples.push((started.elapsed(), query.frequent));
    }
    percentiles(samples)
}

fn main() {
    let rt = runtime();
    // Pooled connections are dropped on the runtime's blocking threads.
    let _runtime_guard = rt.enter();
    let mut criterion = common::criterion();
    let sizes = common::recall_sizes();
    let (memories, _) = corpus(20_000.min(sizes[sizes.len() - 1]));
    bench_single_writes(&mut criterion, &rt, &memories);
    bench_batches(&mut criterion, &rt, &memories);
    let mut report = serde_json::Map::new();
    for &count in sizes {
        let loaded = load(&rt, count);
        bench_recall(&mut criterion, &rt, &loaded, count);
        let keyword = store_latency(&rt, &loaded.store, &loaded.queries, RecallMode::Keyword);
        let hybrid = store_latency(&rt, &loaded.store, &loaded.queries, RecallMode::Hybrid);
        let raw = raw_latency(&loaded);
        println!(
            "recall@{count}: keyword p50 {:.3} ms p99 {:.3} ms (frequent-term p99 {:.3} ms, max {:.3} ms); \
             hybrid p50 {:.3} ms p99 {:.3} ms (max {:.3} ms); raw fts5 p50 {:.3} ms p99 {:.3} ms; \
             import with hash embeddings {:.0} rows/s",
            keyword.p50_ms,
            keyword.p99_ms,
            keyword.frequent_p99_ms,
            keyword.max_ms,
            hybrid.p50_ms,
            hybrid.p99_ms,
            hybrid.max_ms,
            raw.p50_ms,
            raw.p99_ms,
            loaded.import_rows_per_s
        );
        report.insert(
            format!("recall_{count}"),
            serde_json::json!({
                "keyword": keyword,
                "hybrid": hybrid,
                "raw": raw,
                "import_rows_per_s": loaded.import_rows_per_s
            }),
        );
        rt.block_on(loaded.store.close());
    }
    criterion.final_summary();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-store.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("latency report written to {}", path.display());
}
