//! `MemoryStore`: the facade a library user holds. Validates input against
//! [`Limits`], stamps ids and times, and calls the pooled [`Storage`].

use std::sync::{Arc, Mutex};

use mnemosyne_core::{
    BatchOutcome, Embedder, Embedding, Error, Importance, KeywordQuery, Limits, Link, LinkOutcome,
    LinkType, ListQuery, Memory, MemoryId, MemoryPatch, Namespace, NewMemory, OnConflict,
    PendingEmbedding, PendingKind, PoolStatus, Result, Storage, VectorQuery, normalise_tags,
    timestamp_now, validate_tags,
};
use serde::{Deserialize, Serialize};

use crate::embedding_backlog::EmbeddingBacklog;
use crate::fts_query::query_terms;
use crate::fusion;
pub use crate::fusion::{FusionWeights, SignalScores};
use crate::location::Location;
use crate::rows::embedding_text;

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
    /// Only memories of at least this importance (linked ones too).
    pub min_importance: Option<Importance>,
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

/// The filters of a recall that the memories its links reach must pass.
struct LinkFilter<'a> {
    namespaces: &'a [Namespace],
    tags: &'a [String],
    include_archived: bool,
    min_importance: Option<Importance>,
}

impl LinkFilter<'_> {
    /// True when `memory` passes every filter but archived (the storage
    /// query applies that one).
    fn allows(&self, memory: &Memory) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&memory.namespace))
            && self.tags.iter().all(|tag| memory.tags.contains(tag))
            && self
                .min_importance
                .is_none_or(|min| memory.importance >= min)
    }
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
///
/// Clones share the backend and the embedding worker slot: once a worker is
/// started on one clone ([`MemoryStore::start_embedding_worker`]), every
/// clone's `remember` hands its vector to that worker.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    storage: Arc<dyn Storage>,
    limits: Limits,
    embedder: Option<Arc<dyn Embedder>>,
    worker: Arc<Mutex<Option<Arc<EmbeddingBacklog>>>>,
    /// Set by [`MemoryStore::with_fusion`]; otherwise the embedder's preset.
    fusion: Option<FusionWeights>,
}

impl MemoryStore {
    /// Wraps an open backend, without an embedder: recall is keyword-only
    /// and no vectors are stored (see [`MemoryStore::with_embedder`]).
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Self {
        Self {
            storage,
            limits,
            embedder: None,
            worker: Arc::new(Mutex::new(None)),
            fusion: None,
        }
    }

    /// Attaches the backlog of a new embedding worker; refused while
    /// another worker of this store runs.
    pub(crate) fn attach_backlog(&self, backlog: Arc<EmbeddingBacklog>) -> Result<()> {
        let mut slot = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(|backlog| backlog.is_running()) {
            return Err(Error::invalid(
                "an embedding worker already runs for this store",
            ));
        }
        *slot = Some(backlog);
        Ok(())
    }

