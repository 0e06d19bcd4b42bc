//! remember, recall, get, update, forget, link, list, count.

use anyhow::Result;
use mnemosyne_core::{LinkType, ListQuery, Memory, MemoryId, MemoryPatch, NewMemory};
use mnemosyne_storage::{Recall, RecallMode, RecallQuery};
use serde::Serialize;

use super::stdin_content::content_arg;
use super::store_session::with_store;
use crate::cli::{
    CountArgs, ForgetArgs, GetArgs, LinkArgs, ListArgs, RecallArgs, RememberArgs, UpdateArgs,
};
use crate::config::Settings;
use crate::output::{self, Output};

/// What `forget` and `link` print with `--json`.
#[derive(Debug, Serialize)]
struct Status {
    id: MemoryId,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<MemoryId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link_type: Option<LinkType>,
}

/// What `list` prints with `--json`.
#[derive(Debug, Serialize)]
struct MemoryList {
    memories: Vec<Memory>,
}

/// What `count` prints with `--json`.
#[derive(Debug, Serialize)]
struct Count {
    count: u64,
    include_archived: bool,
}

/// Tags given as filters, in the form tags are stored (trimmed, lower case).
fn filter_tags(tags: Vec<String>) -> Vec<String> {
    tags.into_iter().map(|t| t.trim().to_lowercase()).collect()
}

pub async fn remember(args: RememberArgs, settings: &Settings, out: Output) -> Result<()> {
    let new = NewMemory {
        namespace: args.namespace,
        content: content_arg(args.content, &settings.limits)?,
        summary: args.summary,
        memory_type: args.memory_type,
        importance: args.importance,
        tags: args.tags,
        links: args.links,
    };
    // Refuse invalid input before touching (or creating) the database; the
    // time stamp is a placeholder, the store stamps the real one.
    new.clone()
        .into_memory(&settings.limits, Default::default())?;
    let memory = with_store(settings, async |store| Ok(store.remember(new).await?)).await?;
    out.emit(&memory, |w| writeln!(w, "{}", memory.id))
}

pub async fn recall(args: RecallArgs, settings: &Settings, out: Output) -> Result<()> {
    let query = RecallQuery {
        text: args.query,
        namespace: args.namespace,
        tags: filter_tags(args.tags),
        limit: args.limit,
        include_archived: args.include_archived,
        mode: args.mode.into(),
        min_importance: args.min_importance,
    };
    let uses_vectors = query.mode != RecallMode::Keyword;
    let (recall, vectors_stale, model) = with_store(settings, async |store| {
        let recall = store.recall(query).await?;
        // Memories vector recall cannot see: made by another embedder (a
        // database from before a model change) or not embedded yet.
        let stale = if uses_vectors {
            store.pending_reindex().await?
        } else {
            0
        };
        let model = store
            .embedder()
            .map_or_else(String::new, |e| e.model_id().to_owned());
        Ok((recall, stale, model))
    })
    .await?;
    let output = RecallOutput {
        recall: &recall,
        vectors_stale,
    };
    let width = output::width();
    out.emit(&output, |w| {
        for (rank, hit) in recall.hits.iter().enumerate() {
            let memory = &hit.memory;
            writeln!(
                w,
                "#{}  score {}  {}{}",
                rank + 1,
                output::score(hit.score),
                memory.id,
                if memory.archived { "  (archived)" } else { "" }
            )?;
            writeln!(
                w,
                "    {}  importance {}  {}  tags: {}",
                memory.namespace,
                memory.importance,
                memory.memory_type,
                output::tags(memory)
            )?;
            writeln!(w, "    {}", output::preview(&memory.content, width - 4))?;
            writeln!(w, "    why: {}", output::signals(&hit.signals))?;
            writeln!(w)?;
        }
        let n = recall.hits.len();
        if let Some(reason) = &recall.degraded {
            writeln!(w, "answered from keywords and links only ({reason})")?;
        }
        if vectors_stale > 0 {
            writeln!(
                w,
                "note: {vectors_stale} memor{} no vector from {model} (another embedder made it, or it is not embedded yet): \
                 recall finds {} by keywords only until `mnemosyne reindex` runs",
                if vectors_stale == 1 { "y has" } else { "ies have" },
                if vectors_stale == 1 { "it" } else { "them" },
            )?;
        }
        if recall.truncated {
            writeln!(
                w,
                "{n} results, truncated at the limit of {}: more memories matched",
                recall.limit
            )
        } else if n == 0 {
            writeln!(w, "no memories matched")
        } else {
            writeln!(w, "{n} result{}, all that matched", plural(n))
        }
    })
}

