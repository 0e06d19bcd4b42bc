//! `doctor`: checks what can go wrong with this installation and says how
//! to fix it. Exit code 1 when any check fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};
use mnemosyne_core::Storage;
use mnemosyne_diagnostics::{LimitSource, MemoryLimit, ProcessStats};
use mnemosyne_embed::build_embedder;
use mnemosyne_orchestration::{QueueDatabase, QueueOwnership};
use mnemosyne_storage::{Location, MemoryStore};
use serde::Serialize;

use crate::config::Settings;
use crate::output::Output;

/// Free space under which the disk check fails.
const DISK_FREE_FAIL_BYTES: u64 = 100 << 20;
/// Free space under which it warns.
const DISK_FREE_WARN_BYTES: u64 = 1 << 30;
/// Fds a process should be allowed beyond what the pool needs (sockets,
/// logs, the database's WAL and shm files).
const FD_MARGIN: u64 = 64;
/// Fd limit under which a server is likely to run out under load.
const FD_LIMIT_RECOMMENDED: u64 = 1_024;
/// File descriptors one pooled SQLite connection holds (db, WAL, shm).
const FDS_PER_CONNECTION: u64 = 3;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
enum Status {
    Ok,
    Warn,
    Fail,
}

#[derive(Debug, Serialize)]
struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fix: Option<String>,
}

/// What `doctor --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    ok: bool,
    checks: Vec<Check>,
}

fn check(name: &'static str, status: Status, detail: String, fix: Option<&str>) -> Check {
    Check {
        name,
        status,
        detail,
        fix: fix.map(str::to_owned),
    }
}

pub async fn run(settings: &Settings, out: Output) -> Result<()> {
    let mut checks = Vec::new();
    let db_file = match &settings.location {
        Location::File(path) => Some(path.clone()),
        Location::Remote { .. } => None,
    };
    if let Some(path) = &db_file {
        checks.push(disk_space(path));
    }
    checks.push(fd_limit(settings));
    checks.push(pool_settings(settings));
    checks.push(memory_limit());
    match MemoryStore::open(&settings.location, settings.limits.clone()).await {
        Ok(store) => {
            database_checks(store.storage().as_ref(), &mut checks).await;
            if let Ok(embedder) = build_embedder(&settings.embedder, &settings.limits) {
                let store = store.clone().with_embedder(embedder);
                checks.push(vectors(&store).await);
            }
            store.close().await;
        }
        Err(error) => checks.push(check(
            "database",
            Status::Fail,
            format!("cannot open {}: {error}", settings.location),
            Some(match error {
                mnemosyne_core::Error::SchemaTooNew { .. } => {
                    "this database was written by a newer mnemosyne: upgrade mnemosyne"
                }
                _ => "check the path and its permissions (--db, MNEMOSYNE_DB, `mnemosyne config`)",
            }),
        )),
    }
    if let Some(path) = &db_file {
        checks.push(work_queue_owner(path).await);
    }
    checks.push(embedder(settings).await);

    let ok = checks.iter().all(|c| c.status != Status::Fail);
    let report = Report { ok, checks };
    out.emit(&report, |w| {
        for c in &report.checks {
            let status = match c.status {
                Status::Ok => "ok  ",
                Status::Warn => "warn",
                Status::Fail => "FAIL",
            };
            writeln!(w, "{status}  {:<12} {}", c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(w, "      {:<12} fix: {fix}", "")?;
            }
        }
        Ok(())
    })?;
    if !report.ok {
        bail!("doctor found problems (see the checks marked FAIL)");
    }
    Ok(())
}

fn disk_space(db: &Path) -> Check {
    let dir: PathBuf = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let existing = dir.ancestors().find(|d| d.exists()).unwrap_or(&dir);
    match fs4::available_space(existing) {
        Ok(free) if free < DISK_FREE_FAIL_BYTES => check(
            "disk",
            Status::Fail,
            format!("{} MiB free under {}", free >> 20, existing.display()),
            Some("free some space: SQLite needs room for its WAL and checkpoints"),
        ),
        Ok(free) if free < DISK_FREE_WARN_BYTES => check(
            "disk",
            Status::Warn,
            format!("{} MiB free under {}", free >> 20, existing.display()),
            Some("free some space before the database grows"),
        ),
        Ok(free) => check(
            "disk",
            Status::Ok,
            format!("{} GiB free under {}", free >> 30, existing.display()),
            None,
        ),
        Err(e) => check(
            "disk",
            Status::Warn,
            format!("cannot read free space of {}: {e}", existing.display()),
            None,
        ),
    }
}

fn fd_limit(settings: &Settings) -> Check {
    let connections = u64::from(settings.limits.pool_readers_max) + 1;
    let needed = connections * FDS_PER_CONNECTION + FD_MARGIN;
    match ProcessStats::sample().fd_limit {
        Some(limit) if limit < needed => check(
            "fd limit",
            Status::Fail,
            format!("ulimit -n is {limit}; the pool alone needs about {needed}"),
            Some("raise it: `ulimit -n 4096` (or LimitNOFILE= in a systemd unit)"),
        ),
        Some(limit) if limit < FD_LIMIT_RECOMMENDED => check(
            "fd limit",
            Status::Warn,
            format!(
                "ulimit -n is {limit}; a server with many clients wants {FD_LIMIT_RECOMMENDED} or more"
            ),
            Some("raise it: `ulimit -n 4096`"),
        ),
        Some(limit) => check(
            "fd limit",
            Status::Ok,
            format!("ulimit -n is {limit} (pool needs about {needed})"),
            None,
        ),
        None => check("fd limit", Status::Ok, "unlimited or unknown".into(), None),
    }
}

