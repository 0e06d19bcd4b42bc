//! Recall evaluation on the labelled set in `eval/recall-eval.json`: for each
//! embedder (`hash`, `minilm`), loads its memories into a fresh database,
//! runs every query in keyword, vector and hybrid mode with the fusion preset
//! the store picks for that embedder, and prints recall@5 and MRR per mode and
//! per query kind, for all queries and for each half of the tuning split
//! (within each kind, even positions tune and odd ones are held out; see
//! `eval/README.md`). Run by `cargo xtask eval`.
//!
//! ```text
//! cargo run --release -p mnemosyne-storage --example recall_eval -- FILE
//!     [--embedder hash|minilm|all] [--json OUT] [--tune] [--failures] [--fusion SPEC]
//! ```
//!
//! - `--embedder`: which embedders to evaluate (default `all`).
//! - `--json OUT`: also write the figures (embedder, mode, half, kind), and
//!   with `--tune` every grid point, as JSON.
//! - `--tune`: grid search over the semantic preset on the tuning half with
//!   `minilm`; prints the best combinations with their tuning-half and
//!   held-out figures (hybrid).
//! - `--failures`: what each list holds in its own top 5 (the ceiling of a
//!   fusion), and for every query whose relevant memories hybrid recall
//!   misses in the top 5, the rank each list gave them.
//! - `--fusion SPEC`: evaluate other settings than the embedder's preset,
//!   e.g. `method=relative,vector=3,link=0.7,sim=0,ratio=0.5` (keys
//!   `method` = `rank` or `relative`, `keyword`, `vector`, `link`, `sim`,
//!   `ratio`); unnamed keys keep the preset's value.
#![allow(clippy::print_stdout, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use mnemosyne_core::{
    Importance, Limits, Link, LinkType, MemoryId, MemoryType, Namespace, NewMemory,
};
use mnemosyne_embed::{EmbedderConfig, HASH_DEFAULT_DIMS, build_embedder};
use mnemosyne_storage::fusion::FusionMethod;
use mnemosyne_storage::{
    FusionWeights, Location, MemoryStore, RecallMode, RecallQuery, SignalScores,
};
use serde::{Deserialize, Serialize};

/// Recall@K and MRR over the top K.
const K: usize = 5;
/// Results asked of each recall (MRR looks this far).
const RESULTS: u32 = 10;
/// Results asked when looking for the rank a signal gave a memory (`--failures`).
const DIAGNOSIS_RESULTS: u32 = 50;
/// Query kinds in the order they are printed.
const KINDS: [&str; 5] = ["keyword", "paraphrase", "typo", "namespace", "linked"];
/// The row that sums every kind.
const OVERALL: &str = "overall";
/// Halves of the split, as named in the report.
const HALVES: [&str; 3] = ["all", "tuning", "held_out"];
const MODES: [(&str, RecallMode); 3] = [
    ("keyword", RecallMode::Keyword),
    ("vector", RecallMode::Vector),
    ("hybrid", RecallMode::Hybrid),
];

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

/// A query with its half of the split.
struct Split<'a> {
    query: &'a EvalQuery,
    /// `tuning` (even position within its kind) or `held_out` (odd).
    half: &'static str,
}

fn split(queries: &[EvalQuery]) -> Vec<Split<'_>> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    queries
        .iter()
        .map(|query| {
            let position = seen.entry(query.kind.as_str()).or_default();
            let half = if position.is_multiple_of(2) {
                "tuning"
            } else {
                "held_out"
            };
            *position += 1;
            Split { query, half }
        })
        .collect()
}

#[derive(Debug, Default, Clone, Copy, Serialize)]
struct Score {
    queries: usize,
    recall_at_5: f64,
    mrr: f64,
}

