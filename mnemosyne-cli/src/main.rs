//! `mnemosyne`: the command-line interface of the Mnemosyne memory server.
//!
//! Data goes to stdout, logs and progress bars to stderr. With `--json`
//! every command prints one line of stable JSON (see `JSON.md` beside
//! `Cargo.toml`):
//!
//! - `remember`, `get`, `update`: the memory, as `mnemosyne_core::Memory`
//!   serialises it (`id`, `namespace`, `content`, `summary`, `memory_type`,
//!   `importance`, `tags`, `links` (`target`, `link_type`), `created_at`,
//!   `updated_at`, `accessed_at`, `access_count`, `archived`);
//! - `recall`: `mnemosyne_storage::Recall`: `{"hits": [{"memory", "score",
//!   "signals"}], "limit", "truncated"}`;
//! - `list`: `{"memories": [...]}`; `count`: `{"count", "include_archived"}`;
//! - `context`: `mnemosyne_storage::Neighbourhood`: `{"memory", "neighbours":
//!   [{"memory", "hop", "via"}], "edges": [{"source", "target", "link_type",
//!   "from", "direction", "hop"}], "hops", "fan_out", "limit", "truncated"}`;
//! - `forget`: `{"id", "status": "archived" | "deleted"}`; `link`: `{"id",
//!   "status": "linked", "target", "link_type"}`;
//! - `export`: JSON lines, one memory per line (`-o FILE` then prints
//!   `{"exported", "file", "include_archived"}`); `import`: `{"file",
//!   "memories", "inserted", "skipped", "links_added", "links_missing",
//!   "complete"}` plus `stopped_at_line` and `error` when it stopped early
//!   (`import --from-original`: its own report, in JSON.md);
//! - `config`: `{"backend", "config_file", "db", "db_source", "limits"}`;
//! - `work submit|heartbeat|complete|fail|cancel|review|show`: the work item
//!   as `mnemosyne_core::WorkItem` serialises it; `work claim`: `{"item"}`
//!   (null when none is ready); `work list`: `{"items"}`; `work stats`:
//!   `{"queue", "stored"}`;
//! - `diagnostics`: `{"snapshot", "alerts"}`; `doctor`: `{"ok", "checks"}`.
//! - `doc list`: `{"documents": [meta]}`; `doc show`: meta, `heads`, `text`;
//!   `doc write | edit | compact | undo | redo`: `{"status", meta, "heads",
//!   "changed", "splices", "inserted_chars", "deleted_chars", "compacted",
//!   "undo_depth", "redo_depth"}`; `doc history`: meta, `records`, `undo`;
//!   `doc delete`: `{"name", "status"}`.
//!
//! Exit codes: 0 success, 1 error (one line `error: <reason>` on stderr,
//! nothing changed unless the reason says how far it got), 2 bad command
//! line, 130 interrupted by Ctrl-C.

// The binary is where output belongs: the workspace lints against printing
// for the sake of the libraries.
#![allow(clippy::print_stdout, clippy::print_stderr)]

#[cfg(not(any(feature = "sqlite", feature = "libsql")))]
compile_error!(
    "mnemosyne-cli needs a storage backend: enable the `sqlite` feature (the default) or `libsql`"
);

#[cfg(all(feature = "sqlite", feature = "libsql"))]
compile_error!(
    "features `sqlite` and `libsql` of mnemosyne-cli are mutually exclusive: both bundle SQLite \
     and cannot be linked into one binary; build with `--no-default-features --features libsql` \
     for libsql"
);

#[cfg(all(feature = "jemalloc", target_os = "linux"))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

mod cli;
mod commands;
mod config;
mod fd_limit;
mod output;
mod project;
mod work_cli;

use std::io::{self, IsTerminal};
use std::process::ExitCode;
use std::time::Duration;

use clap::parser::ValueSource;
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, GlobalArgs};
use crate::commands::Interrupted;
use crate::config::{ConfigInputs, DbSource};
use crate::output::Output;

/// Worker threads of the runtime: the store does its blocking work on its
/// own pool, so the CLI needs few.
const WORKER_THREADS: usize = 2;

/// A blocking thread with nothing to do for this long ends (tokio's
/// default, passed explicitly); `blocking_threads_max` bounds how many run.
const BLOCKING_THREAD_IDLE_S: u64 = 10;

/// Time the runtime gives its blocking threads when the command is done.
const RUNTIME_SHUTDOWN_MS: u64 = 1_000;

