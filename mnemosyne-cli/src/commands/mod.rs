//! One module per group of subcommands. Each command checks what it can
//! before opening the store, opens it through [`with_store`], and closes it
//! before returning, on success, error or Ctrl-C.

mod config;
mod context;
mod diagnostics;
mod doc;
mod doctor;
mod export;
pub mod hook;
mod import;
mod import_common;
mod import_original;
mod import_record;
mod memory;
mod original_format;
mod original_reader;
mod reindex;
mod serve;
mod work;

use std::io::Read;

use anyhow::{Context, Result, bail};
use mnemosyne_core::Limits;
use mnemosyne_embed::{EmbedderParts, build_embedder_parts};
use mnemosyne_storage::{Location, MemoryStore};

use crate::cli::Command;
use crate::config::Settings;
use crate::output::Output;

/// The user pressed Ctrl-C; the store was closed.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Runs one subcommand.
pub async fn run(command: Command, settings: &Settings, out: Output) -> Result<()> {
    match command {
        Command::Remember(args) => memory::remember(args, settings, out).await,
        Command::Recall(args) => memory::recall(args, settings, out).await,
        Command::Get(args) => memory::get(args, settings, out).await,
        Command::Update(args) => memory::update(args, settings, out).await,
        Command::Forget(args) => memory::forget(args, settings, out).await,
        Command::Link(args) => memory::link(args, settings, out).await,
        Command::List(args) => memory::list(args, settings, out).await,
        Command::Context(args) => context::run(args, settings, out).await,
        Command::Count(args) => memory::count(args, settings, out).await,
        Command::Export(args) => export::run(args, settings, out).await,
        Command::Import(args) => import::run(args, settings, out).await,
        Command::Reindex => reindex::run(settings, out).await,
        Command::Config => config::run(settings, out),
        Command::Work(args) => work::run(args.command, settings, out).await,
        Command::Diagnostics(args) => diagnostics::run(args, settings, out).await,
        Command::Doctor => doctor::run(settings, out).await,
        Command::Doc(command) => doc::run(command, settings, out).await,
        Command::Serve(command) => serve::run(command, settings).await,
        Command::Hook(args) => hook::run(args, settings).await,
    }
}

/// Opens the store (creating the database's directory), with the embedder
/// of the settings.
async fn open_store(settings: &Settings) -> Result<MemoryStore> {
    open_store_with_embedder(settings, &embedder_parts(settings)?).await
}

/// The embedder of the settings, not loaded yet (a local model loads on
/// first use, or with [`mnemosyne_embed::MiniLmEmbedder::preload`]).
fn embedder_parts(settings: &Settings) -> Result<EmbedderParts> {
    build_embedder_parts(&settings.embedder, &settings.limits).context("cannot set up the embedder")
}

/// [`open_store`] with an embedder already built (for a server, which
/// loads the model before it opens the database and reads its gauges).
async fn open_store_with_embedder(
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
async fn with_store<T>(
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

/// The text of `arg`, or stdin when it is `-` (one trailing newline removed),
/// read no further than the content limit allows.
fn content_arg(arg: String, limits: &Limits) -> Result<String> {
    if arg != "-" {
        return Ok(arg);
    }
    let max = u64::from(limits.memory_content_bytes_max);
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 2)
        .read_to_end(&mut bytes)
        .context("cannot read the content from stdin")?;
    if bytes.ends_with(b"\n") {
        bytes.pop();
        if bytes.ends_with(b"\r") {
            bytes.pop();
        }
    }
    if bytes.len() as u64 > max {
        bail!(
            "invalid input: content on stdin is over the limit of {max} bytes (memory_content_bytes_max)"
        );
    }
    String::from_utf8(bytes).context("content on stdin is not valid UTF-8")
}
