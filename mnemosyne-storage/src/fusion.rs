//! Rank fusion for hybrid recall: reciprocal rank fusion of the keyword and
//! vector candidate lists, a share of a hit's score passed along its links,
//! then boosts for importance, recency and namespace nearness.
//!
//! ```text
//! rrf     = keyword_weight / (RRF_K + keyword_rank) + vector_weight / (RRF_K + vector_rank)
//!         + link_weight * rrf(of the memory it was linked from)
//! score   = rrf * importance_boost * recency_boost * namespace_boost
//! importance_boost = 1 + IMPORTANCE_STEP * (importance - 5)          0.84 ..= 1.20
//! recency_boost    = 1 + RECENCY_MAX * 0.5 ^ (age_days / RECENCY_HALF_LIFE_DAYS)   1 ..= 1.10
//! namespace_boost  = NAMESPACE_STEP ^ (levels above the query's namespace)         1, 0.97, 0.94
//! ```
//! The weights, and the similarity floors that decide which vector
//! candidates enter the fusion, are a [`FusionWeights`] chosen by the kind
//! of embedder ([`FusionWeights::for_model`]): lexical vectors (`hash`) are
//! noisier than BM25 and weigh less than it, semantic ones (`minilm`,
//! `http`) more.
//!
//! A signal a memory did not get contributes nothing; every hit carries its
//! per-signal ranks and scores so a user can see why it ranked.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use mnemosyne_core::{KeywordHit, LinkedMemory, Memory, MemoryId, Namespace, VectorHit};
use serde::{Deserialize, Serialize};

/// Reciprocal rank fusion constant (the usual 60: damps the top ranks).
pub const RRF_K: f64 = 60.0;
/// Importance boost per point above (or below) 5.
pub const IMPORTANCE_STEP: f64 = 0.04;
/// Largest recency boost (for a memory updated just now).
pub const RECENCY_MAX: f64 = 0.1;
/// Age at which the recency boost halves, in days.
pub const RECENCY_HALF_LIFE_DAYS: f64 = 30.0;
/// Factor per namespace level above the query's namespace.
pub const NAMESPACE_STEP: f64 = 0.97;

/// Model id prefixes of embedders whose vectors are semantic (sentence
/// models) rather than lexical: the local `minilm` model and any `http`
/// endpoint (`http:MODEL@DIMS`), which serves an embedding model too.
/// The storage crate does not depend on `mnemosyne-embed`, so the prefixes
/// are spelled here; a test there pins them to the embedders' ids.
pub const SEMANTIC_MODEL_ID_PREFIXES: &[&str] = &["minilm-", "http:"];

/// The tunable settings of hybrid recall: the weight of each signal in the
/// fusion and the similarity floors a vector candidate must clear to take
/// part. The ranking depends only on the ratio of `keyword_weight` to
/// `vector_weight` (and on `link_weight`, a share of a fused score), so
/// `keyword_weight` stays 1.0 in the presets.
///
/// The floors apply to vector-only recall as well.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    /// Weight of the keyword (BM25) list: its reciprocal rank is multiplied
    /// by this.
    pub keyword_weight: f64,
    /// Weight of the vector list: its reciprocal rank is multiplied by this.
    /// Below `keyword_weight` when the vectors are lexical and noisier than
    /// BM25, above it when they are semantic.
    pub vector_weight: f64,
    /// Share of a memory's fused score each memory it links to receives
    /// (once, from the first memory that links to it).
    pub link_weight: f64,
    /// Vector candidates less similar (cosine) than this to the query are
    /// dropped: they only add noise to the fusion.
    pub vector_similarity_min: f64,
    /// Vector candidates less similar than this share of the best
    /// candidate's similarity are dropped too: far below the best match
    /// they are noise. A share rather than a fixed floor, because a short
    /// query against a long memory scores low even on an exact match.
    pub vector_similarity_ratio_min: f64,
}

impl FusionWeights {
    /// For lexical vectors (the `hash` embedder, and any model not known to
    /// be semantic), tuned on `eval/recall-eval.json` with the hash
    /// embedder:
    ///
    /// - vector weight 0.6, below the keyword list's, because hash vectors
    ///   are lexical and noisier than BM25 (1.0 gave hybrid recall@5 0.888,
    ///   0.6 gave 0.916 at link weight 0.5);
    /// - link weight 0.7 (0.5 → 0.7 lifted the linked-memory queries without
    ///   moving the others);
    /// - similarity floor 0.1: with no shared words or n-grams a candidate
    ///   is noise;
    /// - ratio floor 0.5: hybrid recall@5 0.916 without it, 0.961 with 0.5
    ///   (0.938 with a fixed floor of 0.2 instead).
    pub const LEXICAL: Self = Self {
        keyword_weight: 1.0,
        vector_weight: 0.6,
        link_weight: 0.7,
        vector_similarity_min: 0.1,
        vector_similarity_ratio_min: 0.5,
    };

    /// For semantic vectors (`minilm`, `http` embedders). Placeholder until
    /// tuned: the lexical values.
    pub const SEMANTIC: Self = Self::LEXICAL;

