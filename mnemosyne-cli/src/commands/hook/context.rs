//! The two contexts: what a session starts with, and what a prompt brings up.

use anyhow::Result;
use chrono::Utc;
use mnemosyne_core::{ListQuery, ListSort, Memory, MemoryId, Namespace, WorkState};
use mnemosyne_ics::DocumentStore;
use mnemosyne_storage::{MemoryStore, RecallMode, RecallQuery};

use super::input::HookInput;
use super::render::{self, Budget};
use super::seen::{Seen, SeenStore};
use crate::commands::store_session::with_store;
use crate::config::Settings;

/// Memories of the project listed by importance, and again by recency.
pub const SESSION_MEMORIES_MAX: u32 = 12;
/// The user's global memories listed by importance (for a project session).
pub const SESSION_GLOBAL_MEMORIES_MAX: u32 = 5;
/// Open work items listed per state (pending, claimed).
pub const SESSION_WORK_ITEMS_MAX: u32 = 5;
/// Context documents named.
pub const SESSION_DOCUMENTS_MAX: u32 = 20;
/// Share of the SessionStart budget the memories may fill, in percent: the
/// rest is kept for work items and document names.
pub const SESSION_MEMORIES_SHARE_PERCENT: usize = 75;
/// Recall candidates looked at per hit wanted (some are below the floor or
/// were given before).
pub const PROMPT_CANDIDATES_PER_HIT: u32 = 4;
/// A prompt shorter than this (in characters, trimmed) recalls nothing.
pub const PROMPT_CHARS_MIN: usize = 3;

/// SessionStart's context (never empty: with nothing stored it says so).
pub async fn session_start(
    settings: &Settings,
    namespace: &Namespace,
    input: &HookInput,
    seen_store: &SeenStore,
) -> Result<String> {
    let mut seen = open_seen(seen_store, input);
    // A new, cleared or compacted context holds none of what was given.
    let fresh = !matches!(input.source.as_deref(), Some("resume" | "fork"));
    if fresh && let Some(seen) = &mut seen {
        seen.clear();
    }
    let limits = &settings.limits;
    let (memories, global, work, documents) = with_store(settings, async |store| {
        let memories = project_memories(store, namespace).await?;
        let global = if *namespace == Namespace::Global {
            Vec::new()
        } else {
            store
                .list(ListQuery {
                    namespace: Some(Namespace::Global),
                    sort: ListSort::Importance,
                    limit: SESSION_GLOBAL_MEMORIES_MAX,
                    ..ListQuery::default()
                })
                .await?
        };
        let mut work = Vec::new();
        for state in [WorkState::Claimed, WorkState::Pending] {
            work.extend(
                store
                    .storage()
                    .list_work_items(Some(state), None, SESSION_WORK_ITEMS_MAX, 0)
                    .await?,
            );
        }
        let docs = DocumentStore::new(store.storage().clone(), limits.clone());
        let mut documents = docs.list(Some(namespace), SESSION_DOCUMENTS_MAX, 0).await?;
        if *namespace != Namespace::Global {
            documents.extend(
                docs.list(Some(&Namespace::Global), SESSION_DOCUMENTS_MAX, 0)
                    .await?,
            );
        }
        Ok((memories, global, work, documents))
    })
    .await?;

    let bytes_max = limits.hook_session_start_bytes_max;
    let mut budget = Budget::new(bytes_max);
    budget.push_cut(&format!(
        "Mnemosyne, the memory server, holds these notes for {namespace}. \
         Each is a memory an agent or the user stored earlier; the memory tools' `get` with its id returns it whole."
    ));
    let memory_floor = budget.remaining() * (100 - SESSION_MEMORIES_SHARE_PERCENT) / 100;
    let now = Utc::now();
    let mut given = Vec::new();
    if memories.is_empty() {
        budget.push_cut(&format!(
            "No memories are stored for {namespace} yet: `remember` keeps decisions, fixed bugs with their cause, and conventions."
        ));
    }
    for (title, list) in [
        (
            format!("Memories of {namespace}, most important first, then most recent:"),
            &memories,
        ),
        (
            "The user's most important global memories:".to_owned(),
            &global,
        ),
    ] {
        if list.is_empty() || budget.remaining() <= memory_floor {
            continue;
        }
        budget.push(&title);
        for memory in list {
            let line = render::memory_line(memory, now);
            if budget.remaining() < memory_floor + line.len() + 1 || !budget.push(&line) {
                break;
            }
            given.push(memory.id);
        }
    }
    if !work.is_empty() && budget.push("Open work items in the shared queue:") {
        for item in &work {
            if !budget.push(&render::work_line(item)) {
                break;
            }
        }
    }
    if !documents.is_empty() {
        let names: Vec<String> = documents
            .iter()
            .map(|d| format!("{} ({})", render::one_line(&d.name, 64), d.namespace))
            .collect();
        budget.push_cut(&format!(
            "Context documents (the doc tools read them): {}",
            names.join(", ")
        ));
    }
    if let Some(mut seen) = seen {
        for id in given {
            seen.add(id);
        }
        save_seen(seen_store, &seen);
    }
    Ok(budget.into_text())
}

