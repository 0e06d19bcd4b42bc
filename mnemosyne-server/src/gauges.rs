//! The gauges the server itself registers with its tracker (its parts'
//! own, the pool's and the work queue's, come from
//! `mnemosyne_diagnostics::MemoryTracker`): the open documents, the event
//! bus and the embedding worker.

use std::sync::Arc;

use mnemosyne_diagnostics::{Gauge, MemoryTracker, TrackerError};
use mnemosyne_storage::EmbeddingBacklog;

use crate::shared_core::Core;

/// Tracker gauges of the open CRDT documents and of the event bus
/// (its lag counter is a counter, rendered with the request counters). The
/// source holds the core weakly: the tracker lives inside it.
pub(crate) fn watch_documents_and_events(core: &Arc<Core>) {
    let weak = Arc::downgrade(core);
    let limits = &core.limits;
    let (docs_max, ops_max, connections_max) = (
        u64::from(limits.doc_open_max),
        u64::from(limits.crdt_compact_every_ops),
        u64::from(limits.http_connections_max),
    );
    // The second source of a fresh tracker: cannot be refused.
    let _ = core.tracker.register("documents_and_events", move |gauges| {
        let Some(core) = weak.upgrade() else {
            return;
        };
        let docs = core.docs.store();
        gauges.push(
            Gauge::new(
                "mnemosyne_docs_open",
                "context documents held open in memory (doc_open_max)",
                docs.open_count() as u64,
            )
            .with_max(docs_max),
        );
        gauges.push(
            Gauge::new(
                "mnemosyne_crdt_ops_since_compaction",
                "most CRDT operations an open document holds since its last compaction (crdt_compact_every_ops)",
                docs.open_ops_since_compaction_max(),
            )
            .with_cap(ops_max),
        );
        gauges.push(
            Gauge::new(
                "mnemosyne_event_subscribers",
                "event subscribers alive (SSE streams; each holds an HTTP connection)",
                core.events.subscribers() as u64,
            )
            .with_max(connections_max),
        );
    });
}

/// Tracker gauges of the embedding worker: the backlog against
/// `embedding_backlog_max`, vectors stored and failed batches since start,
/// and the memories still missing a vector.
pub(crate) fn watch_embedding_worker(
    tracker: &MemoryTracker,
    backlog: Arc<EmbeddingBacklog>,
) -> Result<(), TrackerError> {
    tracker.register("embedding_worker", move |gauges| {
        gauges.push(
            Gauge::new(
                "mnemosyne_embedding_backlog",
                "remembered memories waiting for their vector, queued or being embedded (embedding_backlog_max)",
                backlog.waiting(),
            )
            .with_max(backlog.capacity().into()),
        );
        gauges.push(Gauge::new(
            "mnemosyne_embeddings_stored_total",
            "vectors the embedding worker stored since start",
            backlog.embedded_total(),
        ));
        gauges.push(Gauge::new(
            "mnemosyne_embedding_errors_total",
            "embedding batches that failed (embedder or store) since start; each was kept and retried",
            backlog.errors_total(),
        ));
        if let Some(missing) = backlog.missing() {
            gauges.push(Gauge::new(
                "mnemosyne_embeddings_missing",
                "memories with no vector on disk, as the embedding worker last counted them",
                missing,
            ));
        }
    })
}
