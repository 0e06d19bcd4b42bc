//! `cargo xtask stress`: drives every bounded structure past its limit at
//! high concurrency and checks, one line per check, that the limit held,
//! nothing acknowledged was lost, and fds and tasks came back to baseline.
//! Exits 1 if any check failed.
//!
//! Usage: `stress [--only NAME]...`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashSet;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use mnemosyne_core::{Error, Limits, NewMemory, Storage, WorkItemId, WorkState};
use mnemosyne_embed::{EmbedderConfig, build_cached_embedder};
use mnemosyne_harness::{Baseline, Report, ensure};
use mnemosyne_orchestration::{Completion, NewWorkItem, Supervisor, WorkQueue};
use mnemosyne_storage::{Location, MemoryStore, RecallQuery};
use tempfile::TempDir;

#[cfg(all(feature = "libsql", not(feature = "sqlite")))]
use mnemosyne_storage::LibsqlStorage as Backend;
#[cfg(feature = "sqlite")]
use mnemosyne_storage::SqliteStorage as Backend;

mod check_outcome;
mod server_checks;

use check_outcome::{Outcome, fail, sample_max};

const CHECKS: &[&str] = &[
    "queue_over_capacity",
    "queue_write_backlog",
    "queue_retention",
    "queue_lease_storm",
    "pool_exhaustion",
    "embedding_cache_cap",
    "supervisor_churn",
    "queue_open_close_cycles",
    "server_start_stop_cycles",
    "stalled_event_subscribers",
    "crdt_edit_storm",
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut only = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        match (arg.as_str(), rest.next()) {
            ("--only", Some(name)) if CHECKS.contains(&name.as_str()) => only.push(name.clone()),
            _ => {
                eprintln!(
                    "usage: stress [--only NAME]...; checks: {}",
                    CHECKS.join(", ")
                );
                return ExitCode::from(2);
            }
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("runtime");
    let report = runtime.block_on(run(only));
    if report.failed().is_empty() {
        println!("stress: {} checks passed", report.ran());
        ExitCode::SUCCESS
    } else {
        println!(
            "stress: {} of {} checks failed: {}",
            report.failed().len(),
            report.ran(),
            report.failed().join(", ")
        );
        ExitCode::FAILURE
    }
}

async fn run(only: Vec<String>) -> Report {
    let wanted = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    // Warm up what the runtime opens lazily before measuring the baseline.
    tokio::task::spawn_blocking(|| ()).await.unwrap();
    let baseline = Baseline::now();
    let mut report = Report::new();
    if wanted("queue_over_capacity") {
        report
            .run("queue_over_capacity", baseline, queue_over_capacity())
            .await;
    }
    if wanted("queue_write_backlog") {
        report
            .run("queue_write_backlog", baseline, queue_write_backlog())
            .await;
    }
    if wanted("queue_retention") {
        report
            .run("queue_retention", baseline, queue_retention())
            .await;
    }
    if wanted("queue_lease_storm") {
        report
            .run("queue_lease_storm", baseline, queue_lease_storm())
            .await;
    }
    if wanted("pool_exhaustion") {
        report
            .run("pool_exhaustion", baseline, pool_exhaustion())
            .await;
    }
    if wanted("embedding_cache_cap") {
        report
            .run("embedding_cache_cap", baseline, embedding_cache_cap())
            .await;
    }
    if wanted("supervisor_churn") {
        report
            .run("supervisor_churn", baseline, supervisor_churn())
            .await;
    }
    if wanted("queue_open_close_cycles") {
        report
            .run(
                "queue_open_close_cycles",
                baseline,
                queue_open_close_cycles(),
            )
            .await;
    }
    if wanted("server_start_stop_cycles") {
        report
            .run(
                "server_start_stop_cycles",
                baseline,
                server_checks::server_start_stop_cycles(),
            )
            .await;
    }
    if wanted("stalled_event_subscribers") {
        report
            .run(
                "stalled_event_subscribers",
                baseline,
                server_checks::stalled_event_subscribers(),
            )
            .await;
    }
    if wanted("crdt_edit_storm") {
        report
            .run(
                "crdt_edit_storm",
                baseline,
                server_checks::crdt_edit_storm(),
            )
            .await;
    }
    report
}

struct Queue {
    _dir: TempDir,
    storage: Arc<dyn Storage>,
    queue: WorkQueue,
    supervisor: Supervisor,
}

impl Queue {
    async fn open(limits: &Limits) -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let storage = open_storage(&dir.path().join("stress.db"), limits).await?;
        let supervisor = Supervisor::from_limits(limits);
        let queue = WorkQueue::open(storage.clone(), limits, &supervisor)
            .await
            .map_err(fail)?;
        Ok(Self {
            _dir: dir,
            storage,
            queue,
            supervisor,
        })
    }

    async fn close(self) -> Result<(), String> {
        let report = self.supervisor.shutdown().await;
        ensure(report.is_clean(), || {
            format!("shutdown not clean: {report:?}")
        })?;
        drop(self.queue);
        self.storage.close().await;
        Ok(())
    }

    /// Every id must be stored; returns how many are in `state`.
    async fn stored(&self, ids: &[WorkItemId], state: WorkState) -> Result<usize, String> {
        let mut in_state = 0;
        for id in ids {
            match self.storage.work_item(*id).await.map_err(fail)? {
                Some(item) if item.state == state => in_state += 1,
                Some(_) => {}
                None => return Err(format!("acknowledged work item {id} is not stored")),
            }
        }
        Ok(in_state)
    }
}

