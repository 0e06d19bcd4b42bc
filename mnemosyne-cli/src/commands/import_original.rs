//! `import --from-original FILE`: an export of the system Mnemosyne
//! replaces, read as the `import` of our own files is, in passes over the
//! file so memory stays bounded (`original_reader` holds one record):
//!
//! 1. read and map every record, writing nothing: malformed JSON or a
//!    record past the size bound stops here, naming it, before the
//!    database is opened; a record that cannot be mapped (see
//!    `original_format`) is counted, listed and skipped, never half
//!    imported, and the others go on;
//! 2. insert the mapped memories in batches of `import_batch_rows`, ids
//!    and times kept (a failure stops there and says how far it got);
//! 3. add their links (`superseded_by` as a `supersedes` link from the
//!    newer memory), skipping those whose target is neither in the file
//!    nor in the store, and those past `memory_links_max`;
//! 4. embed the memories that have no vector, as `import` does.
//!
//! A record whose id is stored already is skipped (`--on-conflict skip`,
//! the default) or stops the import (`fail`), as with `import`; its links
//! are added again (no-ops), so running an import twice changes nothing.

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use mnemosyne_core::{Limits, Link, Memory, MemoryId, OnConflict};
use mnemosyne_storage::MemoryStore;
use serde::Serialize;
use tokio::sync::mpsc;

use super::import_common::{embed_missing, embedding_stopped, line_bytes_max};
use super::import_record::NewIds;
use super::original_format::{BoundedCounts, Mapped, map_record};
use super::original_reader::{RawRecord, Shape, Stopped, read_records};
use super::store_session::with_store;
use crate::cli::ImportArgs;
use crate::config::Settings;
use crate::output::Output;

/// Room for the fields of an original record that are not kept (keywords,
/// context, related files, link reasons), beyond the most a memory within
/// our limits takes as JSON.
const ORIGINAL_FIELDS_BYTES_MAX: u64 = 1024 * 1024;
/// Records the report lists as skipped (it counts them all).
const SKIPPED_LISTED_MAX: usize = 100;
/// Distinct names (types, link types, namespaces, fields) the report lists
/// in each of its tables; the rest are counted together as `others`.
const NAMES_LISTED_MAX: usize = 64;
/// Records read ahead of the writes (the reader runs on a blocking thread).
const RECORDS_IN_FLIGHT_MAX: usize = 64;

/// What `import --from-original` prints (with `--json`, also when it stops early).
#[derive(Debug, Serialize)]
struct OriginalReport {
    file: PathBuf,
    /// `array` or `objects` (JSON lines, or an object holding `memories`).
    shape: Option<Shape>,
    /// Records in the file.
    records: u64,
    /// Records mapped to a memory.
    mapped: u64,
    /// Memories written.
    inserted: u64,
    /// Mapped memories not written because their id was already stored.
    already_stored: u64,
    /// Records that could not be mapped, skipped.
    skipped: u64,
    /// The first [`SKIPPED_LISTED_MAX`] of those, with the reason.
    skipped_records: Vec<SkippedRecord>,
    /// Memories written with a new id, their record having none.
    ids_created: u64,
    /// Mapped records per type mapping (`insight -> note (tag insight)`).
    types: BoundedCounts,
    /// Mapped records per renamed namespace (`project:My App -> project:My-App`).
    namespaces_renamed: BoundedCounts,
    /// Tags dropped: past `memory_tags_max`, or nothing left once normalised.
    tags_dropped: u64,
    /// Links in the mapped records (with `superseded_by`), per type mapping.
    link_types: BoundedCounts,
    /// Links written or already present.
    links_added: u64,
    /// Links not written: the target is neither in the file nor in the store.
    links_missing: u64,
    /// Links not written: their source already had `memory_links_max` links.
    links_over_limit: u64,
    /// Links of a memory to itself, dropped.
    links_to_self: u64,
    /// Fields of the original not kept, by name: records carrying each.
    fields_not_kept: BoundedCounts,
    /// Vectors made for memories that had none.
    embedded: u64,
    /// False when the import stopped early.
    complete: bool,
    /// Why it stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

impl OriginalReport {
    fn new(file: PathBuf) -> Self {
        Self {
            file,
            shape: None,
            records: 0,
            mapped: 0,
            inserted: 0,
            already_stored: 0,
            skipped: 0,
            skipped_records: Vec::new(),
            ids_created: 0,
            types: BoundedCounts::new(NAMES_LISTED_MAX),
            namespaces_renamed: BoundedCounts::new(NAMES_LISTED_MAX),
            tags_dropped: 0,
            link_types: BoundedCounts::new(NAMES_LISTED_MAX),
            links_added: 0,
            links_missing: 0,
            links_over_limit: 0,
            links_to_self: 0,
            fields_not_kept: BoundedCounts::new(NAMES_LISTED_MAX),
            embedded: 0,
            complete: false,
            error: None,
        }
    }

