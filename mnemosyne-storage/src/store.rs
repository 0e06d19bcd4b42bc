//! `MemoryStore`: the facade a library user holds. Validates input against
//! [`Limits`], stamps ids and times, and calls the pooled [`Storage`].

use std::sync::Arc;

use mnemosyne_core::{
    BatchOutcome, Embedder, Embedding, Error, KeywordQuery, Limits, Link, LinkOutcome, LinkType,
    ListQuery, Memory, MemoryId, MemoryPatch, Namespace, NewMemory, OnConflict, PoolStatus, Result,
    Storage, VectorQuery, normalise_tags, timestamp_now, validate_tags,
};
use serde::{Deserialize, Serialize};

use crate::fts_query::query_terms;
use crate::fusion;
pub use crate::fusion::SignalScores;
use crate::location::Location;
use crate::rows::embedding_text;

/// Vector candidates less similar than this to the query are dropped: with
/// no shared words or n-grams they only add noise to the fusion.
pub const VECTOR_SIMILARITY_MIN: f64 = 0.1;

/// Vector candidates less similar than this share of the best candidate's
/// similarity are dropped too: far below the best match they are noise. A
/// share rather than a fixed floor, because a short query against a long
/// memory scores low even on an exact match. Tuned on `eval/recall-eval.json`
/// with the hash embedder: hybrid recall@5 0.916 without it, 0.961 with 0.5
/// (0.938 with a fixed floor of 0.2 instead).
pub const VECTOR_SIMILARITY_RATIO_MIN: f64 = 0.5;

/// Which signals a recall uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecallMode {
    /// Keyword and vector candidates fused, plus link expansion.
    #[default]
    Hybrid,
    /// BM25 keyword search only.
    Keyword,
    /// Vector similarity only.
    Vector,
}

/// A recall request.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RecallQuery {
    /// Free text; words are matched, operators are not interpreted.
    pub text: String,
    /// Search this namespace and the ones it sees (a session sees its project and `global`).
    pub namespace: Option<Namespace>,
    /// Only memories carrying every one of these tags.
    pub tags: Vec<String>,
    /// Results wanted; `None` is `recall_results_max`, more is capped to it.
    pub limit: Option<u32>,
    /// Include archived memories.
    pub include_archived: bool,
    /// Signals to use (hybrid unless asked).
    pub mode: RecallMode,
}

/// One recalled memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallHit {
    /// The memory.
    pub memory: Memory,
    /// Final score; results are sorted by it, highest first.
    pub score: f64,
    /// The per-signal ranks and scores behind `score`.
    pub signals: SignalScores,
}

/// The answer to a recall.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Recall {
    /// Best first, at most `limit`.
    pub hits: Vec<RecallHit>,
    /// The limit that applied.
    pub limit: u32,
    /// True when more memories matched than were returned.
    pub truncated: bool,
    /// Set when a hybrid recall lost its vector signal (the embedder failed)
    /// and answered from keywords and links alone: the embedder's error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// What a text is embedded for: the embedding cache holds only queries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Purpose {
    /// A recall query: repeats, so it goes through the cache.
    Query,
    /// A memory whose vector the store keeps: embedded once.
    Storage,
}

/// A pooled, bounded memory store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    storage: Arc<dyn Storage>,
    limits: Limits,
    embedder: Option<Arc<dyn Embedder>>,
}

impl MemoryStore {
    /// Wraps an open backend, without an embedder: recall is keyword-only
    /// and no vectors are stored (see [`MemoryStore::with_embedder`]).
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Self {
        Self {
            storage,
            limits,
            embedder: None,
        }
    }