async fn open_storage(path: &Path, limits: &Limits) -> Result<Arc<dyn Storage>, String> {
    mnemosyne_storage::open_storage(&Location::File(path.to_owned()), limits)
        .await
        .map_err(fail)
}

async fn queue_over_capacity() -> Outcome {
    let capacity = 1_000u32;
    let limits = Limits {
        work_items_max: capacity,
        ..Limits::default()
    };
    let q = Queue::open(&limits).await?;
    let watched = q.queue.clone();
    let (max_active, sampler) = sample_max(move || watched.gauges().active);
    let mut submitters = Vec::new();
    for agent in 0..64 {
        let queue = q.queue.clone();
        submitters.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut refused = 0u32;
            for i in 0..50 {
                match queue.submit(NewWorkItem::new(format!("{agent}/{i}"))).await {
                    Ok(item) => accepted.push(item.id),
                    Err(Error::WorkQueueFull { .. }) => refused += 1,
                    Err(other) => return Err(format!("unexpected error: {other}")),
                }
            }
            Ok((accepted, refused))
        }));
    }
    let mut accepted = Vec::new();
    let mut refused = 0;
    for submitter in submitters {
        let (ids, r) = submitter.await.map_err(fail)??;
        accepted.extend(ids);
        refused += r;
    }
    sampler.abort();
    let max = max_active.load(Ordering::Relaxed);
    ensure(accepted.len() == capacity as usize, || {
        format!("{} accepted, capacity {capacity}", accepted.len())
    })?;
    ensure(max <= capacity as usize, || {
        format!("active reached {max}, capacity {capacity}")
    })?;
    let pending = q.stored(&accepted, WorkState::Pending).await?;
    ensure(pending == accepted.len(), || {
        format!("{pending} of {} stored as pending", accepted.len())
    })?;
    q.close().await?;
    Ok(format!(
        "64 submitters x 50: {} accepted, {refused} refused with WorkQueueFull, active max {max} <= {capacity}, all stored",
        accepted.len()
    ))
}

async fn queue_write_backlog() -> Outcome {
    let limits = Limits {
        work_items_max: 100_000,
        work_write_backlog_max: 4,
        ..Limits::default()
    };
    let q = Queue::open(&limits).await?;
    let watched = q.queue.clone();
    let (max_backlog, sampler) = sample_max(move || watched.gauges().write_backlog);
    let mut submitters = Vec::new();
    for agent in 0..64 {
        let queue = q.queue.clone();
        submitters.push(tokio::spawn(async move {
            let mut accepted = Vec::new();
            let mut busy = 0u32;
            for i in 0..40 {
                match queue.submit(NewWorkItem::new(format!("{agent}/{i}"))).await {
                    Ok(item) => accepted.push(item.id),
                    Err(Error::WorkWriteBacklogFull { .. }) => busy += 1,
                    Err(other) => return Err(format!("unexpected error: {other}")),
                }
            }
            Ok((accepted, busy))
        }));
    }
    let mut accepted = Vec::new();
    let mut busy = 0;
    for submitter in submitters {
        let (ids, b) = submitter.await.map_err(fail)??;
        accepted.extend(ids);
        busy += b;
    }
    sampler.abort();
    let max = max_backlog.load(Ordering::Relaxed);
    ensure(max <= 4, || format!("write backlog reached {max}, limit 4"))?;
    let pending = q.stored(&accepted, WorkState::Pending).await?;
    ensure(pending == accepted.len(), || {
        format!("{pending} of {} acknowledged items stored", accepted.len())
    })?;
    let active = q.queue.gauges().active;
    ensure(active == accepted.len(), || {
        format!(
            "{active} active but {} acknowledged: a refused submission was kept",
            accepted.len()
        )
    })?;
    q.close().await?;
    Ok(format!(
        "backlog limit 4: {} acknowledged and stored, {busy} refused with WorkWriteBacklogFull, backlog max {max}",
        accepted.len()
    ))
}

