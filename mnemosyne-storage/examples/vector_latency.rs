//! Measures `vector_search` latency, its recall against brute force, and the
//! cost of inserting with a vector: `cargo run --release -p mnemosyne-storage
//! --example vector_latency -- DB [random|workload] [COUNT] [latency-only]`.
//!
//! `random`: COUNT uniformly random 384-dimension unit vectors (the worst
//! case for binary quantization: nearest neighbours are barely nearer than
//! the rest). `workload`: COUNT memories of the standard workload embedded
//! by the default `hash` embedder (384 dims), queried with workload queries.
//! The database is built on first run; vectors are regenerated from seeds.
#![allow(clippy::print_stdout, missing_docs)]

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use mnemosyne_core::workload::Workload;
use mnemosyne_core::{
    Embedder, Embedding, Limits, ListQuery, ListSort, Memory, MemoryId, Namespace, NewMemory,
    OnConflict, Storage, VectorQuery,
};
use mnemosyne_embed::HashEmbedder;
use mnemosyne_storage::Location;
use mnemosyne_storage::rows::{cosine, embedding_text};
use rand::{Rng, SeedableRng};

const DIMS: usize = 384;

fn random_unit(rng: &mut impl Rng) -> Vec<f32> {
    let v: Vec<f32> = (0..DIMS).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.into_iter().map(|x| x / norm).collect()
}

fn random_namespaces() -> Vec<Namespace> {
    let mut out: Vec<Namespace> = vec!["global".parse().unwrap()];
    for project in ["atlas", "cinder", "delta", "ember"] {
        out.push(format!("project:{project}").parse().unwrap());
        for session in 1..=3 {
            out.push(format!("session:{project}/s{session}").parse().unwrap());
        }
    }
    out
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    println!(
        "{name:<52} p50 {:>6.2} ms  p99 {:>6.2} ms  max {:>6.2} ms",
        percentile(&ms, 0.5),
        percentile(&ms, 0.99),
        ms[ms.len() - 1]
    );
}

struct Corpus {
    model: String,
    memories: Vec<Memory>,
    vectors: Vec<Vec<f32>>,
    embedder: Option<HashEmbedder>,
    workload: Option<Workload>,
}

async fn corpus(kind: &str, count: usize, limits: &Limits) -> Corpus {
    let now = chrono::Utc::now();
    match kind {
        "random" => {
            let mut rng = rand::rngs::StdRng::seed_from_u64(42);
            let namespaces = random_namespaces();
            let mut memories = Vec::with_capacity(count);
            let mut vectors = Vec::with_capacity(count);
            for n in 0..count {
                let mut tags = Vec::new();
                if n.is_multiple_of(100) {
                    tags.push("rare".to_owned());
                }
                if n.is_multiple_of(3) {
                    tags.push("common".to_owned());
                }
                let new = NewMemory {
                    namespace: namespaces[n % namespaces.len()].clone(),
                    tags,
                    ..NewMemory::new(format!("random vector memory number {n}"))
                };
                memories.push(new.into_memory(limits, now).unwrap());
                vectors.push(random_unit(&mut rng));
            }
            Corpus {
                model: "bench-random".into(),
                memories,
                vectors,
                embedder: None,
                workload: None,
            }
        }
        "workload" => {
            let embedder = HashEmbedder::new(DIMS).unwrap();
            let mut workload = Workload::new(42);
            let mut memories = Vec::with_capacity(count);
            for _ in 0..count {
                let mut memory = workload.memory(now);
                memory.links.clear();
                memories.push(memory);
            }
            let mut vectors = Vec::with_capacity(count);
            for chunk in memories.chunks(1_000) {
                let texts: Vec<String> = chunk
                    .iter()
                    .map(|m| embedding_text(&m.content, m.summary.as_deref()))
                    .collect();
                let texts: Vec<&str> = texts.iter().map(String::as_str).collect();
                vectors.extend(embedder.embed(&texts).await.unwrap());
            }
            Corpus {
                model: embedder.model_id().to_owned(),
                memories,
                vectors,
                embedder: Some(embedder),
                workload: Some(workload),
            }
        }
        other => panic!("unknown corpus {other}: random or workload"),
    }
}