impl Score {
    fn add(&mut self, found: &[MemoryId], relevant: &[MemoryId]) {
        let top = &found[..found.len().min(K)];
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

/// Scores by half (`all`, `tuning`, `held_out`), then kind (and `overall`).
type Table = BTreeMap<&'static str, BTreeMap<String, Score>>;

/// Scores every query's results (`found[i]` for `queries[i]`).
fn tabulate(queries: &[Split<'_>], relevant: &[Vec<MemoryId>], found: &[Vec<MemoryId>]) -> Table {
    let mut table = Table::new();
    for ((split, relevant), found) in queries.iter().zip(relevant).zip(found) {
        for half in ["all", split.half] {
            let by_kind = table.entry(half).or_default();
            for kind in [OVERALL, split.query.kind.as_str()] {
                by_kind
                    .entry(kind.to_owned())
                    .or_default()
                    .add(found, relevant);
            }
        }
    }
    for by_kind in table.values_mut() {
        for score in by_kind.values_mut() {
            *score = score.finish();
        }
    }
    table
}

fn get(table: &Table, half: &str, kind: &str) -> Score {
    table
        .get(half)
        .and_then(|by_kind| by_kind.get(kind))
        .copied()
        .unwrap_or_default()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Choice {
    Hash,
    Minilm,
}

impl Choice {
    fn name(self) -> &'static str {
        match self {
            Self::Hash => "hash",
            Self::Minilm => "minilm",
        }
    }

    fn config(self) -> EmbedderConfig {
        match self {
            Self::Hash => EmbedderConfig::Hash {
                dims: HASH_DEFAULT_DIMS,
            },
            Self::Minilm => EmbedderConfig::Minilm {},
        }
    }
}

struct Args {
    file: PathBuf,
    json: Option<PathBuf>,
    embedders: Vec<Choice>,
    tune: bool,
    failures: bool,
    /// `--fusion SPEC`: changes to the store's preset, `key=value,...`.
    fusion: Option<String>,
}

const USAGE: &str = "usage: recall_eval FILE [--embedder hash|minilm|all] [--json OUT] [--tune] [--failures] [--fusion SPEC]";

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut json = None;
    let mut embedders = vec![Choice::Hash, Choice::Minilm];
    let mut tune = false;
    let mut failures = false;
    let mut fusion = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--json" => json = Some(PathBuf::from(args.next().expect(USAGE))),
            "--embedder" => {
                embedders = match args.next().expect(USAGE).as_str() {
                    "hash" => vec![Choice::Hash],
                    "minilm" => vec![Choice::Minilm],
                    "all" => vec![Choice::Hash, Choice::Minilm],
                    other => panic!("unknown embedder {other:?}; {USAGE}"),
                }
            }
            "--tune" => tune = true,
            "--failures" => failures = true,
            "--fusion" => {
                let spec = args.next().expect(USAGE);
                // Checked before the slow part, against any preset.
                if let Err(error) = apply_spec(FusionWeights::default(), &spec) {
                    panic!("{error}");
                }
                fusion = Some(spec);
            }
            other if other.starts_with("--") => panic!("unknown option {other:?}; {USAGE}"),
            _ if file.is_none() => file = Some(PathBuf::from(arg)),
            _ => panic!("{USAGE}"),
        }
    }
    Args {
        file: file.expect(USAGE),
        json,
        embedders,
        tune,
        failures,
        fusion,
    }
}

/// `weights` changed by `spec`: `key=value,...` with keys `method`
/// (`rank` or `relative`), `keyword`, `vector`, `link` (weights), `sim`
/// and `ratio` (the two similarity floors).
fn apply_spec(mut weights: FusionWeights, spec: &str) -> Result<FusionWeights, String> {
    for pair in spec.split(',').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("--fusion: {pair:?} is not key=value"))?;
        let number = || {
            value
                .parse::<f64>()
                .map_err(|_| format!("--fusion: {key}={value:?} is not a number"))
        };
        match key {
            "method" => {
                weights.method = match value {
                    "rank" => FusionMethod::ReciprocalRank,
                    "relative" => FusionMethod::RelativeScore,
                    other => {
                        return Err(format!(
                            "--fusion: unknown method {other:?} (rank or relative)"
                        ));
                    }
                }
            }
            "keyword" => weights.keyword_weight = number()?,
            "vector" => weights.vector_weight = number()?,
            "link" => weights.link_weight = number()?,
            "sim" => weights.vector_similarity_min = number()?,
            "ratio" => weights.vector_similarity_ratio_min = number()?,
            other => return Err(format!("--fusion: unknown key {other:?}")),
        }
    }
    Ok(weights)
}