/// The project's memories: most important first, then most recent, no repeats.
async fn project_memories(store: &MemoryStore, namespace: &Namespace) -> Result<Vec<Memory>> {
    let mut memories = Vec::new();
    for sort in [ListSort::Importance, ListSort::Recent] {
        for memory in store
            .list(ListQuery {
                namespace: Some(namespace.clone()),
                sort,
                limit: SESSION_MEMORIES_MAX,
                ..ListQuery::default()
            })
            .await?
        {
            if !memories.iter().any(|m: &Memory| m.id == memory.id) {
                memories.push(memory);
            }
        }
    }
    Ok(memories)
}

/// UserPromptSubmit's context, or `None` when nothing is relevant.
pub async fn prompt(
    settings: &Settings,
    namespace: &Namespace,
    input: &HookInput,
    seen_store: &SeenStore,
) -> Result<Option<String>> {
    let limits = &settings.limits;
    let text = input.prompt.as_deref().unwrap_or("").trim();
    if text.chars().count() < PROMPT_CHARS_MIN {
        return Ok(None);
    }
    let text = render::cut_bytes(text, limits.recall_query_bytes_max as usize).to_owned();
    let mut seen = open_seen(seen_store, input);
    let floor = f64::from(limits.hook_similarity_min_percent) / 100.0;
    let wanted = limits.hook_prompt_hits_max;
    let recall = with_store(settings, async |store| {
        Ok(store
            .recall(RecallQuery {
                text,
                namespace: Some(namespace.clone()),
                tags: Vec::new(),
                limit: Some(wanted.saturating_mul(PROMPT_CANDIDATES_PER_HIT)),
                include_archived: false,
                mode: RecallMode::Hybrid,
                min_importance: None,
            })
            .await?)
    })
    .await?;
    if let Some(reason) = &recall.degraded {
        anyhow::bail!("recall had no vectors ({reason}); nothing added");
    }
    let hits: Vec<&Memory> = recall
        .hits
        .iter()
        .filter(|hit| hit.signals.similarity.is_some_and(|s| s >= floor))
        .map(|hit| &hit.memory)
        .filter(|memory| !seen.as_ref().is_some_and(|s| s.contains(&memory.id)))
        .take(wanted as usize)
        .collect();
    if hits.is_empty() {
        return Ok(None);
    }
    let mut budget = Budget::new(limits.hook_prompt_bytes_max);
    budget.push_cut(
        "Mnemosyne memories that may bear on this prompt (stored earlier by an agent or the user; \
         the memory tools' `get` with an id returns one whole):",
    );
    let now = Utc::now();
    let mut given: Vec<MemoryId> = Vec::new();
    for memory in hits {
        // Whole lines only: a line cut short would lose its id.
        if !budget.push(&render::memory_line(memory, now)) {
            break;
        }
        given.push(memory.id);
    }
    if given.is_empty() {
        return Ok(None);
    }
    if let Some(mut seen) = seen.take() {
        for id in given {
            seen.add(id);
        }
        save_seen(seen_store, &seen);
    }
    Ok(Some(budget.into_text()))
}

/// The session's state, or `None` (and a line on stderr) without a usable id.
fn open_seen(store: &SeenStore, input: &HookInput) -> Option<Seen> {
    let id = input.session_id.as_deref()?;
    match store.open(id) {
        Ok(seen) => Some(seen),
        Err(error) => {
            super::report::report(&error.context("memories given earlier are not tracked"));
            None
        }
    }
}

/// Saves the session's state; a failure costs repeats, not the answer.
fn save_seen(store: &SeenStore, seen: &Seen) {
    if let Err(error) = store.save(seen) {
        super::report::report(&error.context("memories given now may be repeated"));
    }
}
