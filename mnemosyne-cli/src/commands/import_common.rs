//! What both imports share (`import` of JSON lines and
//! `import --from-original`): the bound on one line of a valid memory, and
//! the last pass, which embeds the memories that have no vector.

use mnemosyne_core::{Limits, PendingKind};
use mnemosyne_storage::MemoryStore;

use crate::output::Output;

/// Room for ids, times, names and punctuation on one line, beyond the text fields.
const LINE_OVERHEAD_BYTES: u64 = 64 * 1024;
/// Room for one link on a line (`{"target":"<uuid>","link_type":"derived_from"}`).
const LINK_BYTES_MAX: u64 = 128;

/// The last pass of an import: embeds every memory without a vector, as
/// a server's embedding worker does, with a progress bar; `embedded`
/// counts the vectors stored.
pub(super) async fn embed_missing(
    store: &MemoryStore,
    out: Output,
    embedded: &mut u64,
) -> Result<(), mnemosyne_core::Error> {
    if store.embedder().is_none() {
        return Ok(());
    }
    let missing = store.pending_count(PendingKind::Missing).await?;
    let bar = out.progress(missing, "embedded");
    let outcome = store
        .embed_pending(PendingKind::Missing, |done| {
            *embedded += done;
            bar.inc(done);
        })
        .await;
    match outcome {
        Ok(_) => bar.finish_and_clear(),
        Err(_) => bar.abandon(),
    }
    outcome.map(|_| ())
}

/// Why the last pass failed: everything is imported but some vectors.
pub(super) fn embedding_stopped(
    inserted: u64,
    skipped: u64,
    embedded: u64,
    error: &mnemosyne_core::Error,
) -> String {
    format!(
        "imported {inserted} memories ({skipped} skipped) and their links, {embedded} vectors made; embedding stopped: {error}; \
         run `mnemosyne reindex` (or start the server) to embed the rest"
    )
}

/// Longest line a valid memory can take: JSON writes a byte of text as at
/// most 6 (`\u00XX`); ids, times and names fit in the overhead.
pub(super) fn line_bytes_max(limits: &Limits) -> u64 {
    let text_bytes = u64::from(limits.memory_content_bytes_max)
        + u64::from(limits.memory_summary_bytes_max)
        + u64::from(limits.memory_tags_max) * (u64::from(limits.tag_bytes_max) + 3);
    6 * text_bytes + u64::from(limits.memory_links_max) * LINK_BYTES_MAX + LINE_OVERHEAD_BYTES
}