    /// The backlog of the running embedding worker, if one runs.
    pub fn embedding_backlog(&self) -> Option<Arc<EmbeddingBacklog>> {
        let slot = self.worker.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|backlog| backlog.is_running())
            .map(Arc::clone)
    }

    /// Embeds every remembered or changed memory with `embedder` and uses
    /// vectors in recall, fused with the weights of its kind
    /// ([`FusionWeights::for_model`] of its model id) unless
    /// [`MemoryStore::with_fusion`] set others.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Fuses hybrid recall with `weights` (and filters vector candidates by
    /// its floors) instead of the embedder's preset, whichever order the
    /// two are set in.
    pub fn with_fusion(mut self, weights: FusionWeights) -> Self {
        self.fusion = Some(weights);
        self
    }

    /// The fusion weights in force: those set by [`MemoryStore::with_fusion`],
    /// else the preset for the embedder's model id, else (no embedder)
    /// [`FusionWeights::LEXICAL`].
    pub fn fusion(&self) -> FusionWeights {
        self.fusion.unwrap_or_else(|| {
            self.embedder
                .as_ref()
                .map_or(FusionWeights::LEXICAL, |embedder| {
                    FusionWeights::for_model(embedder.model_id())
                })
        })
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
    ///
    /// Without an embedding worker, its vector is made and stored in the
    /// same transaction. With one, the memory is committed without a vector
    /// (keyword recall finds it at once) and queued for the worker, after
    /// waiting for room in a full backlog at most `embedding_backlog_wait_ms`;
    /// past that it fails with [`Error::EmbeddingBacklogFull`] and stores nothing.
    pub async fn remember(&self, new: NewMemory) -> Result<Memory> {
        let memory = new.into_memory(&self.limits, timestamp_now())?;
        if let Some(backlog) = self.embedding_backlog()
            && let Some(room) = backlog.reserve().await?
        {
            self.storage.insert_memory(&memory, None).await?;
            if let Err(id) = room.queue(memory.id) {
                // The worker stopped since the room was taken: embed here.
                // The memory is committed, so a failure is only logged; the
                // next worker's start takes the memory up.
                if let Err(error) = self.embed_ids(&[id]).await {
                    tracing::warn!(%id, %error, "remembered without its vector");
                }
            }
            return Ok(memory);
        }
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

    /// The memory with this id (archived ones too); counts as an access,
    /// except on a full disk, where the read is still answered.
    pub async fn get(&self, id: MemoryId) -> Result<Memory> {
        let now = timestamp_now();
        match self.storage.record_access(id, now).await {
            // The access time only nudges ranking: not worth failing a read for.
            Err(error @ Error::DiskFull { .. }) => {
                tracing::warn!(%error, %id, "access time not recorded");
            }
            other => other?,
        }
        self.storage
            .get_memory(id)
            .await?
            .ok_or(Error::NotFound(id))
    }

    /// Changes some fields; returns the updated memory.
    ///
    /// A changed content or summary is embedded inline, before the write,
    /// even when an embedding worker runs: updates are rare, and the new
    /// vector is stored in the update's own transaction. A worker that
    /// embedded the old text meanwhile does not replace it (it only fills
    /// vectors that are missing or of another model).
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
        let weights = self.fusion();
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
                min_importance: query.min_importance,
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
                min_importance: query.min_importance,
            };
            let mut hits = self.storage.vector_search(&vector).await?;
            let best = hits.first().map_or(0.0, |hit| hit.similarity);
            let floor = weights
                .vector_similarity_min
                .max(best * weights.vector_similarity_ratio_min);
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
        let mut fused = fusion::fuse(keyword, vector, &weights, &namespaces, now);
        if query.mode == RecallMode::Hybrid {
            fused = self
                .expand_links(
                    fused,
                    &LinkFilter {
                        namespaces: &namespaces,
                        tags: &tags,
                        include_archived: query.include_archived,
                        min_importance: query.min_importance,
                    },
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
    /// only memories the query's filters allow; each gets the link weight in
    /// force ([`MemoryStore::fusion`]) of its parent's score.
    async fn expand_links(
        &self,
        mut fused: Vec<fusion::Fused>,
        filter: &LinkFilter<'_>,
        limit: u32,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<fusion::Fused>> {
        let namespaces = filter.namespaces;
        let weights = self.fusion();
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
                    filter.include_archived,
                )
                .await?;
            linked.retain(|link| filter.allows(&link.memory));
            let known: std::collections::HashSet<MemoryId> =
                fused.iter().map(|f| f.memory.id).collect();
            frontier = linked
                .iter()
                .map(|l| l.memory.id)
                .filter(|id| !known.contains(id))
                .collect();
            fused = fusion::add_linked(fused, linked, &weights, namespaces, now);
        }
        Ok(fused)
    }

    /// Validates and stores a batch of complete memories (ids and times kept)
    /// in one transaction; links are added separately with [`MemoryStore::import_links`].
    /// With an embedder, the vectors of the batch's memories that have none
    /// are then made as the embedding worker makes them (see
    /// [`MemoryStore::import_batch_without_vectors`] to leave that for later).
    pub async fn import_batch(
        &self,
        memories: &[Memory],
        on_conflict: OnConflict,
    ) -> Result<BatchOutcome> {
        let outcome = self
            .import_batch_without_vectors(memories, on_conflict)
            .await?;
        if self.embedder.is_some() {
            let ids: Vec<MemoryId> = memories.iter().map(|m| m.id).collect();
            for chunk in ids.chunks(self.batch_max()) {
                self.embed_ids(chunk).await?;
            }
        }
        Ok(outcome)
    }

    /// [`MemoryStore::import_batch`] without making the vectors: the memories
    /// stay without one until [`MemoryStore::embed_pending`] (what `mnemosyne
    /// import` runs after its last batch) or a server's embedding worker, at
    /// its start, embeds them.
    pub async fn import_batch_without_vectors(
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
        self.storage.insert_memories(memories, on_conflict).await
    }

    /// Texts per embedder call (`embedding_batch_max`, within what one
    /// storage call takes).
    fn batch_max(&self) -> usize {
        (self.limits.embedding_batch_max as usize).clamp(1, mnemosyne_core::MEMORY_IDS_PER_CALL_MAX)
    }

    /// The batch step every embedding path shares (the worker, its pass at
    /// start, import and reindex): `pending` (at most `embedding_batch_max`
    /// texts) in one embedder call, the vectors in one transaction, except
    /// where a vector of this model was stored meanwhile (made from a newer
    /// text). Returns how many were stored.
    async fn embed_batch(
        &self,
        embedder: &Arc<dyn Embedder>,
        pending: &[PendingEmbedding],
    ) -> Result<u64> {
        if pending.is_empty() {
            return Ok(0);
        }
        let inputs: Vec<&str> = pending.iter().map(|p| p.text.as_str()).collect();
        let vectors = embedder.embed_for_storage(&inputs).await?;
        if vectors.len() != pending.len() {
            return Err(Error::Embedding(format!(
                "the embedder returned {} vectors for {} texts",
                vectors.len(),
                pending.len()
            )));
        }
        let items: Vec<(MemoryId, Embedding)> = pending
            .iter()
            .zip(vectors)
            .map(|(p, vector)| {
                (
                    p.id,
                    Embedding {
                        model_id: embedder.model_id().to_owned(),
                        vector,
                    },
                )
            })
            .collect();
        self.storage.fill_embeddings(&items).await
    }

    /// Embeds those of `ids` that still have no vector, from their current
    /// text (ids deleted meanwhile are skipped), `embedding_batch_max` per
    /// embedder call; returns how many vectors were stored.
    pub(crate) async fn embed_ids(&self, ids: &[MemoryId]) -> Result<u64> {
        let Some(embedder) = &self.embedder else {
            return Ok(0);
        };
        let mut stored = 0;
        for chunk in ids.chunks(self.batch_max()) {
            let pending = self
                .storage
                .pending_embeddings_among(embedder.model_id(), PendingKind::Missing, chunk)
                .await?;
            stored += self.embed_batch(embedder, &pending).await?;
        }
        Ok(stored)
    }

    /// One page of a pass over the memories pending by `kind`: reads up to
    /// `rows` of them after `after` in id order and embeds them
    /// `embedding_batch_max` at a time, calling `progress` with what each
    /// batch stored. Returns how many were stored and where to continue
    /// (`None`: the pass is done).
    async fn embed_pending_rows(
        &self,
        kind: PendingKind,
        after: Option<MemoryId>,
        rows: u32,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(u64, Option<MemoryId>)> {
        let Some(embedder) = &self.embedder else {
            return Err(Error::invalid("embedding needs an embedder"));
        };
        let pending = self
            .storage
            .pending_embeddings(embedder.model_id(), kind, after, rows.max(1))
            .await?;
        let Some(last) = pending.last().map(|p| p.id) else {
            return Ok((0, None));
        };
        let mut stored = 0;
        for chunk in pending.chunks(self.batch_max()) {
            let done = self.embed_batch(embedder, chunk).await?;
            progress(done);
            stored += done;
        }
        Ok((stored, Some(last)))
    }

    /// One batch of the worker's pass (at most `rows` texts read at once).
    pub(crate) async fn embed_pending_page(
        &self,
        kind: PendingKind,
        after: Option<MemoryId>,
        rows: u32,
    ) -> Result<(u64, Option<MemoryId>)> {
        self.embed_pending_rows(kind, after, rows, &mut |_| {})
            .await
    }

    /// Embeds every memory pending by `kind` (missing a vector, or also
    /// stale), as the embedding worker does: `reindex_batch_rows` read per
    /// step, `embedding_batch_max` per embedder call, each batch committed on
    /// its own (an interrupted pass loses at most one batch, and the next
    /// one resumes). `progress` gets the vectors each batch stored. Returns
    /// how many were stored. `mnemosyne import` and `reindex` run this.
    pub async fn embed_pending(
        &self,
        kind: PendingKind,
        mut progress: impl FnMut(u64) + Send,
    ) -> Result<u64> {
        let mut stored = 0;
        let mut after = None;
        loop {
            let (done, next) = self
                .embed_pending_rows(kind, after, self.limits.reindex_batch_rows, &mut progress)
                .await?;
            stored += done;
            match next {
                Some(last) => after = Some(last),
                None => return Ok(stored),
            }
        }
    }

    /// Memories whose vector is pending by `kind` (0 without an embedder).
    pub async fn pending_count(&self, kind: PendingKind) -> Result<u64> {
        match &self.embedder {
            Some(embedder) => {
                self.storage
                    .count_pending_embeddings(embedder.model_id(), kind)
                    .await
            }
            None => Ok(0),
        }
    }

    /// Memories whose vector is missing or made by another model than the
    /// embedder in use (0 without an embedder).
    pub async fn pending_reindex(&self) -> Result<u64> {
        self.pending_count(PendingKind::MissingOrStale).await
    }

    /// Re-embeds up to `reindex_batch_rows` memories whose vector is missing
    /// or stale, after `after` in id order, `embedding_batch_max` per
    /// embedder call; returns how many it embedded and where to continue
    /// (`None`: done). Each batch commits on its own, so an interrupted
    /// reindex resumes where it stopped.
    pub async fn reindex_step(&self, after: Option<MemoryId>) -> Result<(u64, Option<MemoryId>)> {
        if self.embedder.is_none() {
            return Err(Error::invalid("reindex needs an embedder"));
        }
        self.embed_pending_rows(
            PendingKind::MissingOrStale,
            after,
            self.limits.reindex_batch_rows,
            &mut |_| {},
        )
        .await
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

#[cfg(test)]
mod tests {
    use super::*;
    use mnemosyne_embed::{HashEmbedder, MINILM_MODEL_ID, MiniLmEmbedder};

    async fn store(dir: &tempfile::TempDir) -> MemoryStore {
        MemoryStore::open(
            &Location::File(dir.path().join("fusion.db")),
            Limits::default(),
        )
        .await
        .unwrap()
    }

    #[tokio::test]
    async fn the_hash_embedder_gets_the_lexical_preset() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir)
            .await
            .with_embedder(Arc::new(HashEmbedder::default()));
        assert_eq!(store.fusion(), FusionWeights::LEXICAL);
        store.close().await;
    }

    #[tokio::test]
    async fn the_minilm_embedder_gets_the_semantic_preset() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = MiniLmEmbedder::new(&Limits::default());
        assert_eq!(embedder.model_id(), MINILM_MODEL_ID);
        let store = store(&dir).await.with_embedder(Arc::new(embedder));
        assert_eq!(store.fusion(), FusionWeights::SEMANTIC);
        store.close().await;
    }

    #[tokio::test]
    async fn without_an_embedder_the_lexical_preset_applies() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir).await;
        assert_eq!(store.fusion(), FusionWeights::LEXICAL);
        store.close().await;
    }

    #[tokio::test]
    async fn with_fusion_overrides_the_preset_in_either_order() {
        let custom = FusionWeights {
            vector_weight: 9.0,
            ..FusionWeights::LEXICAL
        };
        let minilm = || Arc::new(MiniLmEmbedder::new(&Limits::default()));
        let dir = tempfile::tempdir().unwrap();
        let after = store(&dir)
            .await
            .with_embedder(minilm())
            .with_fusion(custom);
        assert_eq!(after.fusion(), custom);
        after.close().await;
        let dir = tempfile::tempdir().unwrap();
        let before = store(&dir)
            .await
            .with_fusion(custom)
            .with_embedder(minilm());
        assert_eq!(before.fusion(), custom);
        let hash = before.with_embedder(Arc::new(HashEmbedder::default()));
        assert_eq!(hash.fusion(), custom, "a later embedder keeps it too");
        hash.close().await;
    }

    #[tokio::test]
    async fn recall_filters_vector_candidates_by_the_floors_in_force() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir)
            .await
            .with_embedder(Arc::new(HashEmbedder::default()));
        store
            .remember(NewMemory::new("the deploy needs the staging token"))
            .await
            .unwrap();
        let query = || RecallQuery {
            text: "staging deploy token".into(),
            mode: RecallMode::Vector,
            ..RecallQuery::default()
        };
        assert_eq!(store.recall(query()).await.unwrap().hits.len(), 1);
        let above_any_cosine = FusionWeights {
            vector_similarity_min: 1.5,
            ..store.fusion()
        };
        let floored = store.clone().with_fusion(above_any_cosine);
        assert!(floored.recall(query()).await.unwrap().hits.is_empty());
        store.close().await;
    }
}
