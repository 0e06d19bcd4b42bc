//! `doc ...`: context documents (mnemosyne-ics) from the command line.

use std::io::{Read, Write};
use std::process::Command;

use anyhow::{Context, Result, bail};
use mnemosyne_core::{DocumentMeta, Error, Limits};
use mnemosyne_ics::{Base, DocumentStore, EditOutcome, History, NewDocument};
use serde::Serialize;

use super::store_session::with_store;
use crate::cli::{
    DocActorArgs, DocCommand, DocEditArgs, DocHistoryArgs, DocListArgs, DocNameArgs, DocWriteArgs,
};
use crate::config::Settings;
use crate::output::Output;

/// Editor used when neither `VISUAL` nor `EDITOR` is set.
const EDITOR_DEFAULT: &str = "vi";

/// What `doc list` prints with `--json`.
#[derive(Debug, Serialize)]
struct DocumentList {
    documents: Vec<DocumentMeta>,
}

/// What `doc write`, `edit`, `compact`, `undo`, `redo` print with `--json`.
#[derive(Debug, Serialize)]
struct Written {
    /// `created`, `changed` or `unchanged`.
    status: &'static str,
    #[serde(flatten)]
    outcome: EditOutcome,
}

/// What `doc delete` prints with `--json`.
#[derive(Debug, Serialize)]
struct Deleted {
    name: String,
    status: &'static str,
}

/// Runs one `doc` subcommand.
pub async fn run(command: DocCommand, settings: &Settings, out: Output) -> Result<()> {
    match command {
        DocCommand::List(args) => list(args, settings, out).await,
        DocCommand::Show(args) => show(args, settings, out).await,
        DocCommand::Write(args) => write(args, settings, out).await,
        DocCommand::Edit(args) => edit(args, settings, out).await,
        DocCommand::History(args) => history(args, settings, out).await,
        DocCommand::Compact(args) => step(args, Step::Compact, settings, out).await,
        DocCommand::Undo(args) => step(args, Step::Undo, settings, out).await,
        DocCommand::Redo(args) => step(args, Step::Redo, settings, out).await,
        DocCommand::Delete(args) => delete(args, settings, out).await,
    }
}

/// Opens the store and runs `work` on its documents.
async fn with_docs<T>(
    settings: &Settings,
    work: impl AsyncFnOnce(&DocumentStore) -> Result<T>,
) -> Result<T> {
    with_store(settings, async |store| {
        let docs = DocumentStore::new(store.storage().clone(), settings.limits.clone());
        work(&docs).await
    })
    .await
}

fn time(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M:%S").to_string()
}

async fn list(args: DocListArgs, settings: &Settings, out: Output) -> Result<()> {
    let documents = with_docs(settings, async |docs| {
        Ok(docs
            .list(args.namespace.as_ref(), args.limit, args.offset)
            .await?)
    })
    .await?;
    let list = DocumentList { documents };
    out.emit(&list, |w| {
        for meta in &list.documents {
            writeln!(
                w,
                "{}  {}  epoch {}  {} bytes  updated {}  {}",
                meta.name,
                meta.namespace,
                meta.epoch,
                meta.text_bytes,
                time(&meta.updated_at),
                meta.title
            )?;
        }
        Ok(())
    })
}

async fn show(args: DocNameArgs, settings: &Settings, out: Output) -> Result<()> {
    let view = with_docs(settings, async |docs| Ok(docs.read(&args.name).await?)).await?;
    // The text exactly as stored: `doc show X > file` round-trips.
    out.emit(&view, |w| w.write_all(view.text.as_bytes()))
}

/// Reads stdin whole, refusing more than `doc_text_bytes_max` bytes.
fn stdin_text(limits: &Limits) -> Result<String> {
    let max = limits.doc_text_bytes_max;
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .context("cannot read the text from stdin")?;
    if bytes.len() as u64 > max {
        bail!("invalid input: text on stdin is over the limit of {max} bytes (doc_text_bytes_max)");
    }
    String::from_utf8(bytes).context("text on stdin is not valid UTF-8")
}

