//! The memory operations both front ends call: the store's operation, then
//! the event on the bus, then a bounded answer. MCP tools and HTTP handlers
//! are thin wrappers over these, so the two cannot drift.

use mnemosyne_core::{Memory, MemoryId};
use mnemosyne_storage::{ContextEdge, MemoryStore, SignalScores};
use serde::Serialize;

use crate::error::ApiError;
use crate::events::{Event, EventBus};
use crate::params::{
    ContextParams, ForgetParams, LinkParams, ListParams, RecallParams, RememberParams,
    UpdateFields, link, memory_id,
};

/// A memory in an answer. In recall and list results its content is cut to
/// `result_content_bytes_max` bytes and `content_truncated` says so.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryView {
    /// The memory (content possibly cut).
    #[serde(flatten)]
    pub memory: Memory,
    /// True when `content` is a prefix of the stored content.
    pub content_truncated: bool,
    /// Bytes of the whole stored content.
    pub content_bytes: usize,
}

impl MemoryView {
    /// The whole memory.
    pub fn whole(memory: Memory) -> Self {
        Self {
            content_bytes: memory.content.len(),
            content_truncated: false,
            memory,
        }
    }

    /// The memory with its content cut to at most `max_bytes` bytes, on a
    /// character boundary.
    pub fn bounded(mut memory: Memory, max_bytes: usize) -> Self {
        let content_bytes = memory.content.len();
        let content_truncated = content_bytes > max_bytes;
        if content_truncated {
            let mut end = max_bytes;
            while !memory.content.is_char_boundary(end) {
                end -= 1;
            }
            memory.content.truncate(end);
        }
        Self {
            memory,
            content_truncated,
            content_bytes,
        }
    }
}

/// One recall hit.
#[derive(Clone, Debug, Serialize)]
pub struct HitView {
    /// The memory (content bounded).
    pub memory: MemoryView,
    /// Final score; hits are sorted by it, best first.
    pub score: f64,
    /// The per-signal ranks and scores behind `score`.
    pub signals: SignalScores,
}

/// The answer to a recall.
#[derive(Clone, Debug, Serialize)]
pub struct RecallView {
    /// Best first, at most `limit`.
    pub hits: Vec<HitView>,
    /// The limit that applied (never above `recall_results_max`).
    pub limit: u32,
    /// True when more memories matched than were returned.
    pub truncated: bool,
    /// Set when hybrid recall lost its vector signal: the embedder's error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
}

/// A page of `list`.
#[derive(Clone, Debug, Serialize)]
pub struct ListView {
    /// The memories (content bounded).
    pub memories: Vec<MemoryView>,
    /// The page size that applied.
    pub limit: u32,
    /// Rows skipped.
    pub offset: u64,
}

/// A memory of a neighbourhood other than the centre.
#[derive(Clone, Debug, Serialize)]
pub struct NeighbourView {
    /// The memory (content bounded).
    pub memory: MemoryView,
    /// Hops from the centre.
    pub hop: u32,
    /// The memory it was first reached from.
    pub via: MemoryId,
}

/// The answer to `context`: a memory with its linked neighbourhood.
#[derive(Clone, Debug, Serialize)]
pub struct ContextView {
    /// The memory asked for, whole.
    pub memory: MemoryView,
    /// The memories reached, nearest first (contents bounded).
    pub neighbours: Vec<NeighbourView>,
    /// Every link followed, once: `source`, `target`, `link_type`, `from`
    /// (the memory it was followed from), `direction` (`outgoing` or
    /// `incoming` as seen from `from`), `hop`.
    pub edges: Vec<ContextEdge>,
    /// The hops that applied.
    pub hops: u32,
    /// The fan-out that applied.
    pub fan_out: u32,
    /// The most memories the answer could hold, the centre included.
    pub limit: u32,
    /// True when more memories were within reach than returned.
    pub truncated: bool,
}

/// What `forget` did.
#[derive(Clone, Debug, Serialize)]
pub struct ForgetView {
    /// The memory.
    pub id: MemoryId,
    /// `archived` or `deleted`.
    pub status: &'static str,
}

/// What `link` did.
#[derive(Clone, Debug, Serialize)]
pub struct LinkView {
    /// The memory the link starts from.
    pub id: MemoryId,
    /// `linked`.
    pub status: &'static str,
    /// The memory it points to.
    pub target: MemoryId,
    /// The relation.
    pub link_type: mnemosyne_core::LinkType,
}

/// The memory operations of the servers: store, publish, bound.
#[derive(Clone, Debug)]
pub struct Memories {
    store: MemoryStore,
    events: EventBus,
}

impl Memories {
    /// Operations on `store` that publish on `events`.
    pub fn new(store: MemoryStore, events: EventBus) -> Self {
        Self { store, events }
    }