async fn queue_retention() -> Outcome {
    let retained = 50u32;
    let stored_max = 1_000u64;
    let limits = Limits {
        work_completed_retained_max: retained,
        work_finished_stored_max: stored_max,
        ..Limits::default()
    };
    let q = Queue::open(&limits).await?;
    let first = q
        .queue
        .submit(NewWorkItem::new("first"))
        .await
        .map_err(fail)?;
    let watched = q.queue.clone();
    let (max_retained, sampler) = sample_max(move || watched.gauges().finished_retained);
    let mut agents = Vec::new();
    for agent in 0..8 {
        let queue = q.queue.clone();
        agents.push(tokio::spawn(async move {
            let name = format!("agent-{agent}");
            let mut done = 0u32;
            for i in 0..625 {
                queue
                    .submit(NewWorkItem::new(format!("{name} job {i}")))
                    .await
                    .map_err(fail)?;
                if let Some(item) = queue.claim(&name).await.map_err(fail)? {
                    queue
                        .complete(item.id, Completion::default())
                        .await
                        .map_err(fail)?;
                    done += 1;
                }
            }
            Ok::<u32, String>(done)
        }));
    }
    let mut done = 0;
    for agent in agents {
        done += agent.await.map_err(fail)??;
    }
    sampler.abort();
    let max = max_retained.load(Ordering::Relaxed);
    ensure(max <= retained as usize, || {
        format!("retained reached {max}, cap {retained}")
    })?;
    // Finish what the agents left pending (`first` among them, perhaps),
    // then push `anchor` out of the retained set, not off the disk.
    while let Some(item) = q.queue.claim("closer").await.map_err(fail)? {
        q.queue
            .complete(item.id, Completion::default())
            .await
            .map_err(fail)?;
    }
    let first_stored = q.storage.work_item(first.id).await.map_err(fail)?;
    ensure(first_stored.is_none(), || {
        format!("first was done {done} items ago and is still stored")
    })?;
    let mut on_first = NewWorkItem::new("depends on a pruned item");
    on_first.dependencies = vec![first.id];
    let refused = q.queue.submit(on_first).await;
    ensure(
        matches!(&refused, Err(e) if e.to_string().contains("unknown dependency")),
        || format!("a dependent of a pruned item: {refused:?}"),
    )?;
    let anchor = q
        .queue
        .submit(NewWorkItem::new("anchor"))
        .await
        .map_err(fail)?;
    q.queue.claim("closer").await.map_err(fail)?;
    q.queue
        .complete(anchor.id, Completion::default())
        .await
        .map_err(fail)?;
    for _ in 0..(2 * retained) {
        q.queue
            .submit(NewWorkItem::new("push first out"))
            .await
            .map_err(fail)?;
        let item = q
            .queue
            .claim("closer")
            .await
            .map_err(fail)?
            .ok_or("nothing to claim")?;
        q.queue
            .complete(item.id, Completion::default())
            .await
            .map_err(fail)?;
    }
    let mut late = NewWorkItem::new("depends on an evicted item");
    late.dependencies = vec![anchor.id];
    let late = q.queue.submit(late).await.map_err(fail)?;
    let claimed = q.queue.claim("late").await.map_err(fail)?;
    ensure(claimed.map(|i| i.id) == Some(late.id), || {
        "a dependent of an evicted done item is not ready".into()
    })?;
    let counts = q.storage.count_work_items_by_state().await.map_err(fail)?;
    let stored: u64 = counts
        .iter()
        .filter(|(state, _)| state.is_finished())
        .map(|(_, count)| count)
        .sum();
    ensure(
        (stored_max..=stored_max + stored_max / 100).contains(&stored),
        || format!("{stored} finished items stored, limit {stored_max} (+1%)"),
    )?;
    q.close().await?;
    Ok(format!(
        "{done} completed by 8 agents, retained max {max} <= {retained}, {stored} stored (limit {stored_max}); a dependent of an evicted item is ready, of a pruned one refused"
    ))
}