fn created(meta: DocumentMeta, heads: Vec<String>, text: &str) -> Written {
    Written {
        status: "created",
        outcome: EditOutcome {
            meta,
            heads,
            changed: true,
            splices: usize::from(!text.is_empty()),
            inserted_chars: text.chars().count() as u64,
            deleted_chars: 0,
            compacted: false,
            undo_depth: 0,
            redo_depth: 0,
        },
    }
}

fn written(outcome: EditOutcome) -> Written {
    Written {
        status: if outcome.changed {
            "changed"
        } else {
            "unchanged"
        },
        outcome,
    }
}

fn emit_written(out: Output, report: &Written) -> Result<()> {
    out.emit(report, |w| {
        let o = &report.outcome;
        write!(
            w,
            "{} {}: +{} -{} characters, epoch {}, {} bytes",
            o.meta.name,
            report.status,
            o.inserted_chars,
            o.deleted_chars,
            o.meta.epoch,
            o.meta.text_bytes
        )?;
        if o.compacted {
            write!(w, " (compacted)")?;
        }
        writeln!(w)
    })
}

async fn write(args: DocWriteArgs, settings: &Settings, out: Output) -> Result<()> {
    let text = stdin_text(&settings.limits)?;
    let report = with_docs(settings, async |docs| {
        let base = Base {
            epoch: args.epoch,
            heads: None,
        };
        match docs
            .write_text(&args.name, &args.actor.actor, text.clone(), base)
            .await
        {
            Ok(outcome) => Ok(written(outcome)),
            Err(Error::DocumentNotFound(_)) if args.epoch.is_none() => {
                let view = docs
                    .create(NewDocument {
                        title: args.title.clone().unwrap_or_else(|| args.name.clone()),
                        name: args.name.clone(),
                        namespace: args.namespace.clone(),
                        text: text.clone(),
                        actor: args.actor.actor.clone(),
                    })
                    .await?;
                Ok(created(view.meta, view.heads, &text))
            }
            Err(e) => Err(e.into()),
        }
    })
    .await?;
    emit_written(out, &report)
}

/// Runs the user's editor on `path` through the shell, so `EDITOR="code --wait"` works.
fn run_editor(path: &std::path::Path) -> Result<()> {
    let editor = std::env::var("VISUAL")
        .ok()
        .filter(|e| !e.trim().is_empty())
        .or_else(|| {
            std::env::var("EDITOR")
                .ok()
                .filter(|e| !e.trim().is_empty())
        })
        .unwrap_or_else(|| EDITOR_DEFAULT.to_owned());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(path)
        .status()
        .with_context(|| format!("cannot start the editor {editor:?}"))?;
    if !status.success() {
        bail!("the editor {editor:?} failed ({status}); nothing was changed");
    }
    Ok(())
}

