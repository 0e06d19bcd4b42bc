//! `import`: JSON lines of memories (what `export` writes), in three passes
//! over the file so memory use stays bounded by `import_batch_rows`:
//!
//! 1. parse and validate every line, writing nothing; the first bad line
//!    stops the import with `line N: <reason>` before the database is opened;
//! 2. insert the memories in batches of `import_batch_rows`, one transaction
//!    each (a failure stops there and says how far the import got);
//! 3. add the links in batches, skipping those whose target does not exist;
//! 4. embed the memories that have no vector, as a server's embedding worker
//!    does ([`MemoryStore::embed_pending`]: `embedding_batch_max` texts per
//!    embedder call, one transaction each), with a progress bar of the texts
//!    embedded. Stopped here, the memories are imported and only their
//!    vectors are missing: `reindex`, or a server's start, makes them.
//!
//! Links are added for every line, including memories skipped as already
//! stored, so running an interrupted import again completes it.
//!
//! A line may also be a record from another tool: only `content` is
//! required, and a record without `id` gets a new one, listed in the report
//! (see `import_record`). Its id is new in every run: importing such a file
//! twice stores its memories twice.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use mnemosyne_core::{Limits, Link, Memory, MemoryId, OnConflict};
use mnemosyne_storage::MemoryStore;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::import_common::{embed_missing, embedding_stopped, line_bytes_max};
use super::import_record::{ImportRecord, LinksOnly, NewIds};
use super::store_session::with_store;
use crate::cli::ImportArgs;
use crate::config::Settings;
use crate::output::Output;

/// Ids made for records without one that the report lists (it counts them all).
const CREATED_IDS_LISTED_MAX: usize = 100;

