//! Latency and throughput of the local model, for BENCHMARKS.md:
//! `cargo run --release -p mnemosyne-embed --example minilm_latency`.
//!
//! Prints the load time, the latency (p50/p99) of one query of 5 to 30
//! words, and texts per second at several batch sizes over the memories of
//! `eval/recall-eval.json` (25 to 90 words each): one thread, then through
//! the embedder (runs on `embedding_inferences_max` threads).

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use mnemosyne_embed::MiniLmModel;

const QUERY_RUNS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let loads: Vec<f64> = (0..5)
        .map(|_| MiniLmModel::load(256).map(|m| m.load_time().as_secs_f64() * 1000.0))
        .collect::<Result<_, _>>()?;
    let model = MiniLmModel::load(256)?;
    println!("load_ms runs={loads:.0?}");
    let phases: Vec<String> = model
        .load_phases()
        .iter()
        .map(|(name, time)| format!("{name}={:.0}", time.as_secs_f64() * 1000.0))
        .collect();
    println!("load_phases_ms {}", phases.join(" "));
    let words = "why does the scheduler run the same job twice after a deploy when the lease expires under load and the worker restarts while the database is locked by another writer during the nightly backup window";
    let words: Vec<&str> = words.split(' ').collect();
    for count in [5, 10, 20, 30] {
        let query = words[..count].join(" ");
        let mut times = Vec::with_capacity(QUERY_RUNS);
        for _ in 0..QUERY_RUNS {
            let started = Instant::now();
            model.embed(&[&query])?;
            times.push(started.elapsed());
        }
        times.sort();
        println!(
            "query words={count} p50_ms={:.2} p99_ms={:.2}",
            percentile(&times, 0.5),
            percentile(&times, 0.99)
        );
    }
    let corpus = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../eval/recall-eval.json"),
    )?;
    let corpus: serde_json::Value = serde_json::from_str(&corpus)?;
    let texts: Vec<String> = corpus["memories"]
        .as_array()
        .ok_or("no memories")?
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
    for batch in [1, 8, 16, 32, 64] {
        let started = Instant::now();
        for chunk in texts.chunks(batch) {
            model.embed(chunk)?;
        }
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "throughput batch={batch} texts={} texts_per_s={:.1}",
            texts.len(),
            texts.len() as f64 / seconds
        );
    }
    // What the embedding worker, import and reindex see: the embedder's
    // runs spread over `embedding_inferences_max` blocking threads.
    let limits = mnemosyne_core::Limits::default();
    let embedder = mnemosyne_embed::MiniLmEmbedder::new(&limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        use mnemosyne_core::Embedder as _;
        embedder.preload().await?;
        for batch in [8, 64] {
            let started = Instant::now();
            for chunk in texts.chunks(batch) {
                embedder.embed(chunk).await?;
            }
            let seconds = started.elapsed().as_secs_f64();
            println!(
                "embedder_throughput batch={batch} inferences_max={} texts_per_s={:.1}",
                limits.embedding_inferences_max,
                texts.len() as f64 / seconds
            );
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