    /// Counts what mapping record did (pass 1).
    fn count(&mut self, mapped: &Mapped) {
        self.mapped += 1;
        self.ids_created += u64::from(mapped.id_made);
        self.types.add(&mapped.memory_type.describe(), 1);
        if let Some((from, to)) = &mapped.renamed {
            self.namespaces_renamed.add(&format!("{from} -> {to}"), 1);
        }
        self.tags_dropped += mapped.tags_dropped;
        for (original, ours) in &mapped.link_mappings {
            self.link_types.add(&format!("{original} -> {ours}"), 1);
        }
        self.links_to_self += mapped.self_links;
        for field in &mapped.ignored_fields {
            self.fields_not_kept.add(field, 1);
        }
    }
}

/// A record that could not be mapped.
#[derive(Debug, Serialize)]
struct SkippedRecord {
    record: u64,
    line: u64,
    reason: String,
}

/// The most bytes one record of the original may take.
fn record_bytes_max(limits: &Limits) -> u64 {
    line_bytes_max(limits) + ORIGINAL_FIELDS_BYTES_MAX
}

pub async fn run(args: ImportArgs, settings: &Settings, out: Output) -> Result<()> {
    let limits = &settings.limits;
    let ids = NewIds::new(chrono::Utc::now());
    let mut report = OriginalReport::new(args.file.clone());
    check(&args.file, limits, &ids, &mut report)?;
    if report.skipped > 0 {
        tracing::warn!(
            skipped = report.skipped,
            "records of the original could not be mapped and are skipped; the report lists why"
        );
    }
    let on_conflict = OnConflict::from(args.on_conflict);
    let outcome = with_store(settings, async |store| {
        Ok(import(store, &args.file, on_conflict, &ids, &mut report, out).await)
    })
    .await?;
    match outcome {
        Ok(()) => {
            report.complete = true;
            out.emit(&report, |w| write_report(w, &report))
        }
        Err(message) => {
            report.error = Some(message.clone());
            if out.is_json() {
                out.emit(&report, |_| Ok(()))?;
            }
            Err(anyhow!(message))
        }
    }
}

/// Pass 1: every record read and mapped; nothing written.
fn check(path: &Path, limits: &Limits, ids: &NewIds, report: &mut OriginalReport) -> Result<()> {
    let shape = read_records(path, record_bytes_max(limits), &mut |raw| {
        report.records += 1;
        match map_record(raw.value, raw.number, limits, ids) {
            Ok(mapped) => report.count(&mapped),
            Err(reason) => {
                report.skipped += 1;
                if report.skipped_records.len() < SKIPPED_LISTED_MAX {
                    report.skipped_records.push(SkippedRecord {
                        record: raw.number,
                        line: raw.line,
                        reason,
                    });
                }
            }
        }
        Ok(())
    })?;
    report.shape = Some(shape);
    Ok(())
}

/// The records of the file, read on a blocking thread as they are taken.
struct RecordStream {
    records: mpsc::Receiver<RawRecord>,
    reader: tokio::task::JoinHandle<Result<Shape>>,
}

impl RecordStream {
    fn open(path: &Path, limits: &Limits) -> Self {
        let (sender, records) = mpsc::channel(RECORDS_IN_FLIGHT_MAX);
        let path = path.to_owned();
        let bytes_max = record_bytes_max(limits);
        let reader = tokio::task::spawn_blocking(move || {
            read_records(&path, bytes_max, &mut |raw| {
                sender
                    .blocking_send(raw)
                    .map_err(|_| Stopped(anyhow!("the import stopped reading")))
            })
        });
        Self { records, reader }
    }

    /// The next record that maps (pass 1 counted the others).
    async fn next(&mut self, limits: &Limits, ids: &NewIds) -> Option<(u64, Mapped)> {
        while let Some(raw) = self.records.recv().await {
            if let Ok(mapped) = map_record(raw.value, raw.number, limits, ids) {
                return Some((raw.number, mapped));
            }
        }
        None
    }

    /// Waits for the reader; an error means the file changed since pass 1.
    async fn finish(self) -> Result<(), String> {
        drop(self.records);
        match self.reader.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("{e:#} (the file changed while importing?)")),
            Err(e) => Err(format!("the file reader failed: {e}")),
        }
    }
}