async fn queue_lease_storm() -> Outcome {
    let limits = Limits {
        work_lease_s: 1,
        work_attempts_max: 2,
        ..Limits::default()
    };
    let q = Queue::open(&limits).await?;
    let items: Vec<NewWorkItem> = (0..200)
        .map(|i| NewWorkItem::new(format!("abandoned {i}")))
        .collect();
    let ids: Vec<WorkItemId> = q
        .queue
        .submit_batch(items)
        .await
        .map_err(fail)?
        .into_iter()
        .map(|i| i.id)
        .collect();
    let claim_all = async |round: u32| -> Result<(), String> {
        let mut claimed = 0;
        while q
            .queue
            .claim(&format!("ghost-{round}"))
            .await
            .map_err(fail)?
            .is_some()
        {
            claimed += 1;
        }
        ensure(claimed == ids.len(), || {
            format!("round {round}: {claimed} claimed")
        })
    };
    claim_all(1).await?;
    // Nobody heartbeats: the reaper must return every claim.
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let pending = q.stored(&ids, WorkState::Pending).await?;
    ensure(pending == ids.len(), || {
        format!("{pending} of {} back to pending", ids.len())
    })?;
    claim_all(2).await?;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let failed = q.stored(&ids, WorkState::Failed).await?;
    ensure(failed == ids.len(), || {
        format!("{failed} of {} failed after 2 attempts", ids.len())
    })?;
    ensure(q.queue.gauges().active == 0, || "items still active".into())?;
    q.close().await?;
    Ok(format!(
        "{} abandoned claims returned by the reaper, then failed at work_attempts_max 2",
        ids.len()
    ))
}

async fn pool_exhaustion() -> Outcome {
    let limits = Limits {
        pool_readers_max: 2,
        pool_wait_timeout_ms: 200,
        ..Limits::default()
    };
    let dir = tempfile::tempdir().map_err(fail)?;
    let backend = Arc::new(
        Backend::open(&Location::File(dir.path().join("pool.db")), &limits)
            .await
            .map_err(fail)?,
    );
    let storage: Arc<dyn Storage> = backend.clone();
    let store = Arc::new(MemoryStore::new(Arc::clone(&storage), limits.clone()));
    for i in 0..200 {
        store
            .remember(NewMemory::new(format!(
                "pool stress memory {i} about leases"
            )))
            .await
            .map_err(fail)?;
    }
    let watched = Arc::clone(&storage);
    let (max_open, sampler) = sample_max(move || watched.pool_status().readers_open);
    let recall = |store: Arc<MemoryStore>| async move {
        let query = RecallQuery {
            text: "leases".into(),
            ..RecallQuery::default()
        };
        store.recall(query).await
    };

    // Every reader held: 64 recalls wait 200 ms each and time out.
    let held = (
        backend.hold_reader().await.map_err(fail)?,
        backend.hold_reader().await.map_err(fail)?,
    );
    let started = Instant::now();
    let mut waiting = Vec::new();
    for _ in 0..64 {
        waiting.push(tokio::spawn(recall(Arc::clone(&store))));
    }
    let mut timeouts = 0;
    for task in waiting {
        match task.await.map_err(fail)? {
            Err(Error::PoolTimeout { .. }) => timeouts += 1,
            Err(other) => return Err(format!("unexpected error: {other}")),
            Ok(_) => return Err("a recall got a reader while all were held".into()),
        }
    }
    let waited = started.elapsed();
    ensure(waited < Duration::from_secs(5), || {
        format!("timeouts took {waited:?}")
    })?;
    drop(held);

    // Released, then overloaded: 256 concurrent recalls through 2 readers
    // each end answered or with PoolTimeout, none hangs, none fails otherwise.
    let started = Instant::now();
    let mut running = Vec::new();
    for _ in 0..256 {
        running.push(tokio::spawn(recall(Arc::clone(&store))));
    }
    let (mut answered, mut overloaded) = (0, 0);
    for task in running {
        match task.await.map_err(fail)? {
            Ok(_) => answered += 1,
            Err(Error::PoolTimeout { .. }) => overloaded += 1,
            Err(other) => return Err(format!("unexpected error: {other}")),
        }
    }
    let storm = started.elapsed();
    ensure(storm < Duration::from_secs(10), || {
        format!("the storm took {storm:?}")
    })?;
    // And the pool is healthy after it.
    recall(Arc::clone(&store)).await.map_err(fail)?;
    sampler.abort();
    let max = max_open.load(Ordering::Relaxed);
    ensure(max <= 2, || format!("{max} readers open, limit 2"))?;
    let status = storage.pool_status();
    ensure(
        status.readers_waiting == 0 && status.readers_open == status.readers_idle,
        || format!("pool not idle after the storm: {status:?}"),
    )?;
    ensure(answered > 0, || "no recall answered after release".into())?;
    store.close().await;
    drop(store);
    drop(storage);
    drop(backend);
    Ok(format!(
        "2 readers held: {timeouts}/64 PoolTimeout in {:.0} ms; 256 at once: {answered} answered, {overloaded} PoolTimeout in {:.0} ms; readers open max {max} <= 2; healthy after",
        waited.as_secs_f64() * 1e3,
        storm.as_secs_f64() * 1e3
    ))
}