    /// The store.
    pub fn store(&self) -> &MemoryStore {
        &self.store
    }

    fn content_max(&self) -> usize {
        self.store.limits().result_content_bytes_max as usize
    }

    /// Stores a memory; publishes `remembered`.
    pub async fn remember(&self, params: RememberParams) -> Result<MemoryView, ApiError> {
        let memory = self.store.remember(params.into_new_memory()?).await?;
        self.events.publish(Event::Remembered {
            id: memory.id,
            namespace: memory.namespace.clone(),
        });
        Ok(MemoryView::whole(memory))
    }

    /// One memory, whole.
    pub async fn get(&self, id: &str) -> Result<MemoryView, ApiError> {
        let memory = self.store.get(memory_id(id)?).await?;
        Ok(MemoryView::whole(memory))
    }

    /// Changes some fields; publishes `updated`.
    pub async fn update(&self, id: &str, fields: UpdateFields) -> Result<MemoryView, ApiError> {
        let id = memory_id(id)?;
        let memory = self.store.update(id, fields.into_patch()?).await?;
        self.events.publish(Event::Updated {
            id: memory.id,
            namespace: memory.namespace.clone(),
        });
        Ok(MemoryView::whole(memory))
    }

    /// Archives or deletes; publishes `forgotten`.
    pub async fn forget(&self, params: ForgetParams) -> Result<ForgetView, ApiError> {
        let id = memory_id(&params.id)?;
        self.store.forget(id, params.hard).await?;
        self.events.publish(Event::Forgotten {
            id,
            hard: params.hard,
        });
        Ok(ForgetView {
            id,
            status: if params.hard { "deleted" } else { "archived" },
        })
    }

    /// Links `source` to the target in `params`; publishes `linked`.
    pub async fn link(&self, source: &str, params: &LinkParams) -> Result<LinkView, ApiError> {
        let source = memory_id(source)?;
        let link = link(&params.target, params.link_type.as_deref())?;
        self.store.link(source, link.target, link.link_type).await?;
        self.events.publish(Event::Linked {
            source,
            target: link.target,
            link_type: link.link_type,
        });
        Ok(LinkView {
            id: source,
            status: "linked",
            target: link.target,
            link_type: link.link_type,
        })
    }

    /// A page of memories, contents bounded.
    pub async fn list(&self, params: ListParams) -> Result<ListView, ApiError> {
        let query = params.into_query()?;
        let (limit, offset) = (query.limit, query.offset);
        let max = self.content_max();
        let memories = self.store.list(query).await?;
        Ok(ListView {
            memories: memories
                .into_iter()
                .map(|m| MemoryView::bounded(m, max))
                .collect(),
            limit,
            offset,
        })
    }

    /// One memory, whole, with its linked neighbourhood (contents bounded).
    pub async fn context(&self, params: ContextParams) -> Result<ContextView, ApiError> {
        let found = self.store.context(params.into_query()?).await?;
        let max = self.content_max();
        Ok(ContextView {
            memory: MemoryView::whole(found.memory),
            neighbours: found
                .neighbours
                .into_iter()
                .map(|n| NeighbourView {
                    memory: MemoryView::bounded(n.memory, max),
                    hop: n.hop,
                    via: n.via,
                })
                .collect(),
            edges: found.edges,
            hops: found.hops,
            fan_out: found.fan_out,
            limit: found.limit,
            truncated: found.truncated,
        })
    }

    /// Ranked memories, at most `recall_results_max`, contents bounded.
    pub async fn recall(&self, params: RecallParams) -> Result<RecallView, ApiError> {
        let recall = self.store.recall(params.into_query()?).await?;
        let max = self.content_max();
        Ok(RecallView {
            hits: recall
                .hits
                .into_iter()
                .map(|hit| HitView {
                    memory: MemoryView::bounded(hit.memory, max),
                    score: hit.score,
                    signals: hit.signals,
                })
                .collect(),
            limit: recall.limit,
            truncated: recall.truncated,
            degraded: recall.degraded,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemosyne_core::{Limits, NewMemory, timestamp_now};

    #[test]
    fn bounded_content_is_cut_on_a_character_boundary_and_marked() {
        let memory = NewMemory::new("ééééé")
            .into_memory(&Limits::default(), timestamp_now())
            .unwrap();
        let view = MemoryView::bounded(memory.clone(), 3);
        assert_eq!(view.memory.content, "é");
        assert!(view.content_truncated);
        assert_eq!(view.content_bytes, 10);
        let view = MemoryView::bounded(memory, 10);
        assert!(!view.content_truncated);
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["content_truncated"], false);
        assert_eq!(json["content"], "ééééé");
    }
}