fn pool_settings(settings: &Settings) -> Check {
    let limits = &settings.limits;
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as u32;
    let detail = format!(
        "{} readers + 1 writer, wait {} ms, busy timeout {} ms, {cores} cores",
        limits.pool_readers_max, limits.pool_wait_timeout_ms, limits.sqlite_busy_timeout_ms
    );
    if limits.pool_readers_max > cores.saturating_mul(8) {
        check(
            "pool",
            Status::Warn,
            detail,
            Some(
                "more readers than 8 per core only add memory and contention: lower pool_readers_max",
            ),
        )
    } else {
        check("pool", Status::Ok, detail, None)
    }
}

fn memory_limit() -> Check {
    let limit = MemoryLimit::detect();
    let source = match &limit.source {
        LimitSource::Cgroup { file } => format!("cgroup limit in {}", file.display()),
        LimitSource::MemTotal => "MemTotal, no cgroup limit".into(),
        LimitSource::Unknown => "unknown".into(),
    };
    let rss = ProcessStats::sample().rss_bytes.unwrap_or(0);
    check(
        "memory",
        Status::Ok,
        format!(
            "{} MiB may be used ({source}); this process holds {} MiB",
            limit.bytes >> 20,
            rss >> 20
        ),
        None,
    )
}

async fn database_checks(storage: &dyn Storage, checks: &mut Vec<Check>) {
    match storage.schema_version().await {
        Ok(version) => checks.push(check(
            "schema",
            Status::Ok,
            format!(
                "version {version} (this mnemosyne writes {})",
                mnemosyne_storage::SCHEMA_VERSION
            ),
            None,
        )),
        Err(e) => checks.push(check(
            "schema",
            Status::Fail,
            e.to_string(),
            Some("the database file may be damaged: restore it from a backup or an export"),
        )),
    }
    match storage.integrity_check().await {
        Ok(result) if result == "ok" => checks.push(check(
            "integrity",
            Status::Ok,
            format!("PRAGMA integrity_check: ok ({} backend)", storage.backend_name()),
            None,
        )),
        Ok(result) => checks.push(check(
            "integrity",
            Status::Fail,
            format!("PRAGMA integrity_check: {}", result.lines().next().unwrap_or("?")),
            Some("stop every mnemosyne process, `mnemosyne export` what can be read, and import it into a new database"),
        )),
        Err(e) => checks.push(check(
            "integrity",
            Status::Fail,
            e.to_string(),
            Some("the database cannot be read: restore it from a backup"),
        )),
    }
}

/// Memories vector recall cannot see: their vector is missing or was made
/// by another embedder (a database from before a model change).
async fn vectors(store: &MemoryStore) -> Check {
    let model = store
        .embedder()
        .map_or_else(String::new, |e| e.model_id().to_owned());
    match store.pending_reindex().await {
        Ok(0) => check(
            "vectors",
            Status::Ok,
            format!("every memory has its vector from {model}"),
            None,
        ),
        Ok(n) => check(
            "vectors",
            Status::Warn,
            format!(
                "{n} memor{} no vector from {model}: recall finds {} by keywords only",
                if n == 1 { "y has" } else { "ies have" },
                if n == 1 { "it" } else { "them" },
            ),
            Some(
                "run `mnemosyne reindex` (resumable; a running server embeds new memories by itself)",
            ),
        ),
        Err(e) => check("vectors", Status::Fail, e.to_string(), None),
    }
}

async fn work_queue_owner(db: &Path) -> Check {
    match QueueOwnership::acquire(QueueDatabase::File(db), Duration::ZERO).await {
        Ok(QueueOwnership::Owned(owner)) => {
            drop(owner);
            check(
                "work queue",
                Status::Ok,
                "no process holds the work queue".into(),
                None,
            )
        }
        Ok(QueueOwnership::OwnedByOther(other)) => check(
            "work queue",
            Status::Ok,
            format!(
                "held by a running mnemosyne{} (a server?); `work` commands wait up to work_owner_wait_timeout_ms for it",
                other
                    .pid()
                    .map(|p| format!(" (pid {p})"))
                    .unwrap_or_default()
            ),
            None,
        ),
        Err(e) => check(
            "work queue",
            Status::Warn,
            e.to_string(),
            Some("make the database's directory writable"),
        ),
    }
}

async fn embedder(settings: &Settings) -> Check {
    let embedder = match build_embedder(&settings.embedder, &settings.limits) {
        Ok(embedder) => embedder,
        Err(e) => {
            return check(
                "embedder",
                Status::Fail,
                e.to_string(),
                Some("fix the [embedder] table of the config file"),
            );
        }
    };
    match embedder.embed(&["mnemosyne doctor"]).await {
        Ok(vectors) if vectors.first().is_some_and(|v| v.len() == embedder.dims()) => check(
            "embedder",
            Status::Ok,
            format!("{} answers ({} dims)", embedder.model_id(), embedder.dims()),
            None,
        ),
        Ok(_) => check(
            "embedder",
            Status::Fail,
            format!("{} answered with the wrong dimensions", embedder.model_id()),
            Some("set dims in [embedder] to what the model returns"),
        ),
        Err(e) => check(
            "embedder",
            Status::Fail,
            e.to_string(),
            Some(
                "start the embeddings server or fix base_url in [embedder]; recall falls back to keywords meanwhile",
            ),
        ),
    }
}
