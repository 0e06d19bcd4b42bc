//! `reindex`: re-embeds every memory whose vector is missing or was made by
//! another embedder than the configured one, the way a server's embedding
//! worker embeds ([`MemoryStore::embed_pending`]): `reindex_batch_rows` read
//! at a time, `embedding_batch_max` texts per embedder call, each batch
//! committed on its own, so an interrupted reindex loses at most one batch
//! of work and the next run resumes. The progress bar counts the texts
//! embedded.
//!
//! [`MemoryStore::embed_pending`]: mnemosyne_storage::MemoryStore::embed_pending

use anyhow::Result;
use mnemosyne_core::PendingKind;
use serde::Serialize;

use super::store_session::with_store;
use crate::config::Settings;
use crate::output::Output;

/// What `reindex` prints.
#[derive(Debug, Serialize)]
struct ReindexReport {
    /// The embedder's model id.
    model: String,
    /// Memories re-embedded by this run.
    embedded: u64,
}

pub async fn run(settings: &Settings, out: Output) -> Result<()> {
    let report = with_store(settings, async |store| {
        let model = store
            .embedder()
            .map(|e| e.model_id().to_owned())
            .unwrap_or_default();
        let pending = store.pending_reindex().await?;
        tracing::info!(pending, model = %model, "reindexing");
        let bar = out.progress(pending, "embedded");
        let embedded = store
            .embed_pending(PendingKind::MissingOrStale, |done| bar.inc(done))
            .await?;
        bar.finish_and_clear();
        Ok(ReindexReport { model, embedded })
    })
    .await?;
    out.emit(&report, |w| {
        writeln!(
            w,
            "re-embedded {} memories with {}",
            report.embedded, report.model
        )
    })
}