/// A store loaded with the set's memories and links.
struct Loaded {
    store: MemoryStore,
    model_id: String,
    ids: HashMap<String, MemoryId>,
    keys: HashMap<MemoryId, String>,
    _dir: tempfile::TempDir,
}

async fn load(set: &EvalSet, choice: Choice, fusion: Option<&str>) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits::default();
    let embedder = build_embedder(&choice.config(), &limits).expect("embedder");
    let model_id = embedder.model_id().to_owned();
    let mut store = MemoryStore::open(&Location::File(dir.path().join("eval.db")), limits)
        .await
        .expect("open store")
        .with_embedder(embedder);
    if let Some(spec) = fusion {
        let weights = apply_spec(store.fusion(), spec).unwrap_or_else(|e| panic!("{e}"));
        store = store.clone().with_fusion(weights);
    }
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
    let keys = ids.iter().map(|(key, id)| (*id, key.clone())).collect();
    Loaded {
        store,
        model_id,
        ids,
        keys,
        _dir: dir,
    }
}

/// The ids `store` recalls for `query` in `mode`, best first.
async fn recall(
    store: &MemoryStore,
    query: &EvalQuery,
    mode: RecallMode,
    limit: u32,
) -> mnemosyne_storage::Recall {
    let recall = RecallQuery {
        text: query.text.clone(),
        namespace: query.namespace.clone(),
        limit: Some(limit),
        mode,
        ..RecallQuery::default()
    };
    store.recall(recall).await.expect("recall")
}

async fn found(store: &MemoryStore, queries: &[Split<'_>], mode: RecallMode) -> Vec<Vec<MemoryId>> {
    let mut all = Vec::with_capacity(queries.len());
    for split in queries {
        let hits = recall(store, split.query, mode, RESULTS).await.hits;
        all.push(hits.iter().map(|h| h.memory.id).collect());
    }
    all
}

fn method_name(method: FusionMethod) -> &'static str {
    match method {
        FusionMethod::ReciprocalRank => "rank",
        FusionMethod::RelativeScore => "relative",
    }
}

fn describe(weights: &FusionWeights) -> String {
    format!(
        "{} fusion, keyword {:.2}, vector {:.2}, link {:.2}, similarity >= {:.2} and >= {:.2} x best",
        match weights.method {
            FusionMethod::ReciprocalRank => "reciprocal rank",
            FusionMethod::RelativeScore => "relative score",
        },
        weights.keyword_weight,
        weights.vector_weight,
        weights.link_weight,
        weights.vector_similarity_min,
        weights.vector_similarity_ratio_min
    )
}

fn print_tables(tables: &BTreeMap<&str, Table>) {
    for half in HALVES {
        let title = match half {
            "all" => "all queries",
            "tuning" => "tuning half (even positions within each kind)",
            _ => "held-out half (odd positions within each kind)",
        };
        println!("  {title}");
        println!(
            "    {:<11} {:>7} | {:>8} {:>6} | {:>8} {:>6} | {:>8} {:>6}",
            "kind", "queries", "keyword", "MRR", "vector", "MRR", "hybrid", "MRR"
        );
        for kind in KINDS.iter().chain([&OVERALL]) {
            let n = get(&tables["hybrid"], half, kind).queries;
            let mut line = format!("    {kind:<11} {n:>7}");
            for (mode, _) in MODES {
                let score = get(&tables[mode], half, kind);
                line.push_str(&format!(" | {:>8.3} {:>6.3}", score.recall_at_5, score.mrr));
            }
            println!("{line}");
        }
    }
}

#[derive(Serialize)]
struct EmbedderReport {
    model_id: String,
    fusion: FusionWeights,
    /// mode → half → kind → score.
    modes: BTreeMap<&'static str, Table>,
}