/// What `import` prints (with `--json`, also when it stops early).
#[derive(Debug, Default, Serialize)]
struct ImportReport {
    /// The file read.
    file: PathBuf,
    /// Memories in the file (non-blank lines).
    memories: u64,
    /// Memories written.
    inserted: u64,
    /// Memories not written because their id was already stored.
    skipped: u64,
    /// Links written or already present.
    links_added: u64,
    /// Links not written because one end does not exist.
    links_missing: u64,
    /// Links not written because their source already had `memory_links_max` links.
    links_over_limit: u64,
    /// Memories written with a new id, their line having none.
    ids_created: u64,
    /// The first [`CREATED_IDS_LISTED_MAX`] of those: line and new id.
    created_ids: Vec<CreatedId>,
    /// Vectors made for memories that had none (these and any other memory
    /// of the database without one).
    embedded: u64,
    /// False when the import stopped early.
    complete: bool,
    /// First line of the batch that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at_line: Option<u64>,
    /// Why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

/// A memory written with a new id.
#[derive(Debug, Serialize)]
struct CreatedId {
    line: u64,
    id: MemoryId,
}

/// What pass 1 learned about the file.
#[derive(Debug)]
struct Checked {
    memories: u64,
    links: u64,
}

pub async fn run(args: ImportArgs, settings: &Settings, out: Output) -> Result<()> {
    if args.from_original {
        return super::import_original::run(args, settings, out).await;
    }
    let limits = &settings.limits;
    let ids = NewIds::new(chrono::Utc::now());
    let checked = check(&args.file, limits, &ids, out)?;
    tracing::info!(
        memories = checked.memories,
        links = checked.links,
        "every line is valid"
    );
    let mut report = ImportReport {
        file: args.file.clone(),
        memories: checked.memories,
        ..ImportReport::default()
    };
    let on_conflict = OnConflict::from(args.on_conflict);
    let outcome = with_store(settings, async |store| {
        let import = import(
            store,
            &args.file,
            on_conflict,
            &ids,
            &checked,
            &mut report,
            out,
        );
        Ok(import.await)
    })
    .await?;
    match outcome {
        Ok(()) => {
            report.complete = true;
            out.emit(&report, |w| {
                writeln!(
                    w,
                    "imported {} memories from {}",
                    report.memories,
                    report.file.display()
                )?;
                writeln!(w, "inserted       {}", report.inserted)?;
                writeln!(w, "skipped        {} (id already stored)", report.skipped)?;
                writeln!(w, "links added    {}", report.links_added)?;
                writeln!(
                    w,
                    "links skipped  {} (an end is missing)",
                    report.links_missing
                )?;
                writeln!(
                    w,
                    "links skipped  {} (over memory_links_max)",
                    report.links_over_limit
                )?;
                writeln!(w, "embedded       {}", report.embedded)?;
                writeln!(
                    w,
                    "ids created    {} (lines without an id)",
                    report.ids_created
                )?;
                for created in &report.created_ids {
                    writeln!(w, "  line {}  {}", created.line, created.id)?;
                }
                let unlisted = report.ids_created - report.created_ids.len() as u64;
                if unlisted > 0 {
                    writeln!(w, "  and {unlisted} more")?;
                }
                Ok(())
            })
        }
        Err(stop) => {
            report.stopped_at_line = (stop.line > 0).then_some(stop.line);
            report.error = Some(stop.message.clone());
            if out.is_json() {
                out.emit(&report, |_| Ok(()))?;
            }
            Err(anyhow!(stop.message))
        }
    }
}

/// Where and why passes 2 or 3 stopped; the message says how far they got.
#[derive(Debug)]
struct Stop {
    line: u64,
    message: String,
}

/// Pass 1: every line parses and passes [`Memory::validate`].
fn check(path: &Path, limits: &Limits, ids: &NewIds, out: Output) -> Result<Checked> {
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .len();
    let bar = out.progress_bytes(size, "checking");
    let mut lines = JsonLines::open(path, limits)?;
    let mut checked = Checked {
        memories: 0,
        links: 0,
    };
    while let Some((line, record)) = lines.next::<ImportRecord>()? {
        let (memory, _) = record.into_memory(line, ids);
        memory
            .validate(limits)
            .map_err(|e| anyhow!("line {line}: {e}"))?;
        checked.memories += 1;
        checked.links += memory.links.len() as u64;
        bar.set_position(lines.bytes_read);
    }
    bar.finish_and_clear();
    Ok(checked)
}

/// Passes 2 and 3. The outer error is a storage or file failure that the
/// report cannot describe; the inner one says how far the import got.
async fn import(
    store: &MemoryStore,
    path: &Path,
    on_conflict: OnConflict,
    ids: &NewIds,
    checked: &Checked,
    report: &mut ImportReport,
    out: Output,
) -> Result<(), Stop> {
    let batch_rows = store.limits().import_batch_rows as usize;

    // Pass 2: memories, one transaction per batch.
    let bar = out.progress(checked.memories, "imported");
    let mut lines = JsonLines::open(path, store.limits()).map_err(|e| stop_at(0, e))?;
    let mut batch: Vec<Memory> = Vec::with_capacity(batch_rows);
    // The lines of the batch whose id was made here.
    let mut batch_created: Vec<CreatedId> = Vec::new();
    let (mut batch_first, mut batch_last, mut done_last) = (0, 0, 0);
    loop {
        let next = lines
            .next::<ImportRecord>()
            .map_err(|e| stop_at(batch_first, e))?;
        let end = next.is_none();
        if let Some((line, record)) = next {
            if batch.is_empty() {
                batch_first = line;
            }
            batch_last = line;
            let (memory, made) = record.into_memory(line, ids);
            if made {
                batch_created.push(CreatedId {
                    line,
                    id: memory.id,
                });
            }
            batch.push(memory);
        }
        if !batch.is_empty() && (end || batch.len() == batch_rows) {
            match store
                .import_batch_without_vectors(&batch, on_conflict)
                .await
            {
                Ok(outcome) => {
                    report.inserted += outcome.inserted;
                    report.skipped += outcome.skipped;
                    report.ids_created += batch_created.len() as u64;
                    let room = CREATED_IDS_LISTED_MAX - report.created_ids.len();
                    let listed = batch_created.len().min(room);
                    report.created_ids.extend(batch_created.drain(..listed));
                    batch_created.clear();
                    done_last = batch_last;
                    bar.inc(batch.len() as u64);
                    batch.clear();
                }
                Err(e) => {
                    bar.abandon();
                    return Err(Stop {
                        line: batch_first,
                        message: format!(
                            "{}; stopped at the batch starting at line {batch_first}: {e}",
                            progress_so_far(report, done_last)
                        ),
                    });
                }
            }
        }
        if end {
            break;
        }
    }
    bar.finish_and_clear();

    // Pass 3: links, once every memory of the file is stored.
    let bar = out.progress(checked.links, "linked");
    let mut lines = JsonLines::open(path, store.limits()).map_err(|e| stop_at(0, e))?;
    let mut links: Vec<(MemoryId, Link)> = Vec::with_capacity(batch_rows);
    let mut links_first = 0;
    loop {
        let next = lines
            .next::<LinksOnly>()
            .map_err(|e| stop_at(links_first, e))?;
        let end = next.is_none();
        if let Some((line, record)) = next {
            let id = record.id(line, ids);
            for link in record.links {
                if links.is_empty() {
                    links_first = line;
                }
                links.push((id, link));
                if links.len() == batch_rows {
                    add_links(store, &mut links, links_first, report).await?;
                    bar.inc(batch_rows as u64);
                }
            }
        }
        if end {
            let pending = links.len() as u64;
            add_links(store, &mut links, links_first, report).await?;
            bar.inc(pending);
            break;
        }
    }
    bar.finish_and_clear();

    // Pass 4: the vectors, once every memory and link is stored.
    embed_missing(store, out, &mut report.embedded)
        .await
        .map_err(|e| Stop {
            line: 0,
            message: embedding_stopped(report.inserted, report.skipped, report.embedded, &e),
        })
}

async fn add_links(
    store: &MemoryStore,
    links: &mut Vec<(MemoryId, Link)>,
    first_line: u64,
    report: &mut ImportReport,
) -> Result<(), Stop> {
    if links.is_empty() {
        return Ok(());
    }
    match store.import_links(links).await {
        Ok(outcome) => {
            report.links_added += outcome.linked;
            report.links_missing += outcome.missing;
            report.links_over_limit += outcome.over_limit;
            links.clear();
            Ok(())
        }
        Err(e) => Err(Stop {
            line: first_line,
            message: format!(
                "imported {} memories ({} skipped); adding links stopped at the batch starting at line {first_line}: {e}",
                report.inserted, report.skipped
            ),
        }),
    }
}

fn progress_so_far(report: &ImportReport, done_last: u64) -> String {
    let skipped = if report.skipped > 0 {
        format!(", {} skipped", report.skipped)
    } else {
        String::new()
    };
    if done_last == 0 {
        format!("imported {} memories{skipped}", report.inserted)
    } else {
        format!(
            "imported {} memories{skipped} (lines 1..={done_last})",
            report.inserted
        )
    }
}

fn stop_at(line: u64, error: anyhow::Error) -> Stop {
    Stop {
        line,
        message: format!("{error:#} (the file changed while importing?)"),
    }
}

/// Reads a JSON lines file one bounded line at a time, skipping blank lines.
#[derive(Debug)]
struct JsonLines {
    reader: BufReader<File>,
    line: u64,
    line_bytes_max: u64,
    bytes_read: u64,
    buf: Vec<u8>,
}

impl JsonLines {
    fn open(path: &Path, limits: &Limits) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self {
            reader: BufReader::new(file),
            line: 0,
            line_bytes_max: line_bytes_max(limits),
            bytes_read: 0,
            buf: Vec::new(),
        })
    }

    /// The next non-blank line parsed as `T`, with its 1-based line number.
    fn next<T: DeserializeOwned>(&mut self) -> Result<Option<(u64, T)>> {
        loop {
            self.buf.clear();
            let read = (&mut self.reader)
                .take(self.line_bytes_max + 2)
                .read_until(b'\n', &mut self.buf)
                .with_context(|| format!("line {}: cannot read", self.line + 1))?;
            if read == 0 {
                return Ok(None);
            }
            self.line += 1;
            self.bytes_read += read as u64;
            let line = self.line;
            let mut bytes = self.buf.as_slice();
            if let Some(rest) = bytes.strip_suffix(b"\n") {
                bytes = rest.strip_suffix(b"\r").unwrap_or(rest);
            }
            if line == 1 {
                bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
            }
            if bytes.len() as u64 > self.line_bytes_max {
                return Err(anyhow!(
                    "line {line}: longer than {} bytes, the most a memory within the limits can take",
                    self.line_bytes_max
                ));
            }
            let text = std::str::from_utf8(bytes)
                .map_err(|e| anyhow!("line {line}: not valid UTF-8 ({e})"))?;
            if text.trim().is_empty() {
                continue;
            }
            let value = serde_json::from_str(text).map_err(|e| {
                let message = e.to_string();
                let suffix = format!(" at line {} column {}", e.line(), e.column());
                let message = message.strip_suffix(&suffix).unwrap_or(&message);
                anyhow!("line {line}: {message} (column {})", e.column())
            })?;
            return Ok(Some((line, value)));
        }
    }
}
