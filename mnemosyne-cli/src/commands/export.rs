//! `export`: every memory as one JSON line, paged by id so memory use stays
//! bounded by `list_page_rows_max`. A file is written atomically: a temporary
//! file in the same directory, synced, then renamed over the target.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mnemosyne_core::{ListQuery, ListSort};
use mnemosyne_storage::MemoryStore;
use serde::Serialize;

use super::store_session::with_store;
use crate::cli::ExportArgs;
use crate::config::Settings;
use crate::output::Output;

/// What `export -o FILE` prints with `--json`.
#[derive(Debug, Serialize)]
struct Exported {
    exported: u64,
    file: PathBuf,
    include_archived: bool,
}

pub async fn run(args: ExportArgs, settings: &Settings, out: Output) -> Result<()> {
    let include_archived = args.include_archived;
    let Some(path) = args.output else {
        let mut stdout = BufWriter::new(io::stdout());
        let exported = with_store(settings, async |store| {
            write_all(store, include_archived, &mut stdout, out).await
        })
        .await?;
        stdout.flush()?;
        tracing::info!(exported, "export written to stdout");
        return Ok(());
    };
    let mut file = AtomicFile::create(&path)?;
    let exported = with_store(settings, async |store| {
        write_all(store, include_archived, file.writer(), out).await
    })
    .await?;
    file.commit()?;
    let report = Exported {
        exported,
        file: path,
        include_archived,
    };
    out.emit(&report, |w| {
        writeln!(
            w,
            "exported {} {} to {}",
            report.exported,
            memories(report.exported),
            report.file.display()
        )
    })
}

/// Writes every memory, one JSON line each, page by page; returns how many.
async fn write_all(
    store: &MemoryStore,
    include_archived: bool,
    w: &mut dyn Write,
    out: Output,
) -> Result<u64> {
    let total = store.count(include_archived).await?;
    let bar = out.progress(total, "exported");
    let mut query = ListQuery {
        sort: ListSort::Id,
        limit: store.limits().list_page_rows_max,
        include_archived,
        ..ListQuery::default()
    };
    let mut written = 0_u64;
    loop {
        let page = store.list(query.clone()).await?;
        for memory in &page {
            serde_json::to_writer(&mut *w, memory).map_err(io::Error::from)?;
            w.write_all(b"\n")?;
        }
        written += page.len() as u64;
        bar.set_position(written);
        match page.last() {
            Some(last) if page.len() == query.limit as usize => query.after = Some(last.id),
            _ => break,
        }
    }
    bar.finish_and_clear();
    Ok(written)
}

/// A file that appears at its path only when [`AtomicFile::commit`] succeeds;
/// dropped before that, its temporary file is removed.
#[derive(Debug)]
struct AtomicFile {
    target: PathBuf,
    temp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    fn create(target: &Path) -> Result<Self> {
        let name = target
            .file_name()
            .with_context(|| format!("{} is not a file name", target.display()))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = target.with_file_name(temp_name);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .with_context(|| format!("cannot create {}", temp.display()))?;
        Ok(Self {
            target: target.to_owned(),
            temp,
            writer: Some(BufWriter::new(file)),
        })
    }

    fn writer(&mut self) -> &mut dyn Write {
        self.writer
            .as_mut()
            .expect("writer is present until commit")
    }

    fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("commit runs once");
        let file = writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("cannot write {}", self.temp.display()))?;
        file.sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.display()))?;
        drop(file);
        std::fs::rename(&self.temp, &self.target).with_context(|| {
            format!(
                "cannot rename {} to {}",
                self.temp.display(),
                self.target.display()
            )
        })?;
        sync_parent(&self.target);
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        // Still holding the writer means commit did not run or failed early;
        // a failed rename also leaves the temporary file, so try in any case.
        if let Err(e) = std::fs::remove_file(&self.temp)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(file = %self.temp.display(), error = %e, "cannot remove temporary file");
        }
    }
}

/// Makes the rename durable (Unix); a failure only weakens durability, so it is logged.
fn sync_parent(path: &Path) {
    #[cfg(unix)]
    {
        let parent = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if let Err(e) = File::open(parent).and_then(|dir| dir.sync_all()) {
            tracing::warn!(dir = %parent.display(), error = %e, "cannot sync directory after rename");
        }
    }
    #[cfg(not(unix))]
    let _ = path;
}

fn memories(n: u64) -> &'static str {
    if n == 1 { "memory" } else { "memories" }
}