/// Passes 2 to 4; the error says how far the import got.
async fn import(
    store: &MemoryStore,
    path: &Path,
    on_conflict: OnConflict,
    ids: &NewIds,
    report: &mut OriginalReport,
    out: Output,
) -> Result<(), String> {
    let limits = store.limits().clone();
    let batch_rows = limits.import_batch_rows as usize;

    // Pass 2: the memories, one transaction per batch.
    let bar = out.progress(report.mapped, "imported");
    let mut stream = RecordStream::open(path, &limits);
    let mut batch: Vec<Memory> = Vec::with_capacity(batch_rows);
    let (mut batch_first, mut batch_last, mut done_last) = (0, 0, 0);
    loop {
        let next = stream.next(&limits, ids).await;
        let end = next.is_none();
        if let Some((number, mapped)) = next {
            if batch.is_empty() {
                batch_first = number;
            }
            batch_last = number;
            batch.push(mapped.memory);
        }
        if !batch.is_empty() && (end || batch.len() == batch_rows) {
            match store
                .import_batch_without_vectors(&batch, on_conflict)
                .await
            {
                Ok(outcome) => {
                    report.inserted += outcome.inserted;
                    report.already_stored += outcome.skipped;
                    done_last = batch_last;
                    bar.inc(batch.len() as u64);
                    batch.clear();
                }
                Err(e) => {
                    bar.abandon();
                    let so_far = if done_last == 0 {
                        format!("imported {} memories", report.inserted)
                    } else {
                        format!(
                            "imported {} memories (records up to {done_last})",
                            report.inserted
                        )
                    };
                    return Err(format!(
                        "{so_far}; stopped at the batch starting at record {batch_first}: {e}"
                    ));
                }
            }
        }
        if end {
            break;
        }
    }
    stream.finish().await?;
    bar.finish_and_clear();

    // Pass 3: the links, once every memory of the file is stored.
    let mut stream = RecordStream::open(path, &limits);
    let mut links: Vec<(MemoryId, Link)> = Vec::with_capacity(batch_rows);
    loop {
        let next = stream.next(&limits, ids).await;
        let end = next.is_none();
        if let Some((_, mapped)) = next {
            links.extend(mapped.links);
        }
        if !links.is_empty() && (end || links.len() >= batch_rows) {
            let outcome = store.import_links(&links).await.map_err(|e| {
                format!(
                    "imported {} memories ({} already stored); adding links stopped: {e}",
                    report.inserted, report.already_stored
                )
            })?;
            report.links_added += outcome.linked;
            report.links_missing += outcome.missing;
            report.links_over_limit += outcome.over_limit;
            links.clear();
        }
        if end {
            break;
        }
    }
    stream.finish().await?;

    // Pass 4: the vectors.
    embed_missing(store, out, &mut report.embedded)
        .await
        .map_err(|e| embedding_stopped(report.inserted, report.already_stored, report.embedded, &e))
}

fn write_report(w: &mut dyn std::io::Write, report: &OriginalReport) -> std::io::Result<()> {
    let shape = match report.shape {
        Some(Shape::Array) => "a JSON array",
        Some(Shape::Objects) | None => "JSON objects",
    };
    writeln!(
        w,
        "imported {} of {} records from {} ({shape}, the original system's export)",
        report.mapped,
        report.records,
        report.file.display()
    )?;
    writeln!(w, "inserted        {}", report.inserted)?;
    writeln!(
        w,
        "already stored  {} (id already stored)",
        report.already_stored
    )?;
    writeln!(
        w,
        "skipped         {} (could not be mapped)",
        report.skipped
    )?;
    for skipped in &report.skipped_records {
        writeln!(
            w,
            "  record {} (line {}): {}",
            skipped.record, skipped.line, skipped.reason
        )?;
    }
    let unlisted = report.skipped - report.skipped_records.len() as u64;
    if unlisted > 0 {
        writeln!(w, "  and {unlisted} more")?;
    }
    write_counts(w, "types", &report.types)?;
    write_counts(w, "namespaces renamed", &report.namespaces_renamed)?;
    writeln!(
        w,
        "tags dropped    {} (past memory_tags_max, or empty)",
        report.tags_dropped
    )?;
    write_counts(w, "link types", &report.link_types)?;
    writeln!(w, "links added     {}", report.links_added)?;
    writeln!(
        w,
        "links dropped   {} (target neither in the file nor stored), {} (over memory_links_max), {} (to itself)",
        report.links_missing, report.links_over_limit, report.links_to_self
    )?;
    write_counts(w, "fields not kept", &report.fields_not_kept)?;
    writeln!(
        w,
        "ids created     {} (records without an id)",
        report.ids_created
    )?;
    writeln!(w, "embedded        {}", report.embedded)
}

fn write_counts(
    w: &mut dyn std::io::Write,
    title: &str,
    counts: &BoundedCounts,
) -> std::io::Result<()> {
    if counts.total() == 0 {
        return writeln!(w, "{title}: none");
    }
    writeln!(w, "{title}:")?;
    for (name, n) in counts.iter() {
        writeln!(w, "  {name}: {n}")?;
    }
    if counts.others() > 0 {
        writeln!(w, "  others: {}", counts.others())?;
    }
    Ok(())
}