    /// The preset for an embedder's model id: [`FusionWeights::SEMANTIC`]
    /// when it starts with one of [`SEMANTIC_MODEL_ID_PREFIXES`] (`minilm-`,
    /// `http:`), otherwise [`FusionWeights::LEXICAL`] (`hash-v1-384` and
    /// any model id it does not know).
    pub fn for_model(model_id: &str) -> Self {
        if SEMANTIC_MODEL_ID_PREFIXES
            .iter()
            .any(|prefix| model_id.starts_with(prefix))
        {
            Self::SEMANTIC
        } else {
            Self::LEXICAL
        }
    }
}

impl Default for FusionWeights {
    /// [`FusionWeights::LEXICAL`]: what a store without an embedder uses
    /// (only its link weight matters there).
    fn default() -> Self {
        Self::LEXICAL
    }
}

/// Why a result ranked where it did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SignalScores {
    /// Rank among keyword candidates (1 = best), if it was one.
    pub keyword_rank: Option<u32>,
    /// BM25 relevance (higher is better), if a keyword candidate.
    pub bm25: Option<f64>,
    /// Rank among vector candidates (1 = nearest), if it was one.
    pub vector_rank: Option<u32>,
    /// Cosine similarity to the query, if a vector candidate.
    pub similarity: Option<f64>,
    /// The memory whose link brought it in, if any.
    pub linked_from: Option<MemoryId>,
    /// Fused reciprocal-rank score before boosts.
    pub rrf: f64,
    /// Importance factor.
    pub importance_boost: f64,
    /// Recency factor.
    pub recency_boost: f64,
    /// Namespace nearness factor.
    pub namespace_boost: f64,
}

/// A fused candidate: the memory, its score and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Fused {
    /// The memory.
    pub memory: Memory,
    /// Final score.
    pub score: f64,
    /// The signals behind it.
    pub signals: SignalScores,
}

/// Fuses the candidate lists (each best first) into one list, best first.
/// `namespaces` is the query's namespace and its ancestors, nearest first
/// (empty: no namespace filter, no namespace boost).
pub fn fuse(
    keyword: Vec<KeywordHit>,
    vector: Vec<VectorHit>,
    weights: &FusionWeights,
    namespaces: &[Namespace],
    now: DateTime<Utc>,
) -> Vec<Fused> {
    let mut by_id: HashMap<MemoryId, Fused> = HashMap::new();
    for (index, hit) in keyword.into_iter().enumerate() {
        let rank = index as u32 + 1;
        let entry = entry(&mut by_id, hit.memory);
        entry.signals.keyword_rank = Some(rank);
        entry.signals.bm25 = Some(hit.bm25);
        entry.signals.rrf += weights.keyword_weight / (RRF_K + f64::from(rank));
    }
    for (index, hit) in vector.into_iter().enumerate() {
        let rank = index as u32 + 1;
        let entry = entry(&mut by_id, hit.memory);
        entry.signals.vector_rank = Some(rank);
        entry.signals.similarity = Some(hit.similarity);
        entry.signals.rrf += weights.vector_weight / (RRF_K + f64::from(rank));
    }
    finish(by_id.into_values().collect(), namespaces, now)
}

/// Adds memories reached by links from the fused list, each receiving
/// `weights.link_weight` of the fused score of the memory it was linked from.
pub fn add_linked(
    fused: Vec<Fused>,
    linked: Vec<LinkedMemory>,
    weights: &FusionWeights,
    namespaces: &[Namespace],
    now: DateTime<Utc>,
) -> Vec<Fused> {
    let parent_rrf: HashMap<MemoryId, f64> =
        fused.iter().map(|f| (f.memory.id, f.signals.rrf)).collect();
    let mut by_id: HashMap<MemoryId, Fused> = fused.into_iter().map(|f| (f.memory.id, f)).collect();
    for link in linked {
        let Some(&from_rrf) = parent_rrf.get(&link.from) else {
            continue;
        };
        let entry = entry(&mut by_id, link.memory);
        let share = weights.link_weight * from_rrf;
        if entry.signals.linked_from.is_none() {
            entry.signals.linked_from = Some(link.from);
            entry.signals.rrf += share;
        }
    }
    finish(by_id.into_values().collect(), namespaces, now)
}

fn entry(by_id: &mut HashMap<MemoryId, Fused>, memory: Memory) -> &mut Fused {
    by_id.entry(memory.id).or_insert_with(|| Fused {
        memory,
        score: 0.0,
        signals: SignalScores::default(),
    })
}

