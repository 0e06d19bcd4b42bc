//! Fusion for hybrid recall: the keyword and vector candidate lists fused
//! into one score per memory, a share of a hit's score passed along its
//! links, then boosts for importance, recency and namespace nearness.
//!
//! ```text
//! rrf     = keyword_weight * share(keyword list) + vector_weight * share(vector list)
//!         + link_weight * rrf(of the memory it was linked from)
//! share   = 1 / (RRF_K + rank)                                        FusionMethod::ReciprocalRank
//!         = ((score - worst) / (best - worst)) / (RRF_K + 1)          FusionMethod::RelativeScore
//! score   = rrf * importance_boost * recency_boost * namespace_boost
//! importance_boost = 1 + IMPORTANCE_STEP * (importance - 5)          0.84 ..= 1.20
//! recency_boost    = 1 + RECENCY_MAX * 0.5 ^ (age_days / RECENCY_HALF_LIFE_DAYS)   1 ..= 1.10
//! namespace_boost  = NAMESPACE_STEP ^ (levels above the query's namespace)         1, 0.97, 0.94
//! ```
//! The method, the weights, and the similarity floors that decide which
//! vector candidates take part are a [`FusionWeights`] chosen by the kind of
//! embedder ([`FusionWeights::for_model`]): lexical vectors (`hash`) are
//! noisier than BM25, weigh less than it and are fused by rank; semantic
//! ones (`minilm`, `http`) weigh more and are fused by score.
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
/// are spelled here; `mnemosyne-embed/tests/fusion_presets.rs` pins them to
/// the ids its embedders report.
pub const SEMANTIC_MODEL_ID_PREFIXES: &[&str] = &["minilm-", "http:"];

/// The tunable settings of hybrid recall: how the two candidate lists are
/// fused, the weight of each signal, and the similarity floors a vector
/// candidate must clear to take part. The ranking depends only on the ratio
/// of `keyword_weight` to `vector_weight` (and on `link_weight`, a share of
/// a fused score), so `keyword_weight` stays 1.0 in the presets.
///
/// The floors apply to vector-only recall as well. `cargo xtask eval`
/// measures the presets; `cargo xtask eval --tune` searches a grid of them.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct FusionWeights {
    /// How a candidate's place in its list becomes its share of the fused
    /// score: by rank, or by its score relative to the list's.
    pub method: FusionMethod,
    /// Weight of the keyword (BM25) list: a keyword candidate's share is
    /// multiplied by this.
    pub keyword_weight: f64,
    /// Weight of the vector list: a vector candidate's share is multiplied
    /// by this. Below `keyword_weight` when the vectors are lexical and
    /// noisier than BM25, above it when they are semantic.
    pub vector_weight: f64,
    /// Share of a memory's fused score each memory it links to receives
    /// (once, from the first memory that links to it).
    pub link_weight: f64,
    /// Vector candidates less similar (cosine) than this to the query are
    /// dropped: with nothing in common they only add noise to the fusion.
    pub vector_similarity_min: f64,
    /// Vector candidates less similar than this share of the best
    /// candidate's similarity are dropped too: far below the best match
    /// they are noise. A share rather than a fixed floor, because a short
    /// query against a long memory scores low even on an exact match.
    pub vector_similarity_ratio_min: f64,
}

/// How a candidate's place in its list (keyword or vector) becomes its
/// share of the fused score, before the list's weight.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FusionMethod {
    /// Reciprocal rank fusion: `1 / (RRF_K + rank)`. Only the order within
    /// a list counts, so a weak match at rank 1 counts as much as a strong
    /// one; robust when a list's scores mean little (hash vectors).
    #[default]
    ReciprocalRank,
    /// Relative score fusion: the candidate's score (BM25, cosine
    /// similarity) min-max normalised over its list, `(score - worst) /
    /// (best - worst)` (1 when the list has one candidate or all score the
    /// same), over `RRF_K + 1` so that a list's best candidate adds what it
    /// would at rank 1. Keeps how far apart the candidates are, which for
    /// semantic vectors carries meaning that ranks throw away.
    RelativeScore,
}

impl FusionMethod {
    /// The share of the candidate at `index` (0-based) with `score`, in a
    /// list whose scores run from `best` down to `worst`.
    fn share(self, index: usize, score: f64, best: f64, worst: f64) -> f64 {
        match self {
            Self::ReciprocalRank => 1.0 / (RRF_K + index as f64 + 1.0),
            Self::RelativeScore => {
                let normalised = if best > worst {
                    (score - worst) / (best - worst)
                } else {
                    1.0
                };
                normalised / (RRF_K + 1.0)
            }
        }
    }
}

