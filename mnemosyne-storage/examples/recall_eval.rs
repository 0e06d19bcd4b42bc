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
//!     [--embedder hash|minilm|all] [--json OUT] [--tune] [--failures]
//! ```
//!
//! - `--json OUT`: also write the figures (embedder, mode, half, kind) as JSON.
//! - `--tune`: grid search over the semantic preset on the tuning half with
//!   `minilm`; prints the best combinations with their tuning-half and
//!   held-out figures (hybrid).
//! - `--failures`: for every query whose relevant memories hybrid recall
//!   misses in the top 5, the rank each signal gave them.
#![allow(clippy::print_stdout, missing_docs)]

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use mnemosyne_core::{
    Importance, Limits, Link, LinkType, MemoryId, MemoryType, Namespace, NewMemory,
};
use mnemosyne_embed::{EmbedderConfig, HASH_DEFAULT_DIMS, build_embedder};
use mnemosyne_storage::{FusionWeights, Location, MemoryStore, RecallMode, RecallQuery};
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
            let half = if *position % 2 == 0 {
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
}

const USAGE: &str =
    "usage: recall_eval FILE [--embedder hash|minilm|all] [--json OUT] [--tune] [--failures]";

fn parse_args() -> Args {
    let mut args = std::env::args().skip(1);
    let mut file = None;
    let mut json = None;
    let mut embedders = vec![Choice::Hash, Choice::Minilm];
    let mut tune = false;
    let mut failures = false;
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
    }
}

/// A store loaded with the set's memories and links.
struct Loaded {
    store: MemoryStore,
    model_id: String,
    ids: HashMap<String, MemoryId>,
    keys: HashMap<MemoryId, String>,
    _dir: tempfile::TempDir,
}