async fn edit(args: DocEditArgs, settings: &Settings, out: Output) -> Result<()> {
    let report = with_docs(settings, async |docs| {
        // What the editor starts from; the edit is based on exactly this read.
        let read = match docs.read(&args.name).await {
            Ok(view) => Some(view),
            Err(Error::DocumentNotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let original = read.as_ref().map_or("", |v| v.text.as_str());
        let mut file = tempfile::Builder::new()
            .prefix("mnemosyne-doc-")
            .suffix(".md")
            .tempfile()
            .context("cannot create a temporary file for the editor")?;
        file.write_all(original.as_bytes())
            .and_then(|()| file.flush())
            .context("cannot write the temporary file for the editor")?;
        run_editor(file.path())?;
        let edited = std::fs::read(file.path()).context("cannot read the edited file back")?;
        let edited = String::from_utf8(edited).context("the edited text is not valid UTF-8")?;
        let limit = settings.limits.doc_text_bytes_max;
        if edited.len() as u64 > limit {
            let kept = keep(file)?;
            bail!(
                "invalid input: the edited text is over the limit of {limit} bytes (doc_text_bytes_max); nothing was changed, your text is kept in {kept}"
            );
        }
        let Some(read) = read else {
            if edited.is_empty() {
                return Ok(None);
            }
            let view = docs
                .create(NewDocument {
                    name: args.name.clone(),
                    namespace: args.namespace.clone(),
                    title: args.name.clone(),
                    text: edited.clone(),
                    actor: args.actor.actor.clone(),
                })
                .await?;
            return Ok(Some(created(view.meta, view.heads, &edited)));
        };
        let base = Base {
            epoch: Some(read.meta.epoch),
            heads: Some(read.heads),
        };
        match docs
            .write_text(&args.name, &args.actor.actor, edited, base)
            .await
        {
            Ok(outcome) => Ok(Some(written(outcome))),
            Err(e) => {
                // Never lose the user's text: keep the file and say where.
                let kept = keep(file)?;
                Err(anyhow::Error::new(e).context(format!("your text is kept in {kept}")))
            }
        }
    })
    .await?;
    match report {
        Some(report) => emit_written(out, &report),
        None => out.emit(
            &Deleted {
                name: args.name.clone(),
                status: "unchanged",
            },
            |w| writeln!(w, "{}: no document and no text; nothing created", args.name),
        ),
    }
}

/// Keeps the editor's temporary file, returning its path.
fn keep(file: tempfile::NamedTempFile) -> Result<String> {
    let (_, path) = file
        .keep()
        .context("cannot keep the edited text in its temporary file")?;
    Ok(path.display().to_string())
}

async fn history(args: DocHistoryArgs, settings: &Settings, out: Output) -> Result<()> {
    let history: History = with_docs(settings, async |docs| {
        Ok(docs.history(&args.name, args.limit).await?)
    })
    .await?;
    out.emit(&history, |w| {
        let m = &history.meta;
        writeln!(
            w,
            "{}  epoch {}  {} ops since compaction (compacted {})  {} bytes",
            m.name,
            m.epoch,
            m.ops_since_compaction,
            time(&m.compacted_at),
            m.text_bytes
        )?;
        for r in &history.records {
            writeln!(
                w,
                "{}  {:<12} {:<8} +{} -{}  epoch {}{}",
                time(&r.at),
                r.actor,
                serde_json::to_value(r.action)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                r.inserted_chars,
                r.deleted_chars,
                r.epoch,
                if r.compacted { "  compacted" } else { "" }
            )?;
        }
        for d in &history.undo {
            writeln!(w, "undo  {}: {} undo, {} redo", d.actor, d.undo, d.redo)?;
        }
        Ok(())
    })
}

#[derive(Clone, Copy)]
enum Step {
    Compact,
    Undo,
    Redo,
}

async fn step(args: DocActorArgs, step: Step, settings: &Settings, out: Output) -> Result<()> {
    let outcome = with_docs(settings, async |docs| {
        let actor = &args.actor.actor;
        Ok(match step {
            Step::Compact => docs.compact(&args.name, actor).await?,
            Step::Undo => docs.undo(&args.name, actor).await?,
            Step::Redo => docs.redo(&args.name, actor).await?,
        })
    })
    .await?;
    let report = Written {
        status: if matches!(step, Step::Compact) {
            "compacted"
        } else {
            "changed"
        },
        outcome,
    };
    emit_written(out, &report)
}

async fn delete(args: DocNameArgs, settings: &Settings, out: Output) -> Result<()> {
    let existed = with_docs(settings, async |docs| Ok(docs.delete(&args.name).await?)).await?;
    if !existed {
        bail!("document not found: {}", args.name);
    }
    let report = Deleted {
        name: args.name.clone(),
        status: "deleted",
    };
    out.emit(&report, |w| writeln!(w, "{} deleted", args.name))
}
