//! Keyword and hybrid recall on the standard workload (`mnemosyne-core/src/workload.rs`)
//! with the default hash embedder, on whichever backend this build has:
//!
//! ```sh
//! cargo bench -p mnemosyne-storage --bench recall
//! cargo bench -p mnemosyne-storage --no-default-features --features libsql --bench recall
//! ```
//!
//! Loads 10k and 100k memories (`MNEMOSYNE_BENCH_QUICK=1`: 1k and 5k) with
//! their vectors, runs criterion on both recall modes, then a latency pass
//! (2 000 workload queries, limit 10, inside the runtime) printing p50/p99,
//! written to `target/bench-recall-<backend>.json`.
#![allow(clippy::print_stdout, missing_docs)]

mod common;

use std::path::Path;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion};
use mnemosyne_core::workload::WorkloadQuery;
use mnemosyne_core::{Limits, OnConflict};
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_storage::{BACKEND, Location, MemoryStore, RecallMode};
use tokio::runtime::Runtime;

use common::{corpus, recall_query, runtime, store_latency};

struct Loaded {
    _dir: tempfile::TempDir,
    store: MemoryStore,
    queries: Vec<WorkloadQuery>,
    load_rows_per_s: f64,
}

fn load(rt: &Runtime, count: usize) -> Loaded {
    let (memories, queries) = corpus(count);
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let embedder = build_embedder(&EmbedderConfig::default(), &limits).unwrap();
    let store = rt
        .block_on(MemoryStore::open(
            &Location::File(dir.path().join("bench.db")),
            limits,
        ))
        .unwrap()
        .with_embedder(embedder);
    let started = Instant::now();
    for chunk in memories.chunks(1_000) {
        rt.block_on(store.import_batch(chunk, OnConflict::Fail))
            .unwrap();
    }
    let load_rows_per_s = count as f64 / started.elapsed().as_secs_f64();
    Loaded {
        _dir: dir,
        store,
        queries,
        load_rows_per_s,
    }
}

fn bench(c: &mut Criterion, rt: &Runtime, loaded: &Loaded, count: usize) {
    for (name, mode) in [
        ("keyword_recall", RecallMode::Keyword),
        ("hybrid_recall", RecallMode::Hybrid),
    ] {
        let mut group = c.benchmark_group(name);
        let mut next = 0usize;
        group.bench_function(BenchmarkId::new(BACKEND, count), |b| {
            b.to_async(rt).iter(|| {
                let query = recall_query(&loaded.queries[next % loaded.queries.len()], mode);
                next += 1;
                let store = &loaded.store;
                async move { store.recall(query).await.unwrap() }
            })
        });
        group.finish();
    }
}

fn main() {
    let rt = runtime();
    // Pooled connections are dropped on the runtime's blocking threads.
    let _runtime_guard = rt.enter();
    let mut criterion = common::criterion();
    let sizes = common::recall_sizes();
    let mut report = serde_json::Map::new();
    for &count in sizes {
        let loaded = load(&rt, count);
        bench(&mut criterion, &rt, &loaded, count);
        let keyword = store_latency(&rt, &loaded.store, &loaded.queries, RecallMode::Keyword);
        let hybrid = store_latency(&rt, &loaded.store, &loaded.queries, RecallMode::Hybrid);
        println!(
            "{BACKEND} recall@{count}: keyword p50 {:.3} ms p99 {:.3} ms; hybrid p50 {:.3} ms p99 {:.3} ms \
             (max {:.3} ms); load with hash embeddings {:.0} rows/s",
            keyword.p50_ms,
            keyword.p99_ms,
            hybrid.p50_ms,
            hybrid.p99_ms,
            hybrid.max_ms,
            loaded.load_rows_per_s
        );
        report.insert(
            format!("recall_{count}"),
            serde_json::json!({ "keyword": keyword, "hybrid": hybrid, "load_rows_per_s": loaded.load_rows_per_s }),
        );
        rt.block_on(loaded.store.close());
    }
    criterion.final_summary();
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(format!("../target/bench-recall-{BACKEND}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("latency report written to {}", path.display());
}