/// Exit code for a command line clap refused.
const EXIT_USAGE: u8 = 2;
/// Exit code after Ctrl-C (128 + SIGINT).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let matches = match Cli::command().try_get_matches() {
        Ok(matches) => matches,
        Err(e) => return clap_exit(e),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return clap_exit(e),
    };
    init_tracing(cli.global.verbose);
    let db_source = match matches.value_source("db") {
        Some(ValueSource::EnvVariable) => DbSource::Env,
        _ => DbSource::Flag,
    };
    let is_hook = matches!(cli.command, cli::Command::Hook(_));
    match run(cli, db_source) {
        Ok(()) => ExitCode::SUCCESS,
        // A hook fails open: whatever went wrong (a bad config file, a
        // runtime that would not start), the session goes on.
        Err(e) if is_hook => {
            commands::hook::report(&e);
            ExitCode::SUCCESS
        }
        Err(e) if e.downcast_ref::<Interrupted>().is_some() => {
            eprintln!("error: interrupted");
            ExitCode::from(EXIT_INTERRUPTED)
        }
        Err(e) if is_broken_pipe(&e) => {
            // The reader went away (`mnemosyne export | head`): not an error.
            ExitCode::SUCCESS
        }
        Err(e) => {
            let message = format!("{e:#}").replace(['\n', '\r'], " ");
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli, db_source: DbSource) -> anyhow::Result<()> {
    let Cli { global, command } = cli;
    let settings = config::load(config_inputs(&global, db_source))?;
    // Before the runtime's threads exist: their arenas take the setting too.
    mnemosyne_diagnostics::AllocatorStats::configure_decay(
        settings.limits.allocator_dirty_decay_ms,
    )?;
    mnemosyne_diagnostics::AllocatorStats::configure_arenas(settings.limits.allocator_arenas_max)?;
    tracing::debug!(?settings, "effective configuration");
    let out = Output::new(global.json);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKER_THREADS)
        .max_blocking_threads(settings.limits.blocking_threads_max as usize)
        .thread_keep_alive(Duration::from_secs(BLOCKING_THREAD_IDLE_S))
        .thread_name("mnemosyne-cli")
        .enable_all()
        .build()?;
    let result = runtime.block_on(commands::run(command, &settings, out));
    // A blocking read of stdin (serve mcp on a terminal) cannot be cancelled:
    // do not wait for it.
    runtime.shutdown_timeout(Duration::from_millis(RUNTIME_SHUTDOWN_MS));
    result
}

fn config_inputs(global: &GlobalArgs, db_source: DbSource) -> ConfigInputs {
    ConfigInputs {
        db: global
            .db
            .clone()
            .filter(|db| !db.is_empty())
            .map(|db| (db, db_source)),
        config: global.config.clone().filter(|p| !p.as_os_str().is_empty()),
    }
}

/// Help and version as clap prints them; a refused command line as one line.
fn clap_exit(error: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    match error.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = error.print();
            ExitCode::from(u8::try_from(error.exit_code()).unwrap_or(EXIT_USAGE))
        }
        _ => {
            eprintln!("{}", one_line_clap_error(&error.render().to_string()));
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// The first paragraph of clap's message (`error: ...` up to the usage
/// block), joined into one line.
fn one_line_clap_error(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .take_while(|line| !line.trim().is_empty())
        .map(str::trim)
        .collect();
    let line = paragraph.join(" ");
    if line.starts_with("error:") {
        line
    } else {
        format!("error: {line}")
    }
}

fn init_tracing(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::try_new(&directives)
            .unwrap_or_else(|e| {
                eprintln!("warning: ignoring RUST_LOG ({e}); using {level}");
                EnvFilter::new(level)
            }),
        _ => EnvFilter::new(level),
    };
    tracing_subscriber::fmt()
        .with_writer(io::stderr)
        .with_ansi(io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line() {
        let error = Cli::command()
            .try_get_matches_from(["mnemosyne", "remember", "x", "--importance", "0"])
            .unwrap_err();
        let line = one_line_clap_error(&error.render().to_string());
        assert!(line.starts_with("error: invalid value '0'"), "{line}");
        assert!(line.contains("between 1 and 10"), "{line}");
        let error = Cli::command()
            .try_get_matches_from(["mnemosyne", "link", "x"])
            .unwrap_err();
        let line = one_line_clap_error(&error.render().to_string());
        assert!(!line.contains('\n') && line.starts_with("error:"), "{line}");
    }
}
