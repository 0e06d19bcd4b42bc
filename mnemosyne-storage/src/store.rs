//! `MemoryStore`: the facade a library user holds. Validates input against
//! [`Limits`], stamps ids and times, and calls the pooled [`Storage`].

use std::sync::Arc;

use mnemosyne_core::{
    BatchOutcome, Error, KeywordQuery, Limits, Link, LinkOutcome, LinkType, ListQuery, Memory,
    MemoryId, MemoryPatch, Namespace, NewMemory, OnConflict, PoolStatus, Result, Storage,
    normalise_tags, timestamp_now, validate_tags,
};
use serde::{Deserialize, Serialize};

use crate::fts_query::query_terms;
use crate::location::Location;

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
}

/// Why a result ranked where it did.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SignalScores {
    /// Rank among keyword candidates (1 = best).
    pub keyword_rank: u32,
    /// BM25 relevance (higher is better).
    pub bm25: f64,
}

/// One recalled memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecallHit {
    /// The memory.
    pub memory: Memory,
    /// Final score; results are sorted by it, highest first.
    pub score: f64,
    /// The per-signal scores behind `score`.
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
}

/// A pooled, bounded memory store.
#[derive(Debug, Clone)]
pub struct MemoryStore {
    storage: Arc<dyn Storage>,
    limits: Limits,
}

impl MemoryStore {
    /// Wraps an open backend.
    pub fn new(storage: Arc<dyn Storage>, limits: Limits) -> Self {
        Self { storage, limits }
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
        self.storage.insert_memory(&memory).await?;
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
        self.storage
            .update_memory(id, &patch, timestamp_now())
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
                .update_memory(id, &patch, timestamp_now())
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
        let tags = normalise_tags(query.tags);
        validate_tags(&tags, &self.limits)?;
        let limit = match query.limit {
            Some(0) => return Err(Error::invalid("limit must be at least 1")),
            Some(limit) => limit.min(self.limits.recall_results_max),
            None => self.limits.recall_results_max,
        };
        let keyword = KeywordQuery {
            text: query.text,
            namespaces: query
                .namespace
                .map(|ns| ns.with_ancestors())
                .unwrap_or_default(),
            tags,
            limit: limit + 1,
            include_archived: query.include_archived,
        };
        let mut hits = self.storage.keyword_search(&keyword).await?;
        let truncated = hits.len() > limit as usize;
        hits.truncate(limit as usize);
        let hits = hits
            .into_iter()
            .enumerate()
            .map(|(index, hit)| RecallHit {
                score: hit.bm25,
                signals: SignalScores {
                    keyword_rank: index as u32 + 1,
                    bm25: hit.bm25,
                },
                memory: hit.memory,
            })
            .collect();
        Ok(Recall {
            hits,
            limit,
            truncated,
        })
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
        self.storage.insert_memories(memories, on_conflict).await
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
