//! Times recall over a query file written by `make_corpus` and prints the
//! slowest queries: `cargo run --release -p mnemosyne-storage --example
//! recall_profile -- DB QUERIES_FILE [keyword|vector|hybrid]` (default hybrid).
//! `MNEMOSYNE_<LIMIT>` variables override limits, as in the CLI.
#![allow(clippy::print_stdout, missing_docs)]

use std::path::PathBuf;
use std::time::Instant;

use mnemosyne_core::Limits;
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_storage::{Location, MemoryStore, RecallMode, RecallQuery};

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = match args.get(2).map(String::as_str) {
        Some("keyword") => RecallMode::Keyword,
        Some("vector") => RecallMode::Vector,
        _ => RecallMode::Hybrid,
    };
    // `MNEMOSYNE_<LIMIT>` variables apply, as in the CLI (to tune a limit).
    let limits = Limits::default()
        .with_env_overrides(std::env::vars())
        .unwrap();
    let embedder = build_embedder(&EmbedderConfig::default(), &limits).unwrap();
    let store = MemoryStore::open(&Location::File(PathBuf::from(&args[0])), limits)
        .await
        .unwrap()
        .with_embedder(embedder);
    let text = std::fs::read_to_string(&args[1]).unwrap();
    let mut timings = Vec::new();
    for line in text.lines() {
        let mut parts = line.splitn(3, '\t');
        let frequent = parts.next().unwrap() == "true";
        let namespace = parts.next().unwrap();
        let query = parts.next().unwrap().to_owned();
        let recall = RecallQuery {
            text: query.clone(),
            namespace: (!namespace.is_empty()).then(|| namespace.parse().unwrap()),
            limit: Some(10),
            mode,
            ..RecallQuery::default()
        };
        let started = Instant::now();
        let hits = store.recall(recall).await.unwrap().hits.len();
        timings.push((
            started.elapsed().as_secs_f64() * 1e3,
            frequent,
            namespace.to_owned(),
            query,
            hits,
        ));
    }
    let mut sorted: Vec<f64> = timings.iter().map(|t| t.0).collect();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)];
    println!(
        "p50 {:.3} ms p90 {:.3} ms p99 {:.3} ms max {:.3} ms",
        at(0.5),
        at(0.9),
        at(0.99),
        at(1.0)
    );
    timings.sort_by(|a, b| b.0.total_cmp(&a.0));
    for t in timings.iter().take(12) {
        println!(
            "{:8.3} ms frequent={} ns={:?} hits={} {:?}",
            t.0, t.1, t.2, t.4, t.3
        );
    }
    store.close().await;
}
