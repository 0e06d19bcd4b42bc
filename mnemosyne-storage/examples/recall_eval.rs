//! Recall evaluation on the labelled set in `eval/recall-eval.json`: loads
//! its memories into a fresh database with the configured embedder (default:
//! hash), runs every query in keyword, vector and hybrid mode, and prints
//! recall@5 and MRR per mode and per query kind. Run by `cargo xtask eval`.
//!
//! `cargo run --release -p mnemosyne-storage --example recall_eval -- FILE [--json OUT]`
#![allow(clippy::print_stdout, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use mnemosyne_core::{
    Importance, Limits, Link, LinkType, MemoryId, MemoryType, Namespace, NewMemory,
};
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_storage::{Location, MemoryStore, RecallMode, RecallQuery};
use serde::Deserialize;

const K: usize = 5;

#[derive(Debug, Deserialize)]
struct EvalSet {
    memories: Vec<EvalMemory>,
    queries: Vec<EvalQuery>,
}

#[derive(Debug, Deserialize)]
struct EvalMemory {
    key: String,
    namespace: Namespace,
    content: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    importance: Option<Importance>,
    #[serde(default)]
    memory_type: Option<MemoryType>,
    #[serde(default)]
    links: Vec<EvalLink>,
}

#[derive(Debug, Deserialize)]
struct EvalLink {
    target: String,
    #[serde(default)]
    link_type: LinkType,
}

#[derive(Debug, Deserialize)]
struct EvalQuery {
    text: String,
    namespace: Option<Namespace>,
    relevant: Vec<String>,
    kind: String,
}

#[derive(Debug, Default, Clone, serde::Serialize)]
struct Score {
    queries: usize,
    recall_at_5: f64,
    mrr: f64,
}

impl Score {
    fn add(&mut self, found: &[MemoryId], relevant: &[MemoryId]) {
        let top: Vec<&MemoryId> = found.iter().take(K).collect();
        let hit = relevant.iter().filter(|r| top.contains(r)).count();
        self.recall_at_5 += hit as f64 / relevant.len() as f64;
        self.mrr += found
            .iter()
            .position(|id| relevant.contains(id))
            .map_or(0.0, |rank| 1.0 / (rank + 1) as f64);
        self.queries += 1;
    }

    fn finish(mut self) -> Self {
        let n = self.queries.max(1) as f64;
        self.recall_at_5 /= n;
        self.mrr /= n;
        self
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let file = PathBuf::from(args.first().expect("usage: recall_eval FILE [--json OUT]"));
    let json_out = args
        .iter()
        .position(|a| a == "--json")
        .and_then(|i| args.get(i + 1));
    let set: EvalSet =
        serde_json::from_str(&std::fs::read_to_string(&file).expect("read eval set"))
            .expect("parse eval set");
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits::default();
    let embedder = build_embedder(&EmbedderConfig::default(), &limits).expect("embedder");
    let model = embedder.model_id().to_owned();
    let store = MemoryStore::open(&Location::File(dir.path().join("eval.db")), limits)
        .await
        .expect("open store")
        .with_embedder(embedder);

    let mut ids: HashMap<String, MemoryId> = HashMap::new();
    for memory in &set.memories {
        let new = NewMemory {
            namespace: memory.namespace.clone(),
            content: memory.content.clone(),
            summary: None,
            memory_type: memory.memory_type.unwrap_or_default(),
            importance: memory.importance.unwrap_or_default(),
            tags: memory.tags.clone(),
            links: Vec::new(),
        };
        let stored = store.remember(new).await.expect("remember");
        ids.insert(memory.key.clone(), stored.id);
    }
    let mut links = Vec::new();
    for memory in &set.memories {
        for link in &memory.links {
            links.push((
                ids[&memory.key],
                Link {
                    target: ids[&link.target],
                    link_type: link.link_type,
                },
            ));
        }
    }
    store.import_links(&links).await.expect("links");

    let modes = [
        ("keyword", RecallMode::Keyword),
        ("vector", RecallMode::Vector),
        ("hybrid", RecallMode::Hybrid),
    ];
    let mut by_mode: BTreeMap<&str, Score> = BTreeMap::new();
    let mut by_kind: BTreeMap<(String, &str), Score> = BTreeMap::new();
    for query in &set.queries {
        let relevant: Vec<MemoryId> = query.relevant.iter().map(|key| ids[key]).collect();
        for (name, mode) in modes {
            let recall = RecallQuery {
                text: query.text.clone(),
                namespace: query.namespace.clone(),
                limit: Some(10),
                mode,
                ..RecallQuery::default()
            };
            let found: Vec<MemoryId> = match store.recall(recall).await {
                Ok(recall) => recall.hits.iter().map(|h| h.memory.id).collect(),
                Err(_) => Vec::new(),
            };
            by_mode.entry(name).or_default().add(&found, &relevant);
            by_kind
                .entry((query.kind.clone(), name))
                .or_default()
                .add(&found, &relevant);
        }
    }
    store.close().await;
    println!(
        "recall evaluation: {} memories, {} queries, embedder {model}, k = {K}",
        set.memories.len(),
        set.queries.len()
    );
    println!("{:<10} {:>10} {:>8}", "mode", "recall@5", "MRR");
    let mut report = serde_json::Map::new();
    for (name, score) in &by_mode {
        let score = score.clone().finish();
        println!("{name:<10} {:>10.3} {:>8.3}", score.recall_at_5, score.mrr);
        report.insert((*name).to_owned(), serde_json::to_value(&score).unwrap());
    }
    println!();
    println!(
        "{:<12} {:<10} {:>8} {:>10} {:>8}",
        "kind", "mode", "queries", "recall@5", "MRR"
    );
    for ((kind, mode), score) in &by_kind {
        let score = score.clone().finish();
        println!(
            "{kind:<12} {mode:<10} {:>8} {:>10.3} {:>8.3}",
            score.queries, score.recall_at_5, score.mrr
        );
    }
    if let Some(out) = json_out {
        std::fs::write(out, serde_json::to_string_pretty(&report).unwrap()).expect("write report");
    }
}