fn finish(mut all: Vec<Fused>, namespaces: &[Namespace], now: DateTime<Utc>) -> Vec<Fused> {
    for fused in &mut all {
        let signals = &mut fused.signals;
        signals.importance_boost =
            1.0 + IMPORTANCE_STEP * (f64::from(fused.memory.importance.get()) - 5.0);
        let age_days = (now - fused.memory.updated_at).num_seconds().max(0) as f64 / 86_400.0;
        signals.recency_boost = 1.0 + RECENCY_MAX * 0.5f64.powf(age_days / RECENCY_HALF_LIFE_DAYS);
        let level = namespaces
            .iter()
            .position(|ns| *ns == fused.memory.namespace)
            .unwrap_or(0);
        signals.namespace_boost = NAMESPACE_STEP.powi(level as i32);
        fused.score = signals.rrf
            * signals.importance_boost
            * signals.recency_boost
            * signals.namespace_boost;
    }
    all.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| b.memory.id.cmp(&a.memory.id))
    });
    all
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemosyne_core::{Limits, NewMemory};

    const W: FusionWeights = FusionWeights::LEXICAL;

    #[test]
    fn presets_follow_the_model_id() {
        assert_eq!(
            FusionWeights::for_model("hash-v1-384"),
            FusionWeights::LEXICAL
        );
        assert_eq!(
            FusionWeights::for_model(mnemosyne_embed::MINILM_MODEL_ID),
            FusionWeights::SEMANTIC
        );
        assert_eq!(
            FusionWeights::for_model("http:nomic-embed-text@768"),
            FusionWeights::SEMANTIC
        );
        assert_eq!(
            FusionWeights::for_model("some-future-model"),
            FusionWeights::LEXICAL,
            "an unknown model gets the conservative preset"
        );
        assert_eq!(FusionWeights::default(), FusionWeights::LEXICAL);
    }

    fn memory(text: &str, namespace: &str, importance: i64) -> Memory {
        let mut new = NewMemory::new(text);
        new.namespace = namespace.parse().unwrap();
        new.importance = importance.try_into().unwrap();
        new.into_memory(&Limits::default(), Utc::now()).unwrap()
    }

    #[test]
    fn a_memory_found_by_both_signals_beats_one_found_by_one() {
        let both = memory("both", "global", 5);
        let keyword_only = memory("keyword", "global", 5);
        let keyword = vec![
            KeywordHit {
                memory: keyword_only.clone(),
                bm25: 9.0,
            },
            KeywordHit {
                memory: both.clone(),
                bm25: 5.0,
            },
        ];
        let vector = vec![VectorHit {
            memory: both.clone(),
            similarity: 0.8,
        }];
        let fused = fuse(keyword, vector, &W, &[], Utc::now());
        assert_eq!(fused[0].memory.id, both.id);
        assert_eq!(fused[0].signals.keyword_rank, Some(2));
        assert_eq!(fused[0].signals.vector_rank, Some(1));
        assert_eq!(fused[1].signals.vector_rank, None);
    }

    #[test]
    fn own_namespace_ranks_above_its_ancestors_when_otherwise_equal() {
        let namespaces: Vec<Namespace> = "session:atlas/s1"
            .parse::<Namespace>()
            .unwrap()
            .with_ancestors();
        let global = memory("x", "global", 5);
        let own = memory("x", "session:atlas/s1", 5);
        let project = memory("x", "project:atlas", 5);
        let vector = vec![
            VectorHit {
                memory: global.clone(),
                similarity: 0.5,
            },
            VectorHit {
                memory: project.clone(),
                similarity: 0.5,
            },
            VectorHit {
                memory: own.clone(),
                similarity: 0.5,
            },
        ];
        // Equal signals: give each the same rank by fusing them one at a time.
        let mut scores = Vec::new();
        for hit in vector {
            let fused = fuse(Vec::new(), vec![hit], &W, &namespaces, Utc::now());
            scores.push((fused[0].memory.namespace.to_string(), fused[0].score));
        }
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        let order: Vec<&str> = scores.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(order, ["session:atlas/s1", "project:atlas", "global"]);
    }

    #[test]
    fn importance_orders_otherwise_equal_hits() {
        let low = memory("x", "global", 1);
        let high = memory("x", "global", 10);
        let a = fuse(
            vec![KeywordHit {
                memory: low,
                bm25: 1.0,
            }],
            Vec::new(),
            &W,
            &[],
            Utc::now(),
        );
        let b = fuse(
            vec![KeywordHit {
                memory: high,
                bm25: 1.0,
            }],
            Vec::new(),
            &W,
            &[],
            Utc::now(),
        );
        assert!(b[0].score > a[0].score);
        assert!((b[0].signals.importance_boost - 1.2).abs() < 1e-9);
        assert!((a[0].signals.importance_boost - 0.84).abs() < 1e-9);
    }

    #[test]
    fn linked_memories_get_a_share_of_their_parent() {
        let parent = memory("parent", "global", 5);
        let child = memory("child", "global", 5);
        let fused = fuse(
            vec![KeywordHit {
                memory: parent.clone(),
                bm25: 3.0,
            }],
            Vec::new(),
            &W,
            &[],
            Utc::now(),
        );
        let parent_rrf = fused[0].signals.rrf;
        let linked = vec![LinkedMemory {
            from: parent.id,
            memory: child.clone(),
        }];
        let all = add_linked(fused, linked, &W, &[], Utc::now());
        let got = all.iter().find(|f| f.memory.id == child.id).unwrap();
        assert_eq!(got.signals.linked_from, Some(parent.id));
        assert!((got.signals.rrf - W.link_weight * parent_rrf).abs() < 1e-12);
        assert_eq!(all[0].memory.id, parent.id);
    }
}