async fn embedding_cache_cap() -> Outcome {
    let cap_bytes = 512 * 1024;
    let limits = Limits {
        embedding_cache_bytes_max: cap_bytes,
        ..Limits::default()
    };
    // The cache's bound is under test, not the model: hash texts at once.
    let embedder =
        build_cached_embedder(&EmbedderConfig::Hash { dims: 384 }, &limits).map_err(fail)?;
    let mut workers = Vec::new();
    for worker in 0..8 {
        let embedder = Arc::clone(&embedder);
        workers.push(tokio::spawn(async move {
            let mut max_bytes = 0;
            for batch in 0..50 {
                let texts: Vec<String> = (0..50)
                    .map(|i| format!("worker {worker} batch {batch} text {i}"))
                    .collect();
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                mnemosyne_core::Embedder::embed(embedder.as_ref(), &refs)
                    .await
                    .map_err(fail)?;
                max_bytes = max_bytes.max(embedder.weighted_bytes());
            }
            Ok::<u64, String>(max_bytes)
        }));
    }
    let mut max_bytes = 0;
    for worker in workers {
        max_bytes = max_bytes.max(worker.await.map_err(fail)??);
    }
    let entries = embedder.entries();
    ensure(max_bytes <= cap_bytes, || {
        format!("cache weighed {max_bytes} bytes, cap {cap_bytes}")
    })?;
    Ok(format!(
        "20 000 distinct texts through a {} KiB cache: max {} KiB, {entries} entries kept",
        cap_bytes / 1024,
        max_bytes / 1024
    ))
}

async fn supervisor_churn() -> Outcome {
    let mut aborted = 0;
    for round in 0..200 {
        let supervisor = Supervisor::new(Duration::from_millis(20));
        for i in 0..50 {
            supervisor
                .spawn(format!("worker-{i}"), |token| async move {
                    token.cancelled().await;
                })
                .map_err(fail)?;
        }
        supervisor
            .spawn("stubborn", |_token| async move {
                tokio::time::sleep(Duration::from_secs(3_600)).await;
            })
            .map_err(fail)?;
        let report = supervisor.shutdown().await;
        ensure(report.aborted == ["stubborn"], || {
            format!("round {round}: aborted {:?}", report.aborted)
        })?;
        ensure(supervisor.alive() == 0, || {
            format!("round {round}: tasks alive")
        })?;
        aborted += report.aborted.len();
    }
    Ok(format!(
        "200 supervisors x 51 tasks started and shut down; {aborted} stubborn tasks aborted and reported"
    ))
}

async fn queue_open_close_cycles() -> Outcome {
    let dir = tempfile::tempdir().map_err(fail)?;
    let path = dir.path().join("cycles.db");
    let limits = Limits::default();
    let mut ids: HashSet<WorkItemId> = HashSet::new();
    // The first cycles open what the process keeps for good (the blocking
    // pool's threads, SQLite's one-time setup); leaks show after them.
    let mut before = Baseline::now();
    for cycle in 0..200 {
        if cycle == 10 {
            before = Baseline::now();
        }
        let storage = open_storage(&path, &limits).await?;
        let supervisor = Supervisor::from_limits(&limits);
        let queue = WorkQueue::open(storage.clone(), &limits, &supervisor)
            .await
            .map_err(fail)?;
        ensure(queue.gauges().active == ids.len(), || {
            format!(
                "cycle {cycle}: {} active reloaded, {} submitted",
                queue.gauges().active,
                ids.len()
            )
        })?;
        let item = queue
            .submit(NewWorkItem::new(format!("cycle {cycle}")))
            .await
            .map_err(fail)?;
        ids.insert(item.id);
        let report = supervisor.shutdown().await;
        ensure(report.is_clean(), || format!("cycle {cycle}: {report:?}"))?;
        drop(queue);
        storage.close().await;
    }
    if let Some(leak) = before.settle(mnemosyne_harness::SETTLE).await {
        return Err(format!("from cycle 10 to 200: {leak}"));
    }
    let after = Baseline::now();
    Ok(format!(
        "200 open / submit / shutdown / close cycles: every item reloaded, fds {} at cycle 10 -> {} at 200",
        before.fds, after.fds
    ))
}
