//! `mnemosyne hook EVENT`: a Claude Code hook. It reads the event's JSON on
//! stdin and prints `{"hookSpecificOutput": {"hookEventName", "additionalContext"}}`:
//!
//! - `SessionStart`: the project's most important and most recent memories,
//!   the user's most important global ones, open work items and the names
//!   of the project's context documents, within `hook_session_start_bytes_max`;
//! - `UserPromptSubmit`: the memories a recall on the prompt finds at or
//!   above `hook_similarity_min_percent`, at most `hook_prompt_hits_max`,
//!   none given to the session before, within `hook_prompt_bytes_max`;
//!   nothing at all when nothing is relevant.
//!
//! It fails open: any problem (no database, a locked one, a bad payload, an
//! unknown event, `hook_time_budget_ms` passed) prints nothing on stdout,
//! one line on stderr, and exits 0. A memory store must never block or
//! break a session; exit 2 would even erase the user's prompt.

mod context;
mod input;
mod render;
mod report;
mod seen;

use std::time::Duration;

use anyhow::{Context, Result, bail};
use mnemosyne_core::Namespace;
use serde::Serialize;

pub use input::Event;
use input::HookInput;
pub use report::report;

use crate::cli::HookArgs;
use crate::config::Settings;

/// What Claude Code reads on stdout.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct HookOutput<'a> {
    hook_specific_output: SpecificOutput<'a>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct SpecificOutput<'a> {
    hook_event_name: &'a str,
    additional_context: &'a str,
}

/// Runs the hook; never fails (see the module's text).
pub async fn run(args: HookArgs, settings: &Settings) -> Result<()> {
    let budget = Duration::from_millis(settings.limits.hook_time_budget_ms);
    let answered = tokio::time::timeout(budget, answer(args, settings)).await;
    let outcome = match answered {
        Ok(outcome) => outcome,
        Err(_) => Err(anyhow::anyhow!(
            "no answer within {} ms (hook_time_budget_ms); nothing added",
            budget.as_millis()
        )),
    };
    match outcome {
        Ok(Some((event, text))) => {
            let output = HookOutput {
                hook_specific_output: SpecificOutput {
                    hook_event_name: event.name(),
                    additional_context: &text,
                },
            };
            let line = serde_json::to_string(&output)?;
            println!("{line}");
        }
        Ok(None) => {}
        Err(error) => report(&error),
    }
    Ok(())
}

/// The event answered and the context to add, if any.
async fn answer(args: HookArgs, settings: &Settings) -> Result<Option<(Event, String)>> {
    let limits = &settings.limits;
    let bytes = input::read_stdin(limits.hook_input_bytes_max)?;
    let input = HookInput::parse(&bytes)?;
    let named = args.event.as_deref().or(input.hook_event_name.as_deref());
    let Some(named) = named else {
        bail!("no event: give one (mnemosyne hook SessionStart) or send hook_event_name");
    };
    let Some(event) = Event::parse(named) else {
        bail!(
            "event {:?} is not one mnemosyne answers (SessionStart, UserPromptSubmit); nothing added",
            render::cut_bytes(named, 64)
        );
    };
    if let Some(sent) = input.hook_event_name.as_deref()
        && Event::parse(sent) != Some(event)
    {
        bail!(
            "the input is a {:?} event, not {}: check the hook's configuration",
            render::cut_bytes(sent, 64),
            event.name()
        );
    }
    let namespace = namespace(args.namespace.as_deref(), &input)?;
    // A hook reads; it does not create a database where there is none.
    if let mnemosyne_storage::Location::File(path) = &settings.location
        && !path.exists()
    {
        bail!("no database at {}; nothing added", path.display());
    }
    let seen = seen::SeenStore::new(
        state_dir(settings)?,
        limits.hook_sessions_max,
        limits.hook_session_ids_max,
    );
    let text = match event {
        Event::SessionStart => {
            Some(context::session_start(settings, &namespace, &input, &seen).await?)
        }
        Event::UserPromptSubmit => context::prompt(settings, &namespace, &input, &seen).await?,
    };
    Ok(text.map(|text| (event, text)))
}

/// `--namespace`, else the project of the input's `cwd` (else of ours).
fn namespace(given: Option<&str>, input: &HookInput) -> Result<Namespace> {
    if let Some(text) = given {
        return text.parse().context("--namespace");
    }
    let cwd = match &input.cwd {
        Some(cwd) => cwd.clone(),
        None => std::env::current_dir().context("cannot read the working directory")?,
    };
    Ok(crate::project::detect(&cwd)?.namespace)
}

/// Where session state lives: beside a database file, else in the
/// platform's data directory.
fn state_dir(settings: &Settings) -> Result<std::path::PathBuf> {
    match &settings.location {
        mnemosyne_storage::Location::File(path) => Ok(seen::dir_beside(path)),
        mnemosyne_storage::Location::Remote { .. } => {
            directories::ProjectDirs::from("", "", "mnemosyne")
                .map(|dirs| dirs.data_local_dir().join("hook-sessions"))
                .context("no home directory for the hooks' session state")
        }
    }
}
