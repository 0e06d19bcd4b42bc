//! Shared by the benches: the standard workload, the runtime, latency
//! percentiles and the recall query shape.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use criterion::Criterion;

use chrono::Utc;
use mnemosyne_core::Memory;
use mnemosyne_core::workload::{Workload, WorkloadQuery};
use mnemosyne_storage::{MemoryStore, RecallMode, RecallQuery};
use tokio::runtime::Runtime;

/// Seed of the workload generator, the same in every bench.
pub const SEED: u64 = 42;
/// Results per recall.
pub const RECALL_LIMIT: u32 = 10;

pub fn quick() -> bool {
    std::env::var_os("MNEMOSYNE_BENCH_QUICK").is_some()
}

pub fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn corpus(count: usize) -> (Vec<Memory>, Vec<WorkloadQuery>) {
    let mut workload = Workload::new(SEED);
    let now = Utc::now();
    let memories: Vec<Memory> = (0..count)
        .map(|_| {
            let mut memory = workload.memory(now);
            memory.links.clear();
            memory
        })
        .collect();
    let queries = (0..2_000).map(|_| workload.query()).collect();
    (memories, queries)
}

#[derive(Debug, serde::Serialize)]
pub struct Latency {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub frequent_p99_ms: f64,
    pub max_ms: f64,
}

pub fn percentiles(mut samples: Vec<(Duration, bool)>) -> Latency {
    let pick = |sorted: &[Duration], q: f64| {
        sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e3
    };
    let mut frequent: Vec<Duration> = samples.iter().filter(|s| s.1).map(|s| s.0).collect();
    frequent.sort();
    samples.sort();
    let all: Vec<Duration> = samples.into_iter().map(|s| s.0).collect();
    Latency {
        p50_ms: pick(&all, 0.50),
        p99_ms: pick(&all, 0.99),
        frequent_p99_ms: if frequent.is_empty() {
            0.0
        } else {
            pick(&frequent, 0.99)
        },
        max_ms: pick(&all, 1.0),
    }
}

pub fn recall_query(query: &WorkloadQuery, mode: RecallMode) -> RecallQuery {
    RecallQuery {
        text: query.text.clone(),
        namespace: query.namespace.clone(),
        limit: Some(RECALL_LIMIT),
        mode,
        ..RecallQuery::default()
    }
}

/// Times each query inside the runtime, as a server calling the store would.
pub fn store_latency(
    rt: &Runtime,
    store: &MemoryStore,
    queries: &[WorkloadQuery],
    mode: RecallMode,
) -> Latency {
    percentiles(rt.block_on(async {
        let mut samples = Vec::with_capacity(queries.len());
        for query in queries {
            let started = Instant::now();
            store.recall(recall_query(query, mode)).await.unwrap();
            samples.push((started.elapsed(), query.frequent));
        }
        samples
    }))
}

/// Criterion as every bench configures it (shorter with `MNEMOSYNE_BENCH_QUICK`).
pub fn criterion() -> Criterion {
    Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }))
        .warm_up_time(Duration::from_secs(1))
}

/// Corpus sizes of the recall benches: 10k and 100k (1k and 5k when quick).
pub fn recall_sizes() -> &'static [usize] {
    if quick() {
        &[1_000, 5_000]
    } else {
        &[10_000, 100_000]
    }
}
