//! `reindex`: re-embeds every memory whose vector is missing or was made by
//! another embedder than the configured one, in batches of
//! `reindex_batch_rows`, each committed on its own: an interrupted reindex
//! loses at most one batch of work and the next run resumes.

use anyhow::Result;
use serde::Serialize;

use super::with_store;
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
        let bar = out.progress(pending, "memories");
        let mut embedded = 0;
        let mut after = None;
        loop {
            let (done, next) = store.reindex_step(after).await?;
            embedded += done;
            bar.inc(done);
            match next {
                Some(last) => after = Some(last),
                None => break,
            }
        }
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