    /// Embeds every remembered or changed memory with `embedder` and uses
    /// vectors in recall.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// The embedder in use, if any.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.embedder.as_ref()
    }

    /// One vector of `text`: of a recall query (`Purpose::Query`, through
    /// the embedding cache) or of a memory the store keeps (past it).
    async fn embed_one(&self, text: &str, purpose: Purpose) -> Result<Option<Embedding>> {
        let Some(embedder) = &self.embedder else {
            return Ok(None);
        };
        let mut vectors = match purpose {
            Purpose::Query => embedder.embed(&[text]).await?,
            Purpose::Storage => embedder.embed_for_storage(&[text]).await?,
        };
        let vector = vectors
            .pop()
            .ok_or_else(|| Error::Embedding("the embedder returned no vector".into()))?;
        Ok(Some(Embedding {
            model_id: embedder.model_id().to_owned(),
            vector,
        }))
    }

    /// Opens (creating and migrating if needed) the database at `location`
    /// with the backend this build was compiled with.
    pub async fn open(location: &Location, limits: Limits) -> Result<Self> {
        limits
            .validate()
            .map_err(|e| Error::invalid(e.to_string()))?;
        let storage = crate::open_storage(location, &limits).await?;
        Ok(Self::new(storage, limits))
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// The backend.
    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Validates and stores a memory; returns it once committed.
    pub async fn remember(&self, new: NewMemory) -> Result<Memory> {
        let memory = new.into_memory(&self.limits, timestamp_now())?;
        let embedding = self
            .embed_one(
                &embedding_text(&memory.content, memory.summary.as_deref()),
                Purpose::Storage,
            )
            .await?;
        self.storage
            .insert_memory(&memory, embedding.as_ref())
            .await?;
        Ok(memory)
    }

    /// The memory with this id (archived ones too); counts as an access.
    pub async fn get(&self, id: MemoryId) -> Result<Memory> {
        let now = timestamp_now();
        self.storage.record_access(id, now).await?;
        self.storage
            .get_memory(id)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// Changes some fields; returns the updated memory.
    pub async fn update(&self, id: MemoryId, patch: MemoryPatch) -> Result<Memory> {
        let patch = patch.validated(&self.limits)?;
        let embedding = if patch.content.is_some() || patch.summary.is_some() {
            let current = self
                .storage
                .get_memory(id)
                .await?
                .ok_or(Error::NotFound(id))?;
            let content = patch.content.as_deref().unwrap_or(&current.content);
            let summary = match &patch.summary {
                Some(summary) => summary.as_deref(),
                None => current.summary.as_deref(),
            };
            self.embed_one(&embedding_text(content, summary), Purpose::Storage)
                .await?
        } else {
            None
        };
        self.storage
            .update_memory(id, &patch, timestamp_now(), embedding.as_ref())
            .await
    }

    /// Archives the memory (hidden from recall and list, kept on disk), or
    /// with `hard` deletes it with its links.
    pub async fn forget(&self, id: MemoryId, hard: bool) -> Result<()> {
        if hard {
            self.storage.delete_memory(id).await
        } else {
            let patch = MemoryPatch {
                archived: Some(true),
                ..MemoryPatch::default()
            };
            self.storage
                .update_memory(id, &patch, timestamp_now(), None)
                .await
                .map(|_| ())
        }
    }

    /// Links `source` to `target`.
    pub async fn link(
        &self,
        source: MemoryId,
        target: MemoryId,
        link_type: LinkType,
    ) -> Result<()> {
        if source == target {
            return Err(Error::invalid("a memory cannot link to itself"));
        }
        self.storage
            .add_link(source, &Link { target, link_type })
            .await
    }

    /// A page of memories; `limit` above `list_page_rows_max` is refused.
    pub async fn list(&self, mut query: ListQuery) -> Result<Vec<Memory>> {
        self.check_page(query.limit)?;
        query.tags = normalise_tags(query.tags);
        validate_tags(&query.tags, &self.limits)?;
        self.storage.list_memories(&query).await
    }

    fn check_page(&self, limit: u32) -> Result<()> {
        if limit == 0 || limit > self.limits.list_page_rows_max {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {} (list_page_rows_max), got {limit}",
                self.limits.list_page_rows_max
            )));
        }
        Ok(())
    }

    /// Memories ranked for `query`; at most `recall_results_max`, and says when it cut.
    pub async fn recall(&self, query: RecallQuery) -> Result<Recall> {
        if query.text.len() > self.limits.recall_query_bytes_max as usize {
            return Err(Error::invalid(format!(
                "query is {} bytes, over the limit of {} bytes (recall_query_bytes_max)",
                query.text.len(),
                self.limits.recall_query_bytes_max
            )));
        }
        if query_terms(&query.text).is_empty() {
            return Err(Error::invalid("query has no words to search for"));
        }
        let tags = normalise_tags(query.tags.clone());
        validate_tags(&tags, &self.limits)?;
        let limit = match query.limit {
            Some(0) => return Err(Error::invalid("limit must be at least 1")),
            Some(limit) => limit.min(self.limits.recall_results_max),
            None => self.limits.recall_results_max,
        };
        let namespaces = query
            .namespace
            .as_ref()
            .map(Namespace::with_ancestors)
            .unwrap_or_default();
        let use_keyword = query.mode != RecallMode::Vector;
        let use_vector = query.mode != RecallMode::Keyword;
        if !use_keyword && self.embedder.is_none() {
            return Err(Error::invalid("vector recall needs an embedder"));
        }
        // Both lists over-fetch so that fusion has something to reorder.
        let candidates = (limit * 2).max(limit + 1);
        let keyword = async {
            if !use_keyword {
                return Ok(Vec::new());
            }
            let keyword = KeywordQuery {
                text: query.text.clone(),
                namespaces: namespaces.clone(),
                tags: tags.clone(),
                limit: candidates,
                include_archived: query.include_archived,
            };
            self.storage.keyword_search(&keyword).await
        };
        let vector = async {
            if !use_vector {
                return Ok(Vec::new());
            }
            let Some(embedding) = self.embed_one(&query.text, Purpose::Query).await? else {
                return Ok(Vec::new());
            };
            let vector = VectorQuery {
                vector: embedding.vector,
                model_id: embedding.model_id,
                namespaces: namespaces.clone(),
                tags: tags.clone(),
                limit: candidates.min(self.limits.vector_candidates_max).max(limit),
                include_archived: query.include_archived,
            };
            let mut hits = self.storage.vector_search(&vector).await?;
            let best = hits.first().map_or(0.0, |hit| hit.similarity);
            let floor = VECTOR_SIMILARITY_MIN.max(best * VECTOR_SIMILARITY_RATIO_MIN);
            hits.retain(|hit| hit.similarity >= floor);
            Ok::<_, Error>(hits)
        };
        let (keyword, vector) = tokio::join!(keyword, vector);
        let keyword = keyword?;
        // A hybrid recall survives a failing embedder (an HTTP endpoint that
        // is down) on its keyword signal, and says so; vector mode cannot.
        let (vector, degraded) = match vector {
            Ok(hits) => (hits, None),
            Err(Error::Embedding(message)) if query.mode == RecallMode::Hybrid => {
                tracing::warn!(error = %message, "recall without vectors: the embedder failed");
                (Vec::new(), Some(format!("embedding error: {message}")))
            }
            Err(other) => return Err(other),
        };
        let now = timestamp_now();
        let mut fused = fusion::fuse(keyword, vector, &namespaces, now);
        if query.mode == RecallMode::Hybrid {
            fused = self
                .expand_links(
                    fused,
                    &namespaces,
                    &tags,
                    query.include_archived,
                    limit,
                    now,
                )
                .await?;
        }
        let truncated = fused.len() > limit as usize;
        fused.truncate(limit as usize);
        let hits = fused
            .into_iter()
            .map(|f| RecallHit {
                memory: f.memory,
                score: f.score,
                signals: f.signals,
            })
            .collect();
        Ok(Recall {
            hits,
            limit,
            truncated,
            degraded,
        })
    }

    /// Follows links from the best `limit` candidates, `link_expansion_hops_max`
    /// hops of at most `link_expansion_fan_out_max` memories each, keeping
    /// only memories the query's filters allow.
    async fn expand_links(
        &self,
        mut fused: Vec<fusion::Fused>,
        namespaces: &[Namespace],
        tags: &[String],
        include_archived: bool,
        limit: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<fusion::Fused>> {
        let mut frontier: Vec<MemoryId> = fused
            .iter()
            .take(limit as usize)
            .map(|f| f.memory.id)
            .collect();
        for _ in 0..self.limits.link_expansion_hops_max {
            if frontier.is_empty() {
                break;
            }
            let mut linked = self
                .storage
                .linked_memories(
                    &frontier,
                    self.limits.link_expansion_fan_out_max,
                    include_archived,
                )
                .await?;
            linked.retain(|link| {
                (namespaces.is_empty() || namespaces.contains(&link.memory.namespace))
                    && tags.iter().all(|tag| link.memory.tags.contains(tag))
            });
            let known: std::collections::HashSet<MemoryId> =
                fused.iter().map(|f| f.memory.id).collect();
            frontier = linked
                .iter()
                .map(|l| l.memory.id)
                .filter(|id| !known.contains(id))
                .collect();
            fused = fusion::add_linked(fused, linked, namespaces, now);
        }
        Ok(fused)
    }

    /// Validates and stores a batch of complete memories (ids and times kept)
    /// in one transaction; links are added separately with [`MemoryStore::import_links`].
    pub async fn import_batch(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome> {
        if memories.len() > self.limits.import_batch_rows as usize {
            return Err(Error::invalid(format!(
                "a batch holds at most {} memories (import_batch_rows), got {}",
                self.limits.import_batch_rows,
                memories.len()
            )));
        }
        for memory in memories {
            memory.validate(&self.limits)?;
        }
        let outcome = self.storage.insert_memories(memories, on_conflict).await?;
        if self.embedder.is_some() {
            let texts: Vec<(MemoryId, String)> = memories
                .iter()
                .map(|m| (m.id, embedding_text(&m.content, m.summary.as_deref())))
                .collect();
            self.embed_and_store(&texts).await?;
        }
        Ok(outcome)
    }

    /// Embeds `texts` in batches of `embedding_batch_max` and stores the
    /// vectors (one transaction per batch); returns how many were stored.
    async fn embed_and_store(&self, texts: &[(MemoryId, String)]) -> Result<u64> {
        let Some(embedder) = &self.embedder else {
            return Ok(0);
        };
        let mut stored = 0;
        for chunk in texts.chunks(self.limits.embedding_batch_max as usize) {
            let inputs: Vec<&str> = chunk.iter().map(|(_, text)| text.as_str()).collect();
            let vectors = embedder.embed_for_storage(&inputs).await?;
            if vectors.len() != chunk.len() {
                return Err(Error::Embedding(format!(
                    "the embedder returned {} vectors for {} texts",
                    vectors.len(),
                    chunk.len()
                )));
            }
            let items: Vec<(MemoryId, Embedding)> = chunk
                .iter()
                .zip(vectors)
                .map(|((id, _), vector)| {
                    (
                        *id,
                        Embedding {
                            model_id: embedder.model_id().to_owned(),
                            vector,
                        },
                    )
                })
                .collect();
            stored += self.storage.set_embeddings(&items).await?;
        }
        Ok(stored)
    }

    /// Memories whose vector is missing or made by another model than the
    /// embedder in use (0 without an embedder).
    pub async fn pending_reindex(&self) -> Result<u64> {
        match &self.embedder {
            Some(embedder) => {
                self.storage
                    .count_pending_embeddings(embedder.model_id())
                    .await
            }
            None => Ok(0),
        }
    }

    /// Re-embeds up to `reindex_batch_rows` memories whose vector is missing
    /// or stale, after `after` in id order; returns how many it embedded and
    /// where to continue (`None`: done). Each batch commits on its own, so an
    /// interrupted reindex resumes where it stopped.
    pub async fn reindex_step(&self, after: Option<MemoryId>) -> Result<(u64, Option<MemoryId>)> {
        let Some(embedder) = &self.embedder else {
            return Err(Error::invalid("reindex needs an embedder"));
        };
        let pending = self
            .storage
            .pending_embeddings(embedder.model_id(), after, self.limits.reindex_batch_rows)
            .await?;
        let Some(last) = pending.last().map(|p| p.id) else {
            return Ok((0, None));
        };
        let texts: Vec<(MemoryId, String)> = pending.into_iter().map(|p| (p.id, p.text)).collect();
        let embedded = self.embed_and_store(&texts).await?;
        Ok((embedded, Some(last)))
    }

    /// Adds links in one transaction, skipping those whose ends do not exist.
    pub async fn import_links(&self, links: &[(MemoryId, Link)]) -> Result<LinkOutcome> {
        self.storage.add_links(links).await
    }

    /// Number of memories (archived ones only with `include_archived`).
    pub async fn count(&self, include_archived: bool) -> Result<u64> {
        self.storage.count_memories(include_archived).await
    }

    /// Connection pool gauges.
    pub fn pool_status(&self) -> PoolStatus {
        self.storage.pool_status()
    }

    /// Closes the pools.
    pub async fn close(&self) {
        self.storage.close().await;
    }
}
