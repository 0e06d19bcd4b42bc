//! Opening the store for one command and closing it whatever happens.

use anyhow::{Context, Result};
use mnemosyne_embed::{EmbedderParts, build_embedder_parts};
use mnemosyne_storage::{Location, MemoryStore};

use crate::config::Settings;

/// The user pressed Ctrl-C; the store was closed.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Opens the store (creating the database's directory), with the embedder
/// of the settings.
async fn open_store(settings: &Settings) -> Result<MemoryStore> {
    open_store_with_embedder(settings, &embedder_parts(settings)?).await
}

/// The embedder of the settings, not loaded yet (a local model loads on
/// first use, or with [`mnemosyne_embed::MiniLmEmbedder::preload`]).
pub(super) fn embedder_parts(settings: &Settings) -> Result<EmbedderParts> {
    build_embedder_parts(&settings.embedder, &settings.limits).context("cannot set up the embedder")
}

/// [`open_store`] with an embedder already built (for a server, which
/// loads the model before it opens the database and reads its gauges).
pub(super) async fn open_store_with_embedder(
    settings: &Settings,
    embedder: &EmbedderParts,
) -> Result<MemoryStore> {
    if let Location::File(path) = &settings.location
        && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
    {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create directory {}", parent.display()))?;
    }
    tracing::info!(db = %settings.location, backend = mnemosyne_storage::BACKEND, "opening the database");
    let store = MemoryStore::open(&settings.location, settings.limits.clone())
        .await
        .with_context(|| format!("cannot open the database {}", settings.location))?
        .with_embedder(embedder.cache.clone());
    Ok(store)
}

/// Opens the store, runs `work` on it and closes it whatever happened. Ctrl-C
/// stops `work` at its next await point (an open transaction rolls back).
pub(crate) async fn with_store<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&MemoryStore) -> Result<T>,
) -> Result<T> {
    let store = open_store(settings).await?;
    let result = tokio::select! {
        result = work(&store) => result,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    };
    store.close().await;
    tracing::debug!("database closed");
    result
}