/// A recall as the CLI prints it: the store's answer, plus how many
/// memories have no vector of the embedder in use.
#[derive(Serialize)]
struct RecallOutput<'a> {
    #[serde(flatten)]
    recall: &'a Recall,
    #[serde(skip_serializing_if = "is_zero")]
    vectors_stale: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

pub async fn get(args: GetArgs, settings: &Settings, out: Output) -> Result<()> {
    let memory = with_store(settings, async |store| Ok(store.get(args.id).await?)).await?;
    out.emit(&memory, |w| output::write_memory(w, &memory))
}

pub async fn update(args: UpdateArgs, settings: &Settings, out: Output) -> Result<()> {
    let content = args
        .content
        .map(|c| content_arg(c, &settings.limits))
        .transpose()?;
    let summary = if args.clear_summary {
        Some(None)
    } else {
        args.summary.map(Some)
    };
    let tags = if args.clear_tags {
        Some(Vec::new())
    } else if args.tags.is_empty() {
        None
    } else {
        Some(args.tags)
    };
    let patch = MemoryPatch {
        content,
        summary,
        memory_type: args.memory_type,
        importance: args.importance,
        namespace: args.namespace,
        tags,
        archived: args.restore.then_some(false),
    };
    // Refuse an empty or invalid patch before touching the database.
    let patch = patch.validated(&settings.limits)?;
    let memory = with_store(settings, async |store| {
        Ok(store.update(args.id, patch).await?)
    })
    .await?;
    out.emit(&memory, |w| writeln!(w, "updated {}", memory.id))
}

pub async fn forget(args: ForgetArgs, settings: &Settings, out: Output) -> Result<()> {
    with_store(settings, async |store| {
        Ok(store.forget(args.id, args.hard).await?)
    })
    .await?;
    let status = Status {
        id: args.id,
        status: if args.hard { "deleted" } else { "archived" },
        target: None,
        link_type: None,
    };
    out.emit(&status, |w| writeln!(w, "{} {}", status.status, status.id))
}

pub async fn link(args: LinkArgs, settings: &Settings, out: Output) -> Result<()> {
    with_store(settings, async |store| {
        Ok(store.link(args.from, args.to, args.link_type).await?)
    })
    .await?;
    let status = Status {
        id: args.from,
        status: "linked",
        target: Some(args.to),
        link_type: Some(args.link_type),
    };
    out.emit(&status, |w| {
        writeln!(
            w,
            "linked {} -> {} ({})",
            args.from, args.to, args.link_type
        )
    })
}

pub async fn list(args: ListArgs, settings: &Settings, out: Output) -> Result<()> {
    let query = ListQuery {
        namespace: args.namespace,
        tags: filter_tags(args.tags),
        sort: args.sort.into(),
        limit: args.limit,
        offset: args.offset,
        after: None,
        include_archived: args.include_archived,
        min_importance: args.min_importance,
    };
    let memories = with_store(settings, async |store| Ok(store.list(query).await?)).await?;
    let list = MemoryList { memories };
    let width = output::width();
    out.emit(&list, |w| {
        for memory in &list.memories {
            let head = format!(
                "{}  {}  imp {}{}  ",
                memory.id,
                memory.namespace,
                memory.importance,
                if memory.archived { "  archived" } else { "" }
            );
            let room = width.saturating_sub(head.chars().count()).max(20);
            writeln!(w, "{head}{}", output::preview(&memory.content, room))?;
        }
        let n = list.memories.len();
        if n == 0 {
            writeln!(w, "no memories")
        } else if n as u64 == u64::from(args.limit) {
            writeln!(
                w,
                "{n} memories shown; there may be more: --offset {}",
                args.offset + n as u64
            )
        } else {
            writeln!(w, "{n} memor{} shown", if n == 1 { "y" } else { "ies" })
        }
    })
}

pub async fn count(args: CountArgs, settings: &Settings, out: Output) -> Result<()> {
    let count = with_store(settings, async |store| {
        Ok(store.count(args.include_archived).await?)
    })
    .await?;
    let value = Count {
        count,
        include_archived: args.include_archived,
    };
    out.emit(&value, |w| writeln!(w, "{count}"))
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