#[derive(Serialize)]
struct TunedRow {
    fusion: FusionWeights,
    /// Mean tuning-half hybrid recall@5 of this combination and its grid
    /// neighbours (none for a preset off the grid).
    robust: Option<f64>,
    /// Keeps a fixed similarity floor, and does not lower the tuning-half
    /// hybrid recall@5 of the keyword, typo, namespace or linked kinds below
    /// the lexical preset's.
    safe: bool,
    tuning: BTreeMap<String, Score>,
    held_out: BTreeMap<String, Score>,
}

#[derive(Serialize)]
struct Report {
    file: String,
    k: usize,
    split: &'static str,
    embedders: BTreeMap<&'static str, EmbedderReport>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tune: Vec<TunedRow>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let set: EvalSet =
        serde_json::from_str(&std::fs::read_to_string(&args.file).expect("read eval set"))
            .expect("parse eval set");
    let queries = split(&set.queries);
    println!(
        "recall evaluation: {} memories, {} queries ({} tuning, {} held out), k = {K}",
        set.memories.len(),
        queries.len(),
        queries.iter().filter(|q| q.half == "tuning").count(),
        queries.iter().filter(|q| q.half == "held_out").count(),
    );
    let mut report = Report {
        file: args.file.display().to_string(),
        k: K,
        split: "within each kind, in file order: even positions tune, odd are held out",
        embedders: BTreeMap::new(),
        tune: Vec::new(),
    };
    for &choice in &args.embedders {
        let loaded = load(&set, choice, args.fusion.as_deref()).await;
        let relevant: Vec<Vec<MemoryId>> = queries
            .iter()
            .map(|s| s.query.relevant.iter().map(|k| loaded.ids[k]).collect())
            .collect();
        let weights = loaded.store.fusion();
        println!();
        println!(
            "embedder {} ({}); fusion: {}",
            choice.name(),
            loaded.model_id,
            describe(&weights)
        );
        let mut tables = BTreeMap::new();
        for (name, mode) in MODES {
            let found = found(&loaded.store, &queries, mode).await;
            tables.insert(name, tabulate(&queries, &relevant, &found));
        }
        print_tables(&tables);
        if args.failures {
            print_failures(&loaded, &queries, &relevant).await;
        }
        if args.tune && choice == Choice::Minilm {
            report.tune = tune(&loaded, &queries, &relevant).await;
        }
        loaded.store.close().await;
        report.embedders.insert(
            choice.name(),
            EmbedderReport {
                model_id: loaded.model_id.clone(),
                fusion: weights,
                modes: tables,
            },
        );
    }
    if args.tune && !args.embedders.contains(&Choice::Minilm) {
        println!(
            "--tune tunes the semantic preset with minilm: run it with --embedder minilm or all"
        );
    }
    print_targets(&report);
    if let Some(out) = &args.json {
        if let Some(parent) = out.parent() {
            std::fs::create_dir_all(parent).expect("create the report's directory");
        }
        std::fs::write(out, serde_json::to_string_pretty(&report).unwrap()).expect("write report");
        println!("report written to {}", out.display());
    }
}

/// The targets set for the semantic preset, met or missed.
fn print_targets(report: &Report) {
    let hybrid = |embedder: &str, half: &str, kind: &str| {
        report
            .embedders
            .get(embedder)
            .map(|r| get(&r.modes["hybrid"], half, kind).recall_at_5)
    };
    let Some(_) = hybrid("minilm", "all", OVERALL) else {
        return;
    };
    println!();
    println!("targets (hybrid recall@5 with minilm: all / tuning half / held-out half):");
    // The goal in each half: a fixed figure, or hash's figure on that half.
    let line = |what: &str, kind: &str, goal: &dyn Fn(&str) -> Option<f64>| {
        let cells = HALVES.map(|half| {
            let value = hybrid("minilm", half, kind).unwrap();
            let verdict = match goal(half) {
                Some(g) if value >= g => format!(" met (goal {g:.3})"),
                Some(g) => format!(" missed (goal {g:.3})"),
                None => " (no goal)".to_owned(),
            };
            format!("{value:.3}{verdict}")
        });
        println!("  {what:<22} {}", cells.join(" / "));
    };
    line("paraphrase >= 0.85", "paraphrase", &|_| Some(0.85));
    line("overall >= 0.95", OVERALL, &|_| Some(0.95));
    line("typo >= hash's typo", "typo", &|half| {
        hybrid("hash", half, "typo")
    });
}

