//! `diagnostics`: the tracker's snapshot of this process on the database
//! (pool, stored work items, file sizes), as a table or JSON, once or
//! refreshed with `--watch`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use mnemosyne_core::PendingKind;
use mnemosyne_diagnostics::{Gauge, MemoryTracker, Snapshot, Thresholds};
use mnemosyne_storage::{Location, MemoryStore};
use serde::Serialize;

use super::store_session::with_store;
use crate::cli::DiagnosticsArgs;
use crate::config::Settings;
use crate::output::Output;

/// What `diagnostics --json` prints (one line per refresh with `--watch`).
#[derive(Debug, Serialize)]
struct Report {
    snapshot: Snapshot,
    alerts: Vec<mnemosyne_diagnostics::Alert>,
}

pub async fn run(args: DiagnosticsArgs, settings: &Settings, out: Output) -> Result<()> {
    with_store(settings, async |store| {
        let tracker = MemoryTracker::new();
        tracker.watch_storage(Arc::clone(store.storage()))?;
        let thresholds = Thresholds::from_limits(&settings.limits);
        loop {
            let mut snapshot = tracker.snapshot();
            stored_gauges(store, &settings.location, &mut snapshot.gauges).await?;
            let alerts = thresholds.judge(&snapshot);
            let report = Report { snapshot, alerts };
            if args.watch && !out.is_json() {
                // Clear the screen and go home, as `watch` does.
                print!("\x1b[2J\x1b[H");
            }
            out.emit(&report, |w| write_table(w, &report))?;
            if !args.watch {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_secs(args.interval_s.max(1))).await;
        }
    })
    .await
}

/// Figures read from the database rather than from live structures.
async fn stored_gauges(
    store: &MemoryStore,
    location: &Location,
    gauges: &mut Vec<Gauge>,
) -> Result<()> {
    let storage = store.storage();
    gauges.push(Gauge::new(
        "mnemosyne_memories_stored",
        "memories in the database (archived included)",
        storage.count_memories(true).await?,
    ));
    // What a server's embedding worker has still to embed (or embeds at its start).
    gauges.push(Gauge::new(
        "mnemosyne_embeddings_missing",
        "memories with no vector on disk",
        store.pending_count(PendingKind::Missing).await?,
    ));
    for (state, count) in storage.count_work_items_by_state().await? {
        gauges.push(Gauge::new(
            format!("mnemosyne_work_items_stored_{state}"),
            format!("work items stored in state {state}"),
            count,
        ));
    }
    if let Location::File(path) = location {
        for (suffix, name) in [("", "database"), ("-wal", "wal")] {
            let file = Path::new(&format!("{}{suffix}", path.display())).to_owned();
            if let Ok(meta) = std::fs::metadata(&file) {
                gauges.push(Gauge::new(
                    format!("mnemosyne_{name}_file_bytes"),
                    format!("size of the {name} file"),
                    meta.len(),
                ));
            }
        }
    }
    Ok(())
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn write_table(w: &mut dyn Write, report: &Report) -> std::io::Result<()> {
    let s = &report.snapshot;
    let unknown = || "?".to_owned();
    writeln!(w, "taken at          {}", s.taken_at.to_rfc3339())?;
    writeln!(
        w,
        "rss               {}",
        s.process.rss_bytes.map_or_else(unknown, mib)
    )?;
    writeln!(
        w,
        "memory limit      {} ({})",
        mib(s.memory_limit.bytes),
        match &s.memory_limit.source {
            mnemosyne_diagnostics::LimitSource::Cgroup { file } => file.display().to_string(),
            mnemosyne_diagnostics::LimitSource::MemTotal => "MemTotal".into(),
            mnemosyne_diagnostics::LimitSource::Unknown => "unknown".into(),
        }
    )?;
    writeln!(
        w,
        "open fds          {} of {}",
        s.process.open_fds.map_or_else(unknown, |n| n.to_string()),
        s.process.fd_limit.map_or_else(unknown, |n| n.to_string())
    )?;
    writeln!(
        w,
        "threads           {}",
        s.process.threads.map_or_else(unknown, |n| n.to_string())
    )?;
    if let Some(a) = &s.allocator {
        writeln!(
            w,
            "allocator         {} allocated, {} resident",
            mib(a.allocated_bytes),
            mib(a.resident_bytes)
        )?;
    }
    for gauge in &s.gauges {
        let name = gauge.name.trim_start_matches("mnemosyne_");
        match gauge.max {
            Some(max) => writeln!(w, "{name:<32} {} of {max}", gauge.value)?,
            None => writeln!(w, "{name:<32} {}", gauge.value)?,
        }
    }
    if report.alerts.is_empty() {
        writeln!(w, "no alerts")
    } else {
        for alert in &report.alerts {
            writeln!(w, "ALERT {:?}: {}", alert.level, alert.message)?;
        }
        Ok(())
    }
}