impl Corpus {
    /// A query vector and, for workload queries, their namespace filter.
    async fn query(&mut self, rng: &mut impl Rng) -> (Vec<f32>, Option<Namespace>) {
        match (&self.embedder, &mut self.workload) {
            (Some(embedder), Some(workload)) => {
                let q = workload.query();
                let v = embedder.embed(&[&q.text]).await.unwrap().pop().unwrap();
                (v, q.namespace)
            }
            _ => (random_unit(rng), None),
        }
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = PathBuf::from(&args[0]);
    let kind: &'static str = match args.get(1).map(String::as_str) {
        None | Some("random") => "random",
        Some("workload") => "workload",
        Some(other) => panic!("unknown corpus {other}: random or workload"),
    };
    let count: usize = args.get(2).map_or(100_000, |a| a.parse().unwrap());
    let latency_only = args.get(3).is_some_and(|a| a == "latency-only");
    let limits = Limits::default();
    let storage: Arc<dyn Storage> = mnemosyne_storage::open_storage(&Location::File(path), &limits)
        .await
        .unwrap();
    let started = Instant::now();
    let mut corpus = corpus(kind, count, &limits).await;
    println!(
        "generated {count} {kind} memories in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let existing = storage.count_memories(true).await.unwrap() as usize;
    let mut position: HashMap<MemoryId, usize> = HashMap::new();
    if existing == 0 {
        let started = Instant::now();
        for (memories, vectors) in corpus
            .memories
            .chunks(1_000)
            .zip(corpus.vectors.chunks(1_000))
        {
            storage
                .insert_memories(memories, OnConflict::Fail)
                .await
                .unwrap();
            let items: Vec<(MemoryId, Embedding)> = memories
                .iter()
                .zip(vectors)
                .map(|(m, v)| {
                    let embedding = Embedding {
                        model_id: corpus.model.clone(),
                        vector: v.clone(),
                    };
                    (m.id, embedding)
                })
                .collect();
            let stored = storage.set_embeddings(&items).await.unwrap();
            assert_eq!(stored, items.len() as u64);
        }
        println!(
            "stored in {:.1} s (insert_memories + set_embeddings, batches of 1000)",
            started.elapsed().as_secs_f64()
        );
        position = corpus
            .memories
            .iter()
            .enumerate()
            .map(|(i, m)| (m.id, i))
            .collect();
    } else {
        assert_eq!(existing, count, "the database holds another corpus");
        // Ids are fresh on every run: map stored memories by position in id order.
        let mut after = None;
        let mut ids = Vec::with_capacity(count);
        loop {
            let page = storage
                .list_memories(&ListQuery {
                    sort: ListSort::Id,
                    limit: 1_000,
                    after,
                    include_archived: true,
                    ..ListQuery::default()
                })
                .await
                .unwrap();
            let Some(last) = page.last() else { break };
            after = Some(last.id);
            ids.extend(page.iter().map(|m| m.id));
        }
        position.extend(ids.into_iter().enumerate().map(|(i, id)| (id, i)));
        println!("reusing the stored corpus");
    }

    let query = |vector: Vec<f32>, model: &str, limit: u32| VectorQuery {
        vector,
        model_id: model.to_owned(),
        namespaces: Vec::new(),
        tags: Vec::new(),
        limit,
        include_archived: false,
        min_importance: None,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..20 {
        let (v, _) = corpus.query(&mut rng).await;
        storage
            .vector_search(&query(v, &corpus.model, 10))
            .await
            .unwrap();
    }
    let session: Namespace = "session:atlas/s1".parse().unwrap();
    type Make = Box<dyn Fn(Vec<f32>, Option<Namespace>, &str) -> VectorQuery>;
    let scenarios: Vec<(&str, Make)> = vec![
        (
            "limit 10, no filter",
            Box::new(move |v, _, m| query(v, m, 10)),
        ),
        (
            "limit 200 (recall's default), no filter",
            Box::new(move |v, _, m| query(v, m, 200)),
        ),
        (
            "limit 200, the query's namespace filter if any",
            Box::new(move |v, ns, m| VectorQuery {
                namespaces: ns.map(|n| n.with_ancestors()).unwrap_or_default(),
                ..query(v, m, 200)
            }),
        ),
        (
            "limit 10, session:atlas/s1 + ancestors",
            Box::new({
                let session = session.clone();
                move |v, _, m| VectorQuery {
                    namespaces: session.with_ancestors(),
                    ..query(v, m, 10)
                }
            }),
        ),
        (
            "limit 200, session:atlas/s1 + ancestors",
            Box::new(move |v, _, m| VectorQuery {
                namespaces: session.with_ancestors(),
                ..query(v, m, 200)
            }),
        ),
        (
            "limit 10, tag `bug` / `common`",
            Box::new(move |v, _, m| VectorQuery {
                tags: vec![if kind == "random" { "common" } else { "bug" }.into()],
                ..query(v, m, 10)
            }),
        ),
        (
            "limit 10, tag `rare` (random corpus: 1 in 100)",
            Box::new(move |v, _, m| VectorQuery {
                tags: vec!["rare".into()],
                ..query(v, m, 10)
            }),
        ),
    ];
    let runs = 300;
    for (name, make) in &scenarios {
        let mut ms = Vec::with_capacity(runs);
        let mut returned = 0;
        for _ in 0..runs {
            let (v, ns) = corpus.query(&mut rng).await;
            let q = make(v, ns, &corpus.model);
            let started = Instant::now();
            let hits = storage.vector_search(&q).await.unwrap();
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            returned += hits.len();
        }
        report(name, ms);
        println!("{:<52} mean hits {:.1}", "", returned as f64 / runs as f64);
    }
    if latency_only {
        storage.close().await;
        return;
    }

    // Recall@k against brute force over every stored vector, no filter.
    for k in [10usize, 100] {
        let trials = 50;
        let mut found = 0;
        for _ in 0..trials {
            let (v, _) = corpus.query(&mut rng).await;
            let mut exact: Vec<(usize, f64)> = corpus
                .vectors
                .iter()
                .enumerate()
                .map(|(i, x)| (i, cosine(x, &v)))
                .collect();
            exact.sort_by(|a, b| b.1.total_cmp(&a.1));
            let want: HashSet<usize> = exact[..k].iter().map(|e| e.0).collect();
            let hits = storage
                .vector_search(&query(v, &corpus.model, k as u32))
                .await
                .unwrap();
            found += hits
                .iter()
                .filter(|h| want.contains(&position[&h.memory.id]))
                .count();
        }
        println!(
            "recall@{k} vs brute force ({trials} queries): {:.3}",
            found as f64 / (trials * k) as f64
        );
    }

    // Insert cost per memory, one transaction each, on the full database.
    for with_vector in [false, true] {
        let mut ms = Vec::new();
        for i in 0..500 {
            let memory = NewMemory::new(format!("late insert {i}"))
                .into_memory(&limits, chrono::Utc::now())
                .unwrap();
            let embedding = Embedding {
                model_id: corpus.model.clone(),
                vector: random_unit(&mut rng),
            };
            let started = Instant::now();
            storage
                .insert_memory(&memory, with_vector.then_some(&embedding))
                .await
                .unwrap();
            ms.push(started.elapsed().as_secs_f64() * 1e3);
            storage.delete_memory(memory.id).await.unwrap();
        }
        report(
            if with_vector {
                "insert_memory with a vector (+ delete)"
            } else {
                "insert_memory without a vector (+ delete)"
            },
            ms,
        );
    }
    storage.close().await;
}
