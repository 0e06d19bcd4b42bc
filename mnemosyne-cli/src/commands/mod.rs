//! One module per group of subcommands. Each command checks what it can
//! before opening the store, opens it through
//! [`store_session::with_store`], and closes it before returning, on
//! success, error or Ctrl-C.

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
mod stdin_content;
pub(crate) mod store_session;
mod work;

use anyhow::Result;

pub use store_session::Interrupted;

use crate::cli::Command;
use crate::config::Settings;
use crate::output::Output;

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
