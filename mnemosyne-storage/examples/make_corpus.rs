//! Writes the standard workload (with vectors of the default embedder, or
//! of `hash` with `--hash`) into a database: `cargo run --release -p
//! mnemosyne-storage --example make_corpus -- DB COUNT [QUERIES_FILE] [--hash]`.
//! Queries (one per line: `frequent<TAB>namespace<TAB>text`) go to QUERIES_FILE.
#![allow(clippy::print_stdout, missing_docs)]

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use mnemosyne_core::workload::Workload;
use mnemosyne_core::{Limits, OnConflict};
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_storage::{Location, MemoryStore};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let hash = args.iter().any(|a| a == "--hash");
    args.retain(|a| a != "--hash");
    let config = if hash {
        EmbedderConfig::Hash { dims: 384 }
    } else {
        EmbedderConfig::default()
    };
    let path = PathBuf::from(&args[0]);
    let count: usize = args[1].parse().unwrap();
    let limits = Limits::default();
    let storage = mnemosyne_storage::open_storage(&Location::File(path), &limits)
        .await
        .unwrap();
    let embedder = build_embedder(&config, &limits).unwrap();
    let store = MemoryStore::new(Arc::clone(&storage), limits).with_embedder(embedder);
    let mut workload = Workload::new(42);
    let now = chrono::Utc::now();
    let started = std::time::Instant::now();
    let mut batch = Vec::with_capacity(1_000);
    for _ in 0..count {
        let mut memory = workload.memory(now);
        memory.links.clear();
        batch.push(memory);
        if batch.len() == 1_000 {
            store.import_batch(&batch, OnConflict::Fail).await.unwrap();
            batch.clear();
        }
    }
    store.import_batch(&batch, OnConflict::Fail).await.unwrap();
    println!(
        "{count} memories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if let Some(file) = args.get(2) {
        let mut out = std::fs::File::create(file).unwrap();
        for _ in 0..2_000 {
            let q = workload.query();
            let ns = q.namespace.map(|n| n.to_string()).unwrap_or_default();
            writeln!(out, "{}\t{}\t{}", q.frequent, ns, q.text).unwrap();
        }
    }
    store.close().await;
}