/// For each query whose relevant memories hybrid recall misses in the top
/// K: the rank each list gave them (keyword: BM25 order; vector: similarity
/// order, before the floors) and what took the top K instead. First, what
/// each list holds in its own top K, before fusion and boosts: the ceiling
/// a fusion of the two can reach.
async fn print_failures(loaded: &Loaded, queries: &[Split<'_>], relevant: &[Vec<MemoryId>]) {
    let weights = loaded.store.fusion();
    let unfloored = loaded.store.clone().with_fusion(FusionWeights {
        vector_similarity_min: -1.0,
        vector_similarity_ratio_min: 0.0,
        ..weights
    });
    let mut lines = Vec::new();
    let mut raw: [Vec<Vec<MemoryId>>; 3] = Default::default();
    for (split, relevant) in queries.iter().zip(relevant) {
        let query = split.query;
        let hybrid = recall(&loaded.store, query, RecallMode::Hybrid, RESULTS).await;
        let keyword = recall(&loaded.store, query, RecallMode::Keyword, DIAGNOSIS_RESULTS).await;
        let vector = recall(&unfloored, query, RecallMode::Vector, DIAGNOSIS_RESULTS).await;
        // The lists in their own order: BM25 rank, similarity rank.
        let in_order = |recall: &mnemosyne_storage::Recall,
                        rank: fn(&SignalScores) -> Option<u32>| {
            let mut hits: Vec<(u32, MemoryId)> = recall
                .hits
                .iter()
                .filter_map(|h| rank(&h.signals).map(|r| (r, h.memory.id)))
                .collect();
            hits.sort_unstable();
            hits.into_iter().map(|(_, id)| id).collect::<Vec<_>>()
        };
        let keyword_order = in_order(&keyword, |s| s.keyword_rank);
        let vector_order = in_order(&vector, |s| s.vector_rank);
        let mut union: Vec<MemoryId> = keyword_order.iter().take(K).copied().collect();
        for id in vector_order.iter().take(K) {
            if !union.contains(id) {
                union.push(*id);
            }
        }
        // Scored as a list whose relevant members all come first.
        let union_hits: Vec<MemoryId> = union
            .iter()
            .filter(|id| relevant.contains(id))
            .chain(union.iter().filter(|id| !relevant.contains(id)))
            .copied()
            .collect();
        raw[0].push(keyword_order.clone());
        raw[1].push(vector_order.clone());
        raw[2].push(union_hits);

        let top: Vec<MemoryId> = hybrid.hits.iter().take(K).map(|h| h.memory.id).collect();
        let missed: Vec<&MemoryId> = relevant.iter().filter(|r| !top.contains(r)).collect();
        if missed.is_empty() {
            continue;
        }
        let rank_in = |order: &[MemoryId], id: &MemoryId| {
            order
                .iter()
                .position(|x| x == id)
                .map_or_else(|| "-".to_owned(), |p| (p + 1).to_string())
        };
        let hybrid_order: Vec<MemoryId> = hybrid.hits.iter().map(|h| h.memory.id).collect();
        let similarity_of = |id: &MemoryId| {
            vector
                .hits
                .iter()
                .find(|h| h.memory.id == *id)
                .and_then(|h| h.signals.similarity)
        };
        let best = vector_order.first().and_then(similarity_of).unwrap_or(0.0);
        lines.push(format!(
            "    [{} {}] {:?}{} (best similarity {best:.3})",
            query.kind,
            split.half,
            query.text,
            query
                .namespace
                .as_ref()
                .map_or_else(String::new, |ns| format!(" in {ns}")),
        ));
        for id in missed {
            let memory = vector
                .hits
                .iter()
                .chain(&keyword.hits)
                .find(|h| h.memory.id == *id);
            lines.push(format!(
                "      missed {}: {} / {} / {} (similarity {}, imp {})",
                loaded.keys[id],
                rank_in(&hybrid_order, id),
                rank_in(&keyword_order, id),
                rank_in(&vector_order, id),
                similarity_of(id).map_or_else(|| "-".to_owned(), |s| format!("{s:.3}")),
                memory.map_or_else(|| "?".to_owned(), |h| h.memory.importance.get().to_string()),
            ));
        }
        let took: Vec<String> = hybrid
            .hits
            .iter()
            .take(K)
            .map(|h| {
                let s = &h.signals;
                let rank = |r: Option<u32>| r.map_or_else(|| "-".to_owned(), |r| r.to_string());
                format!(
                    "{} (k {}, v {}{}, imp {})",
                    loaded.keys[&h.memory.id],
                    rank(s.keyword_rank),
                    rank(s.vector_rank),
                    s.linked_from
                        .map_or_else(String::new, |from| format!(", via {}", loaded.keys[&from])),
                    h.memory.importance.get()
                )
            })
            .collect();
        lines.push(format!("      top {K}: {}", took.join(", ")));
    }
    let tables = raw.map(|found| tabulate(queries, relevant, &found));
    println!(
        "  each list's own top {K}, before fusion and boosts (recall@5: keyword BM25 order / vector similarity order / either list's top {K}):"
    );
    for kind in KINDS.iter().chain([&OVERALL]) {
        let cell = |half: &str| {
            let [k, v, u] = [0, 1, 2].map(|i| get(&tables[i], half, kind).recall_at_5);
            format!("{k:.3} / {v:.3} / {u:.3}")
        };
        println!(
            "    {kind:<11} all {}   tuning {}   held-out {}",
            cell("all"),
            cell("tuning"),
            cell("held_out")
        );
    }
    println!("  hybrid misses (rank: hybrid / keyword list / vector list before the floors):");
    for line in lines {
        println!("{line}");
    }
}

/// The axes of the `--tune` grid. Only the ratio of the keyword to the
/// vector weight matters to the ranking, so the keyword weight stays 1.0.
const METHODS: [FusionMethod; 2] = [FusionMethod::ReciprocalRank, FusionMethod::RelativeScore];
const VECTOR_WEIGHTS: [f64; 5] = [1.0, 1.5, 2.0, 3.0, 4.0];
const LINK_WEIGHTS: [f64; 3] = [0.5, 0.7, 0.9];
const SIMILARITY_MINS: [f64; 3] = [0.0, 0.15, 0.3];
const SIMILARITY_RATIO_MINS: [f64; 4] = [0.0, 0.5, 0.7, 0.8];

/// A point of the grid: the index on each axis.
type Point = [usize; 5];

fn weights_at(point: Point) -> FusionWeights {
    FusionWeights {
        method: METHODS[point[0]],
        keyword_weight: 1.0,
        vector_weight: VECTOR_WEIGHTS[point[1]],
        link_weight: LINK_WEIGHTS[point[2]],
        vector_similarity_min: SIMILARITY_MINS[point[3]],
        vector_similarity_ratio_min: SIMILARITY_RATIO_MINS[point[4]],
    }
}

fn grid() -> Vec<Point> {
    let mut grid = Vec::new();
    for m in 0..METHODS.len() {
        for v in 0..VECTOR_WEIGHTS.len() {
            for l in 0..LINK_WEIGHTS.len() {
                for s in 0..SIMILARITY_MINS.len() {
                    for r in 0..SIMILARITY_RATIO_MINS.len() {
                        grid.push([m, v, l, s, r]);
                    }
                }
            }
        }
    }
    grid
}

/// The points one step away along one numeric axis (same method).
fn neighbours(point: Point) -> Vec<Point> {
    let lens = [
        METHODS.len(),
        VECTOR_WEIGHTS.len(),
        LINK_WEIGHTS.len(),
        SIMILARITY_MINS.len(),
        SIMILARITY_RATIO_MINS.len(),
    ];
    let mut out = Vec::new();
    for axis in 1..point.len() {
        if point[axis] > 0 {
            let mut p = point;
            p[axis] -= 1;
            out.push(p);
        }
        if point[axis] + 1 < lens[axis] {
            let mut p = point;
            p[axis] += 1;
            out.push(p);
        }
    }
    out
}

/// Grid search over the semantic preset's parameters with minilm. Every
/// choice is made on the tuning half; the held-out figures are printed
/// beside them, never used to choose.
///
/// A combination is `safe` when it keeps a fixed similarity floor above 0
/// (without one, the nearest memory is a vector candidate however unrelated
/// it is, so a query about nothing stored still returns something; the set
/// has no such query to measure it) and its tuning-half hybrid recall@5 on
/// the keyword, typo, namespace and linked kinds is each at least the
/// lexical preset's. The best is the safe combination with the highest tuning-half
/// hybrid recall@5, then MRR, then `robust`: the mean tuning-half recall@5
/// of the combination and its grid neighbours (one step along one axis,
/// same method), which also shows whether a combination sits on a plateau
/// or is a lone peak, likely noise on 74 queries.
async fn tune(loaded: &Loaded, queries: &[Split<'_>], relevant: &[Vec<MemoryId>]) -> Vec<TunedRow> {
    let score = |weights: FusionWeights| {
        let store = loaded.store.clone().with_fusion(weights);
        async move {
            let found = found(&store, queries, RecallMode::Hybrid).await;
            tabulate(queries, relevant, &found)
        }
    };
    let baseline = score(FusionWeights::LEXICAL).await;
    let is_safe = |weights: &FusionWeights, table: &Table| {
        weights.vector_similarity_min > 0.0
            && ["keyword", "typo", "namespace", "linked"]
                .iter()
                .all(|kind| {
                    get(table, "tuning", kind).recall_at_5
                        >= get(&baseline, "tuning", kind).recall_at_5
                })
    };
    let grid = grid();
    println!();
    println!(
        "tuning the semantic preset with minilm: {} combinations, chosen on the tuning half",
        grid.len()
    );
    let mut tables: HashMap<Point, Table> = HashMap::new();
    for &point in &grid {
        tables.insert(point, score(weights_at(point)).await);
    }
    let tuning_recall = |point: &Point| get(&tables[point], "tuning", OVERALL).recall_at_5;
    let mut rows: Vec<TunedRow> = grid
        .iter()
        .map(|point| {
            let table = &tables[point];
            let around: Vec<f64> = std::iter::once(*point)
                .chain(neighbours(*point))
                .map(|p| tuning_recall(&p))
                .collect();
            TunedRow {
                fusion: weights_at(*point),
                safe: is_safe(&weights_at(*point), table),
                robust: Some(around.iter().sum::<f64>() / around.len() as f64),
                tuning: table.get("tuning").cloned().unwrap_or_default(),
                held_out: table.get("held_out").cloned().unwrap_or_default(),
            }
        })
        .collect();
    let better = |a: &TunedRow, b: &TunedRow| {
        let (sa, sb) = (a.tuning[OVERALL], b.tuning[OVERALL]);
        sb.recall_at_5
            .total_cmp(&sa.recall_at_5)
            .then(sb.mrr.total_cmp(&sa.mrr))
            .then(b.robust.unwrap_or(0.0).total_cmp(&a.robust.unwrap_or(0.0)))
    };
    rows.sort_by(|a, b| b.safe.cmp(&a.safe).then(better(a, b)));
    let print_row = |row: &TunedRow| {
        let f = &row.fusion;
        let t = |kind: &str| row.tuning.get(kind).copied().unwrap_or_default();
        let h = |kind: &str| row.held_out.get(kind).copied().unwrap_or_default();
        println!(
            "    {:<8} {:>4.2} {:>4.2} {:>4.2} {:>4.2} {:>4} {:>6} | {:.3} {:.3} {:.3} {:.3} {:.3} {:.3} {:.3} | {:.3} {:.3} {:.3}",
            method_name(f.method),
            f.vector_weight,
            f.link_weight,
            f.vector_similarity_min,
            f.vector_similarity_ratio_min,
            if row.safe { "yes" } else { "no" },
            row.robust
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.3}")),
            t(OVERALL).recall_at_5,
            t(OVERALL).mrr,
            t("paraphrase").recall_at_5,
            t("keyword").recall_at_5,
            t("typo").recall_at_5,
            t("namespace").recall_at_5,
            t("linked").recall_at_5,
            h(OVERALL).recall_at_5,
            h(OVERALL).mrr,
            h("paraphrase").recall_at_5,
        );
    };
    let header = || {
        println!(
            "    {:<8} {:>4} {:>4} {:>4} {:>4} {:>4} {:>6} | {:<47} | held-out (hybrid)",
            "method",
            "vec",
            "link",
            "sim",
            "rat",
            "safe",
            "robust",
            "tuning (hybrid recall@5 unless MRR)"
        );
        println!(
            "    {:<8} {:>4} {:>4} {:>4} {:>4} {:>4} {:>6} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>5} {:>5} {:>5}",
            "",
            "",
            "",
            "",
            "",
            "",
            "",
            "all",
            "MRR",
            "para",
            "kw",
            "typo",
            "ns",
            "link",
            "all",
            "MRR",
            "para"
        );
    };
    println!("  the presets:");
    header();
    for preset in [FusionWeights::LEXICAL, FusionWeights::SEMANTIC] {
        if let Some(row) = rows.iter().find(|row| row.fusion == preset) {
            print_row(row);
            continue;
        }
        let table = score(preset).await;
        print_row(&TunedRow {
            fusion: preset,
            safe: is_safe(&preset, &table),
            robust: None,
            tuning: table.get("tuning").cloned().unwrap_or_default(),
            held_out: table.get("held_out").cloned().unwrap_or_default(),
        });
    }
    println!(
        "  best safe combinations (a fixed floor; no loss on keyword, typo, namespace, linked), the first is the semantic preset's:"
    );
    header();
    rows.iter().filter(|r| r.safe).take(10).for_each(print_row);
    let mut any = rows.iter().collect::<Vec<_>>();
    any.sort_by(|a, b| better(a, b));
    println!("  best combinations, safe or not:");
    header();
    any.into_iter().take(5).for_each(print_row);
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(kind: &str) -> EvalQuery {
        EvalQuery {
            text: String::new(),
            namespace: None,
            relevant: Vec::new(),
            kind: kind.to_owned(),
        }
    }

    #[test]
    fn the_split_alternates_within_each_kind_in_file_order() {
        let queries: Vec<EvalQuery> = ["keyword", "typo", "keyword", "keyword", "typo", "linked"]
            .into_iter()
            .map(query)
            .collect();
        let halves: Vec<&str> = split(&queries).iter().map(|s| s.half).collect();
        assert_eq!(
            halves,
            [
                "tuning", "tuning", "held_out", "tuning", "held_out", "tuning"
            ]
        );
    }

    #[test]
    fn a_fusion_spec_changes_only_the_keys_it_names() {
        let base = FusionWeights::LEXICAL;
        let changed = apply_spec(base, "method=relative,vector=3,ratio=0").unwrap();
        assert_eq!(
            changed,
            FusionWeights {
                method: FusionMethod::RelativeScore,
                vector_weight: 3.0,
                vector_similarity_ratio_min: 0.0,
                ..base
            }
        );
        let all = apply_spec(
            base,
            "method=rank,keyword=2,vector=1,link=0.9,sim=0.2,ratio=0.8",
        );
        assert_eq!(
            all.unwrap(),
            FusionWeights {
                method: FusionMethod::ReciprocalRank,
                keyword_weight: 2.0,
                vector_weight: 1.0,
                link_weight: 0.9,
                vector_similarity_min: 0.2,
                vector_similarity_ratio_min: 0.8,
            }
        );
        assert_eq!(apply_spec(base, ""), Ok(base));
    }

    #[test]
    fn a_bad_fusion_spec_is_refused() {
        let base = FusionWeights::LEXICAL;
        for spec in ["vector", "vector=high", "method=minmax", "k=60"] {
            assert!(apply_spec(base, spec).is_err(), "{spec} was accepted");
        }
    }
}