impl FusionWeights {
    /// For lexical vectors (the `hash` embedder, and any model not known to
    /// be semantic): reciprocal rank fusion, tuned with the hash embedder on
    /// `eval/recall-eval.json` as it was before its 76 paraphrase queries
    /// (figures are hybrid recall@5 on that set):
    ///
    /// - vector weight 0.6, below the keyword list's, because hash vectors
    ///   are lexical and noisier than BM25 (1.0 gave 0.888, 0.6 gave 0.916
    ///   at link weight 0.5);
    /// - link weight 0.7 (0.5 → 0.7 lifted the linked-memory queries without
    ///   moving the others);
    /// - similarity floor 0.1: with no shared words or n-grams a candidate
    ///   is noise;
    /// - ratio floor 0.5: 0.916 without it, 0.961 with 0.5 (0.938 with a
    ///   fixed floor of 0.2 instead).
    pub const LEXICAL: Self = Self {
        method: FusionMethod::ReciprocalRank,
        keyword_weight: 1.0,
        vector_weight: 0.6,
        link_weight: 0.7,
        vector_similarity_min: 0.1,
        vector_similarity_ratio_min: 0.5,
    };

    /// For semantic vectors (`minilm`, and `http` endpoints, which serve
    /// sentence models too): relative score fusion, the vector list weighed
    /// 1.5 times the keyword list, a link weight of 0.5, a similarity floor
    /// of 0.15 and a ratio floor of 0.5 x the best candidate's.
    ///
    /// Chosen by `cargo xtask eval --tune` with minilm on the tuning half of
    /// `eval/recall-eval.json` alone: of the 360 grid points (method, vector
    /// and link weights, both floors), among those that keep a fixed floor
    /// and lose no keyword, typo, namespace or linked query to the lexical
    /// preset, the one with the best tuning-half hybrid recall@5, then MRR.
    /// The fixed floor is there for queries about nothing stored, which the
    /// set does not have: unrelated text scores about 0.03 to 0.13 against
    /// minilm, related text 0.2 and up, and without a floor the nearest
    /// memory always comes back. Hybrid recall@5 / MRR with minilm:
    ///
    /// | half | this preset | paraphrase | the lexical preset | paraphrase |
    /// |---|---|---|---|---|
    /// | tuning (74 queries) | 0.946 / 0.840 | 0.895 | 0.818 / 0.603 | 0.658 |
    /// | held out (73) | 0.911 / 0.820 | 0.842 | 0.849 / 0.683 | 0.737 |
    ///
    /// Many points tie at 0.946 on the tuning half (its 4 misses are
    /// paraphrases, 3 of them in neither list's top 5); MRR picks among
    /// them, and the same point without the fixed floor has the same
    /// figures. The best reciprocal-rank point reached 0.919 on the tuning half
    /// (0.863 held out). `BENCHMARKS.md` has the figures per kind.
    pub const SEMANTIC: Self = Self {
        method: FusionMethod::RelativeScore,
        keyword_weight: 1.0,
        vector_weight: 1.5,
        link_weight: 0.5,
        vector_similarity_min: 0.15,
        vector_similarity_ratio_min: 0.5,
    };

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
    /// Fused score before boosts (reciprocal rank or relative score, see
    /// [`FusionMethod`]), link share included.
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
    let (best, worst) = bounds(keyword.iter().map(|h| h.bm25));
    for (index, hit) in keyword.into_iter().enumerate() {
        let rank = index as u32 + 1;
        let entry = entry(&mut by_id, hit.memory);
        entry.signals.keyword_rank = Some(rank);
        entry.signals.bm25 = Some(hit.bm25);
        entry.signals.rrf +=
            weights.keyword_weight * weights.method.share(index, hit.bm25, best, worst);
    }
    let (best, worst) = bounds(vector.iter().map(|h| h.similarity));
    for (index, hit) in vector.into_iter().enumerate() {
        let rank = index as u32 + 1;
        let entry = entry(&mut by_id, hit.memory);
        entry.signals.vector_rank = Some(rank);
        entry.signals.similarity = Some(hit.similarity);
        entry.signals.rrf +=
            weights.vector_weight * weights.method.share(index, hit.similarity, best, worst);
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

/// The best and worst of a list's scores.
fn bounds(scores: impl Iterator<Item = f64>) -> (f64, f64) {
    scores.fold((f64::NEG_INFINITY, f64::INFINITY), |(best, worst), s| {
        (best.max(s), worst.min(s))
    })
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

    fn vector_hits(similarities: &[f64]) -> Vec<VectorHit> {
        similarities
            .iter()
            .map(|&similarity| VectorHit {
                memory: memory("x", "global", 5),
                similarity,
            })
            .collect()
    }

    #[test]
    fn relative_score_keeps_the_gaps_that_ranks_lose() {
        let relative = FusionWeights {
            method: FusionMethod::RelativeScore,
            vector_weight: 1.0,
            ..W
        };
        let rank = FusionWeights {
            vector_weight: 1.0,
            ..W
        };
        let share = |weights: &FusionWeights| {
            let fused = fuse(
                Vec::new(),
                vector_hits(&[0.8, 0.3, 0.2]),
                weights,
                &[],
                Utc::now(),
            );
            let mut by_rank: Vec<(u32, f64)> = fused
                .iter()
                .map(|f| (f.signals.vector_rank.unwrap(), f.signals.rrf))
                .collect();
            by_rank.sort_by_key(|(rank, _)| *rank);
            by_rank.into_iter().map(|(_, rrf)| rrf).collect::<Vec<_>>()
        };
        let by_rank = share(&rank);
        let by_score = share(&relative);
        // The best candidate adds the same in both methods.
        assert!((by_rank[0] - 1.0 / (RRF_K + 1.0)).abs() < 1e-12);
        assert!((by_score[0] - 1.0 / (RRF_K + 1.0)).abs() < 1e-12);
        // Ranks keep the runner-up close to the best; scores do not.
        assert!(by_rank[1] / by_rank[0] > 0.95);
        let expected = (0.3 - 0.2) / (0.8 - 0.2);
        assert!((by_score[1] / by_score[0] - expected).abs() < 1e-9);
        assert_eq!(by_score[2], 0.0, "the list's worst gets nothing");
    }

    #[test]
    fn relative_score_lets_a_clear_lead_beat_a_near_tie() {
        // A leads the keyword list by far and trails B by a hair in the
        // vector list. By rank, B's vector rank 1 outweighs A's keyword
        // rank 1 (the vector list weighs more); by relative score, A's lead
        // counts and the hair does not.
        let a = memory("a", "global", 5);
        let b = memory("b", "global", 5);
        let c = memory("c", "global", 5);
        let keyword = || {
            [(&a, 10.0), (&b, 1.0), (&c, 0.0)]
                .map(|(m, bm25)| KeywordHit {
                    memory: m.clone(),
                    bm25,
                })
                .to_vec()
        };
        let vector = || {
            [(&b, 0.90), (&a, 0.89), (&c, 0.10)]
                .map(|(m, similarity)| VectorHit {
                    memory: m.clone(),
                    similarity,
                })
                .to_vec()
        };
        let first = |method: FusionMethod| {
            let weights = FusionWeights {
                method,
                vector_weight: 2.0,
                ..W
            };
            fuse(keyword(), vector(), &weights, &[], Utc::now())[0]
                .memory
                .id
        };
        assert_eq!(first(FusionMethod::ReciprocalRank), b.id);
        assert_eq!(first(FusionMethod::RelativeScore), a.id);
        assert_eq!(
            fuse(
                keyword(),
                vector(),
                &FusionWeights::SEMANTIC,
                &[],
                Utc::now()
            )[0]
            .memory
            .id,
            a.id,
            "the semantic preset fuses by relative score"
        );
    }

    #[test]
    fn relative_score_gives_a_lone_candidate_the_full_share() {
        let relative = FusionWeights {
            method: FusionMethod::RelativeScore,
            ..W
        };
        let fused = fuse(
            vec![KeywordHit {
                memory: memory("k", "global", 5),
                bm25: 0.3,
            }],
            Vec::new(),
            &relative,
            &[],
            Utc::now(),
        );
        assert!((fused[0].signals.rrf - 1.0 / (RRF_K + 1.0)).abs() < 1e-12);
    }

    #[test]
    fn both_presets_keep_a_fixed_similarity_floor() {
        // Without one, the nearest memory is a vector candidate however
        // unrelated, and a query about nothing stored finds something.
        for preset in [FusionWeights::LEXICAL, FusionWeights::SEMANTIC] {
            assert!(preset.vector_similarity_min >= 0.1, "{preset:?}");
        }
    }

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