async fn load(set: &EvalSet, choice: Choice) -> Loaded {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits::default();
    let embedder = build_embedder(&choice.config(), &limits).expect("embedder");
    let model_id = embedder.model_id().to_owned();
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

fn describe(weights: &FusionWeights) -> String {
    format!(
        "keyword {:.2}, vector {:.2}, link {:.2}, similarity >= {:.2} and >= {:.2} x best",
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
    /// Does not lower the tuning-half hybrid recall@5 of the keyword, typo,
    /// namespace or linked kinds below the lexical preset's.
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
        let loaded = load(&set, choice).await;
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
    println!("targets (hybrid recall@5 with minilm; all / tuning / held-out):");
    let line = |what: &str, kind: &str, goal: Option<f64>| {
        let [all, tuning, held_out] = HALVES.map(|half| hybrid("minilm", half, kind).unwrap());
        let goal_text = goal.map_or_else(|| "-".to_owned(), |g| format!("{g:.3}"));
        let verdict = goal.map_or("", |g| if all >= g { "met" } else { "missed" });
        println!(
            "  {what:<34} {all:.3} / {tuning:.3} / {held_out:.3}   goal {goal_text:>5} {verdict}"
        );
    };
    line("paraphrase >= 0.85", "paraphrase", Some(0.85));
    line("overall >= 0.95", OVERALL, Some(0.95));
    line("typo >= hash's typo", "typo", hybrid("hash", "all", "typo"));
}

/// For each query whose relevant memories hybrid recall misses in the top
/// K: the rank each signal gave them (vector ranks and similarities before
/// the floors), and what took the top K instead.
async fn print_failures(loaded: &Loaded, queries: &[Split<'_>], relevant: &[Vec<MemoryId>]) {
    let weights = loaded.store.fusion();
    let unfloored = loaded.store.clone().with_fusion(FusionWeights {
        vector_similarity_min: -1.0,
        vector_similarity_ratio_min: 0.0,
        ..weights
    });
    println!("  hybrid misses (rank: hybrid / keyword / vector, similarity before the floors):");
    for (split, relevant) in queries.iter().zip(relevant) {
        let query = split.query;
        let hybrid = recall(&loaded.store, query, RecallMode::Hybrid, RESULTS).await;
        let top: Vec<MemoryId> = hybrid.hits.iter().take(K).map(|h| h.memory.id).collect();
        let missed: Vec<&MemoryId> = relevant.iter().filter(|r| !top.contains(r)).collect();
        if missed.is_empty() {
            continue;
        }
        let keyword = recall(&loaded.store, query, RecallMode::Keyword, DIAGNOSIS_RESULTS).await;
        let vector = recall(&unfloored, query, RecallMode::Vector, DIAGNOSIS_RESULTS).await;
        let rank_in = |recall: &mnemosyne_storage::Recall, id: &MemoryId| {
            recall
                .hits
                .iter()
                .position(|h| h.memory.id == *id)
                .map_or_else(|| "-".to_owned(), |p| (p + 1).to_string())
        };
        let best = vector.hits.first().and_then(|h| h.signals.similarity);
        println!(
            "    [{} {}] {:?}{} (best similarity {:.3})",
            query.kind,
            split.half,
            query.text,
            query
                .namespace
                .as_ref()
                .map_or_else(String::new, |ns| format!(" in {ns}")),
            best.unwrap_or(0.0)
        );
        for id in missed {
            let similarity = vector
                .hits
                .iter()
                .find(|h| h.memory.id == *id)
                .and_then(|h| h.signals.similarity);
            println!(
                "      missed {}: {} / {} / {} (similarity {})",
                loaded.keys[id],
                rank_in(&hybrid, id),
                rank_in(&keyword, id),
                rank_in(&vector, id),
                similarity.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}")),
            );
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
        println!("      top {K}: {}", took.join(", "));
    }
}

/// The grid of `--tune`. Only the ratio of the keyword to the vector weight
/// matters to the ranking, so the keyword weight stays 1.0.
fn grid() -> Vec<FusionWeights> {
    let mut grid = Vec::new();
    for vector_weight in [0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0] {
        for link_weight in [0.5, 0.7, 0.9] {
            for vector_similarity_min in [0.0, 0.1, 0.2, 0.3] {
                for vector_similarity_ratio_min in [0.0, 0.3, 0.5, 0.7] {
                    grid.push(FusionWeights {
                        keyword_weight: 1.0,
                        vector_weight,
                        link_weight,
                        vector_similarity_min,
                        vector_similarity_ratio_min,
                    });
                }
            }
        }
    }
    grid
}

/// Grid search over the semantic preset's parameters, ranked by hybrid
/// recall@5 (then MRR) on the tuning half only; the held-out figures are
/// printed beside them, not used to choose.
async fn tune(loaded: &Loaded, queries: &[Split<'_>], relevant: &[Vec<MemoryId>]) -> Vec<TunedRow> {
    let score = |weights: FusionWeights| {
        let store = loaded.store.clone().with_fusion(weights);
        async move {
            let found = found(&store, queries, RecallMode::Hybrid).await;
            tabulate(queries, relevant, &found)
        }
    };
    let baseline = score(FusionWeights::LEXICAL).await;
    let guarded = ["keyword", "typo", "namespace", "linked"];
    let grid = grid();
    println!();
    println!(
        "tuning the semantic preset with minilm: {} combinations, chosen on the tuning half",
        grid.len()
    );
    let mut rows = Vec::with_capacity(grid.len());
    for weights in grid {
        let table = score(weights).await;
        let safe = guarded.iter().all(|kind| {
            get(&table, "tuning", kind).recall_at_5 >= get(&baseline, "tuning", kind).recall_at_5
        });
        rows.push(TunedRow {
            fusion: weights,
            safe,
            tuning: table.get("tuning").cloned().unwrap_or_default(),
            held_out: table.get("held_out").cloned().unwrap_or_default(),
        });
    }
    let key = |row: &TunedRow| {
        let s = row.tuning.get(OVERALL).copied().unwrap_or_default();
        (s.recall_at_5, s.mrr)
    };
    rows.sort_by(|a, b| {
        let (ra, ma) = key(a);
        let (rb, mb) = key(b);
        rb.total_cmp(&ra).then(mb.total_cmp(&ma))
    });
    let print_row = |row: &TunedRow| {
        let f = &row.fusion;
        let t = |kind: &str| row.tuning.get(kind).copied().unwrap_or_default();
        let h = |kind: &str| row.held_out.get(kind).copied().unwrap_or_default();
        println!(
            "    {:>4.2} {:>4.2} {:>4.2} {:>4.2} {:>4} | {:.3} {:.3} {:.3} {:.3} {:.3} {:.3} {:.3} | {:.3} {:.3} {:.3}",
            f.vector_weight,
            f.link_weight,
            f.vector_similarity_min,
            f.vector_similarity_ratio_min,
            if row.safe { "yes" } else { "no" },
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
            "    {:>4} {:>4} {:>4} {:>4} {:>4} | {:<47} | held-out",
            "vec", "link", "sim", "rat", "safe", "tuning"
        );
        println!(
            "    {:>4} {:>4} {:>4} {:>4} {:>4} | {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} {:>5} | {:>5} {:>5} {:>5}",
            "",
            "",
            "",
            "",
            "",
            "R@5",
            "MRR",
            "para",
            "kw",
            "typo",
            "ns",
            "link",
            "R@5",
            "MRR",
            "para"
        );
    };
    let baseline_row = TunedRow {
        fusion: FusionWeights::LEXICAL,
        safe: true,
        tuning: baseline.get("tuning").cloned().unwrap_or_default(),
        held_out: baseline.get("held_out").cloned().unwrap_or_default(),
    };
    println!("  the lexical preset (the baseline for `safe`):");
    header();
    print_row(&baseline_row);
    println!("  best safe combinations (no loss on keyword, typo, namespace, linked):");
    header();
    rows.iter().filter(|r| r.safe).take(10).for_each(print_row);
    println!("  best combinations, safe or not:");
    header();
    rows.iter().take(5).for_each(print_row);
    rows.truncate(20);
    rows
}
