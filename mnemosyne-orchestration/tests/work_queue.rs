//! The work queue on a real database (the backend compiled in: `sqlite` by
//! default, `libsql` with `--no-default-features --features libsql`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mnemosyne_core::{Error, Limits, Phase, Storage, WorkItemId, WorkState};
use mnemosyne_orchestration::{
    Completion, NewWorkItem, QueueDatabase, QueueOwnership, REAPER_TASK, Supervisor, WRITER_TASK,
    WorkQueue,
};
use mnemosyne_storage::{Location, open_storage};
use tempfile::TempDir;
use tokio::runtime::Handle;

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("work.db");
    Fixture { _dir: dir, path }
}

async fn storage(path: &Path, limits: &Limits) -> Arc<dyn Storage> {
    open_storage(&Location::File(path.to_owned()), limits)
        .await
        .unwrap()
}

async fn open(path: &Path, limits: &Limits) -> (WorkQueue, Supervisor, Arc<dyn Storage>) {
    let storage = storage(path, limits).await;
    let supervisor = Supervisor::from_limits(limits);
    let queue = WorkQueue::open(storage.clone(), limits, &supervisor)
        .await
        .unwrap();
    (queue, supervisor, storage)
}

fn limits_with(work_items_max: u32, retained_max: u32) -> Limits {
    Limits {
        work_items_max,
        work_completed_retained_max: retained_max,
        ..Limits::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn capacity_holds_under_32_concurrent_submitters() {
    let f = fixture();
    let capacity = 100;
    let (queue, supervisor, storage) = open(&f.path, &limits_with(capacity, 10)).await;

    let mut submitters = Vec::new();
    for agent in 0..32 {
        let queue = queue.clone();
        submitters.push(tokio::spawn(async move {
            let (mut accepted, mut refused) = (0u32, 0u32);
            for i in 0..10 {
                match queue.submit(NewWorkItem::new(format!("{agent}/{i}"))).await {
                    Ok(_) => accepted += 1,
                    Err(Error::WorkQueueFull { capacity: 100 }) => refused += 1,
                    Err(other) => panic!("unexpected error: {other}"),
                }
                assert!(queue.gauges().active <= 100, "over capacity");
            }
            (accepted, refused)
        }));
    }
    let (mut accepted, mut refused) = (0, 0);
    for submitter in submitters {
        let (a, r) = submitter.await.unwrap();
        accepted += a;
        refused += r;
    }
    assert_eq!(accepted, capacity, "exactly the capacity is accepted");
    assert_eq!(refused, 320 - capacity);
    assert_eq!(queue.gauges().active, capacity as usize);
    assert_eq!(storage.active_work_items().await.unwrap().len(), 100);

    // The N+1th is refused; after one finishes there is room for one more.
    let err = queue
        .submit(NewWorkItem::new("one more"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::WorkQueueFull { capacity: 100 }),
        "{err}"
    );
    let claimed = queue.claim("agent").await.unwrap().unwrap();
    queue
        .complete(claimed.id, Completion::default())
        .await
        .unwrap();
    queue.submit(NewWorkItem::new("one more")).await.unwrap();
    assert!(supervisor.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_stays_capped_and_evicted_dependencies_still_count_as_done() {
    let f = fixture();
    let retained = 10;
    let (queue, supervisor, _storage) = open(&f.path, &limits_with(100, retained)).await;

    let first = queue.submit(NewWorkItem::new("first")).await.unwrap();
    let mut early_dependent = NewWorkItem::new("waits for first");
    early_dependent.dependencies = vec![first.id];
    let early_dependent = queue.submit(early_dependent).await.unwrap();
    let claimed = queue.claim("a").await.unwrap().unwrap();
    assert_eq!(claimed.id, first.id, "the dependent is not ready yet");
    queue
        .complete(first.id, Completion::default())
        .await
        .unwrap();
    let dependent = queue.claim("a").await.unwrap().unwrap();
    assert_eq!(dependent.id, early_dependent.id);
    queue
        .complete(dependent.id, Completion::default())
        .await
        .unwrap();

    // 100x the retention cap completes after it.
    for i in 0..(100 * retained) {
        let item = queue
            .submit(NewWorkItem::new(format!("filler {i}")))
            .await
            .unwrap();
        let claimed = queue.claim("a").await.unwrap().unwrap();
        assert_eq!(claimed.id, item.id);
        queue
            .complete(item.id, Completion::default())
            .await
            .unwrap();
        assert!(queue.gauges().finished_retained <= retained as usize);
    }
    assert_eq!(queue.gauges().finished_retained, retained as usize);

    // `first` left memory long ago; a new dependent of it is ready at once.
    let mut late = NewWorkItem::new("waits for first, submitted late");
    late.dependencies = vec![first.id];
    let late = queue.submit(late).await.unwrap();
    assert_eq!(queue.gauges().ready, 1);
    assert_eq!(queue.claim("b").await.unwrap().unwrap().id, late.id);
    assert!(supervisor.shutdown().await.is_clean());
}

/// Finished items stored for the state each holds.
async fn stored(storage: &dyn Storage, state: WorkState) -> u64 {
    let counts = storage.count_work_items_by_state().await.unwrap();
    counts
        .iter()
        .find(|(s, _)| *s == state)
        .map_or(0, |(_, n)| *n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn finished_items_on_disk_stay_within_their_limit() {
    let f = fixture();
    let limits = Limits {
        work_finished_stored_max: 5,
        ..limits_with(100, 2)
    };
    let (queue, supervisor, storage) = open(&f.path, &limits).await;
    let old = queue
        .submit(NewWorkItem::new("old dependency"))
        .await
        .unwrap();
    queue.claim("a").await.unwrap().unwrap();
    queue.complete(old.id, Completion::default()).await.unwrap();
    // Ready at once, but left unclaimed: it keeps `old` on disk.
    let mut waiting = NewWorkItem::new("depends on old");
    waiting.dependencies = vec![old.id];
    let waiting = queue.submit(waiting).await.unwrap();

    let mut fillers = Vec::new();
    for i in 0..20 {
        let mut filler = NewWorkItem::new(format!("filler {i}"));
        filler.priority = 1;
        let filler = queue.submit(filler).await.unwrap();
        assert_eq!(queue.claim("a").await.unwrap().unwrap().id, filler.id);
        queue
            .complete(filler.id, Completion::default())
            .await
            .unwrap();
        assert!(
            stored(&*storage, WorkState::Done).await <= 6,
            "after filler {i}"
        );
        fillers.push(filler.id);
    }
    // The newest 5, and the dependency of an active item.
    assert_eq!(stored(&*storage, WorkState::Done).await, 6);
    assert_eq!(queue.gauges().finished_stored, 6);
    assert_eq!(queue.gauges().finished_stored_max, 5);
    assert!(storage.work_item(old.id).await.unwrap().is_some());
    for (i, id) in fillers.iter().enumerate() {
        let kept = storage.work_item(*id).await.unwrap().is_some();
        assert_eq!(kept, i >= 15, "filler {i}");
    }
    let mut late = NewWorkItem::new("depends on a pruned item");
    late.dependencies = vec![fillers[0]];
    let err = queue.submit(late).await.unwrap_err().to_string();
    assert!(err.contains("unknown dependency"), "{err}");
    assert!(err.contains("work_finished_stored_max"), "{err}");
    assert!(supervisor.shutdown().await.is_clean());

    // Reopened with a lower limit: pruned at once; the waiting item is
    // still ready (its dependency was kept), not failed for a missing one.
    let lower = Limits {
        work_finished_stored_max: 2,
        ..limits
    };
    let (queue, supervisor, storage) = open(&f.path, &lower).await;
    assert_eq!(stored(&*storage, WorkState::Done).await, 3);
    assert_eq!(queue.gauges().finished_stored, 3);
    assert_eq!(queue.claim("b").await.unwrap().unwrap().id, waiting.id);
    queue
        .complete(waiting.id, Completion::default())
        .await
        .unwrap();
    // Nothing active needs `old` any more: the next prune takes it.
    assert_eq!(stored(&*storage, WorkState::Done).await, 2);
    assert_eq!(storage.work_item(old.id).await.unwrap(), None);
    assert!(supervisor.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_never_share_an_item() {
    let f = fixture();
    let (queue, supervisor, _storage) = open(&f.path, &limits_with(1_000, 10)).await;
    let batch: Vec<NewWorkItem> = (0..300)
        .map(|i| NewWorkItem::new(format!("job {i}")))
        .collect();
    queue.submit_batch(batch).await.unwrap();

    let mut agents = Vec::new();
    for agent in 0..8 {
        let queue = queue.clone();
        agents.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            while let Some(item) = queue.claim(&format!("agent-{agent}")).await.unwrap() {
                assert_eq!(
                    item.claimant.as_deref(),
                    Some(format!("agent-{agent}").as_str())
                );
                mine.push(item.id);
            }
            mine
        }));
    }
    let mut seen: HashSet<WorkItemId> = HashSet::new();
    for agent in agents {
        for id in agent.await.unwrap() {
            assert!(seen.insert(id), "item {id} was claimed twice");
        }
    }
    assert_eq!(seen.len(), 300);
    assert_eq!(queue.gauges().claimed, 300);
    assert!(supervisor.shutdown().await.is_clean());
}

#[tokio::test(start_paused = true)]
async fn the_reaper_returns_an_expired_claim_under_a_paused_clock() {
    let f = fixture();
    let limits = Limits {
        work_lease_s: 60,
        work_attempts_max: 2,
        ..Limits::default()
    };
    let (queue, supervisor, storage) = open(&f.path, &limits).await;
    let item = queue.submit(NewWorkItem::new("slow job")).await.unwrap();
    let claimed = queue.claim("sleepy").await.unwrap().unwrap();
    assert_eq!(claimed.id, item.id);

    // A heartbeat at 50 s carries the claim past the first 60 s.
    tokio::time::sleep(Duration::from_secs(50)).await;
    queue.heartbeat(item.id, Some("sleepy")).await.unwrap();
    tokio::time::sleep(Duration::from_secs(50)).await;
    assert_eq!(queue.gauges().claimed, 1, "the renewed lease still holds");

    // No heartbeat: the reaper (not this test) returns it at 110 s.
    tokio::time::sleep(Duration::from_secs(15)).await;
    assert_eq!(queue.gauges().claimed, 0, "the reaper returned the claim");
    let stored = storage.work_item(item.id).await.unwrap().unwrap();
    assert_eq!((stored.state, stored.attempts), (WorkState::Pending, 1));
    let reclaimed = queue.claim("awake").await.unwrap().unwrap();
    assert_eq!(reclaimed.id, item.id);

    // The second expiry uses up the attempts: failed.
    tokio::time::sleep(Duration::from_secs(61)).await;
    let stored = storage.work_item(item.id).await.unwrap().unwrap();
    assert_eq!(stored.state, WorkState::Failed);
    assert!(stored.failure_reason.unwrap().contains("work_attempts_max"));
    assert!(supervisor.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_the_queue_tasks_and_later_calls_fail_cleanly() {
    let f = fixture();
    let baseline = Handle::current().metrics().num_alive_tasks();
    let (queue, supervisor, _storage) = open(&f.path, &Limits::default()).await;
    let mut names = supervisor.names();
    names.sort();
    assert_eq!(names, [REAPER_TASK, WRITER_TASK]);
    queue.submit(NewWorkItem::new("before")).await.unwrap();

    let report = supervisor.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(supervisor.alive(), 0);
    // The metric lags a task that just ended on another worker thread.
    let alive = || Handle::current().metrics().num_alive_tasks();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while alive() != baseline && std::time::Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
    assert_eq!(alive(), baseline);
    let err = queue.submit(NewWorkItem::new("after")).await.unwrap_err();
    assert!(err.to_string().contains("shut down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_reloads_every_item_as_it_was() {
    let f = fixture();
    let limits = Limits::default();
    let (queue, supervisor, storage) = open(&f.path, &limits).await;
    let done = queue.submit(NewWorkItem::new("done")).await.unwrap();
    let mut review = NewWorkItem::new("needs review");
    review.review_required = true;
    review.requirements = vec!["documented".into()];
    let review = queue.submit(review).await.unwrap();
    let mut waiting = NewWorkItem::new("waits");
    waiting.dependencies = vec![review.id];
    let waiting = queue.submit(waiting).await.unwrap();
    let mut spec = NewWorkItem::new("spec");
    spec.phase = Phase::Spec;
    spec.priority = -5;
    let spec = queue.submit(spec).await.unwrap();

    assert_eq!(queue.claim("a").await.unwrap().unwrap().id, done.id);
    queue
        .complete(done.id, Completion::default())
        .await
        .unwrap();
    assert_eq!(queue.claim("a").await.unwrap().unwrap().id, review.id);
    let memory = mnemosyne_core::Memory {
        id: mnemosyne_core::MemoryId::new(),
        namespace: "global".parse().unwrap(),
        content: "evidence".into(),
        summary: None,
        memory_type: Default::default(),
        importance: Default::default(),
        tags: Vec::new(),
        links: Vec::new(),
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        accessed_at: chrono::Utc::now(),
        access_count: 0,
        archived: false,
    };
    storage.insert_memory(&memory, None).await.unwrap();
    let missing = mnemosyne_core::MemoryId::new();
    let err = queue
        .complete(
            review.id,
            Completion {
                evidence: vec![missing],
                ..Completion::default()
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not a stored memory"), "{err}");
    queue
        .complete(
            review.id,
            Completion {
                agent: Some("a".into()),
                evidence: vec![memory.id],
                met: vec![0],
            },
        )
        .await
        .unwrap();
    let in_review = queue.claim("b").await.unwrap().unwrap();
    assert_eq!(in_review.id, review.id, "items in review are claimable");
    let before: Vec<_> = [done.id, review.id, waiting.id, spec.id]
        .into_iter()
        .map(|id| storage.work_item(id))
        .collect();
    let mut before_items = Vec::new();
    for item in before {
        before_items.push(item.await.unwrap().unwrap());
    }
    assert!(supervisor.shutdown().await.is_clean());
    drop(queue);
    storage.close().await;

    let (queue, supervisor, _storage) = open(&f.path, &limits).await;
    for item in &before_items {
        assert_eq!(
            &queue.get(item.id).await.unwrap(),
            item,
            "reloaded as it was"
        );
    }
    let gauges = queue.gauges();
    assert_eq!(
        (gauges.active, gauges.claimed, gauges.ready, gauges.waiting),
        (3, 1, 1, 1)
    );
    assert_eq!(queue.claim("c").await.unwrap().unwrap().id, spec.id);
    let err = queue
        .complete(done.id, Completion::default())
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::InvalidTransition(ref m) if m.contains("is done")),
        "{err}"
    );
    let err = queue.heartbeat(WorkItemId::new(), None).await.unwrap_err();
    assert!(matches!(err, Error::WorkItemNotFound(_)), "{err}");
    assert!(supervisor.shutdown().await.is_clean());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_store_fails_transitions_instead_of_hanging() {
    let f = fixture();
    let (queue, supervisor, storage) = open(&f.path, &Limits::default()).await;
    queue.submit(NewWorkItem::new("kept")).await.unwrap();
    storage.close().await;
    let err = queue.submit(NewWorkItem::new("lost")).await.unwrap_err();
    assert!(matches!(err, Error::Storage(_)), "{err}");
    assert!(supervisor.shutdown().await.is_clean());
}

/// Guard for the ownership tests below: far above any wait they ask for,
/// so a hang fails instead of blocking the run.
const OWNERSHIP_TEST_GUARD: Duration = Duration::from_secs(10);

async fn acquire(db: QueueDatabase<'_>, wait: Duration) -> QueueOwnership {
    tokio::time::timeout(OWNERSHIP_TEST_GUARD, QueueOwnership::acquire(db, wait))
        .await
        .expect("acquire hung past its wait")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_owner_per_database() {
    let f = fixture();
    let db = QueueDatabase::File(&f.path);
    let owner = acquire(db, Duration::ZERO).await.into_owner().unwrap();
    let lock_file = owner.lock_file().unwrap().to_owned();
    assert_eq!(
        lock_file,
        PathBuf::from(format!("{}.work-lock", f.path.display()))
    );
    let other = match acquire(db, Duration::ZERO).await {
        QueueOwnership::OwnedByOther(other) => other,
        QueueOwnership::Owned(_) => panic!("owned twice"),
    };
    assert_eq!(other.pid(), Some(std::process::id()));
    assert_eq!(other.lock_file(), lock_file);
    assert!(
        other
            .to_string()
            .contains("held by another mnemosyne process")
    );
    drop(owner);
    let again = acquire(db, Duration::ZERO).await.into_owner().unwrap();
    assert_eq!(again.lock_file(), Some(lock_file.as_path()));
}

/// A second acquire waits `work_owner_wait_timeout_ms`, not forever (nor
/// `pool_wait_timeout_ms`), then says who owns the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_owner_waits_its_own_limit_then_hears_who_owns_the_queue() {
    let f = fixture();
    let limits = Limits {
        work_owner_wait_timeout_ms: 200,
        pool_wait_timeout_ms: 60_000,
        ..Limits::default()
    };
    let wait = Duration::from_millis(limits.work_owner_wait_timeout_ms);
    let db = QueueDatabase::File(&f.path);
    let _owner = acquire(db, wait).await.into_owner().unwrap();
    let other = acquire(db, wait).await.into_owner().unwrap_err();
    assert_eq!(other.pid(), Some(std::process::id()));
}

/// Waiting is worth it: an owner that lets go within the wait hands the queue over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_owner_takes_over_when_the_owner_lets_go() {
    let f = fixture();
    let db = QueueDatabase::File(&f.path);
    let owner = acquire(db, Duration::ZERO).await.into_owner().unwrap();
    let release = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(owner);
    });
    let taken = acquire(db, Duration::from_secs(5))
        .await
        .into_owner()
        .unwrap();
    assert!(taken.lock_file().is_some());
    release.await.unwrap();
}

/// A database with no local file takes no lock (ownership through the
/// database itself is still to come).
#[tokio::test]
async fn a_remote_database_is_owned_without_a_lock_file() {
    let owner = acquire(QueueDatabase::Remote, Duration::ZERO)
        .await
        .into_owner()
        .unwrap();
    assert_eq!(owner.lock_file(), None);
}

/// Set in the child that [`kill_9_keeps_every_acknowledged_transition`]
/// starts (to the database path): the same test, in that process, is the
/// worker to kill instead of the checker. The child is this test binary
/// re-run on that one test, so no other test is a hollow "ok" in an
/// ordinary run.
const CRASH_CHILD_DB: &str = "MNEMOSYNE_TEST_WORK_CRASH_DB";

/// The test the child runs: [`kill_9_keeps_every_acknowledged_transition`].
const CRASH_TEST: &str = "kill_9_keeps_every_acknowledged_transition";

/// The longest the parent waits for the child's next line: a child that
/// hangs without printing fails the test instead of hanging it.
const CHILD_LINE_WAIT: Duration = Duration::from_secs(60);

/// The child: four agents submit, claim and complete in a loop, printing
/// each transition once it is acknowledged, until killed.
async fn crash_child(path: &Path) {
    use std::io::Write;
    let (queue, _supervisor, _storage) = open(path, &Limits::default()).await;
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    let mut agents = Vec::new();
    for agent in 0..4 {
        let (queue, out) = (queue.clone(), Arc::clone(&out));
        agents.push(tokio::spawn(async move {
            let say = |line: String| {
                let mut out = out.lock().unwrap();
                writeln!(out, "{line}").unwrap();
                out.flush().unwrap();
            };
            for i in 0.. {
                let item = queue
                    .submit(NewWorkItem::new(format!("agent {agent} job {i}")))
                    .await
                    .unwrap();
                say(format!("SUBMITTED {}", item.id));
                let name = format!("agent-{agent}");
                if let Some(claimed) = queue.claim(&name).await.unwrap() {
                    say(format!("CLAIMED {}", claimed.id));
                    queue
                        .complete(claimed.id, Completion::default())
                        .await
                        .unwrap();
                    say(format!("DONE {}", claimed.id));
                }
            }
        }));
    }
    for agent in agents {
        agent.await.unwrap();
    }
}

/// Three rounds: a child process runs the queue and prints what it
/// acknowledged; it is killed (SIGKILL) at a random point. Every
/// acknowledged transition must be on disk afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_keeps_every_acknowledged_transition() {
    use rand::Rng;
    use std::collections::HashMap;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::sync::mpsc;

    if let Ok(path) = std::env::var(CRASH_CHILD_DB) {
        crash_child(Path::new(&path)).await;
        return;
    }
    let f = fixture();
    let mut rng = rand::rng();
    // The furthest acknowledged state of each item: 0 submitted, 1 claimed, 2 done.
    let mut acked: HashMap<WorkItemId, u8> = HashMap::new();
    for round in 0..3 {
        let kill_after = rng.random_range(50..600);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([CRASH_TEST, "--exact", "--nocapture", "--test-threads", "1"])
            .env(CRASH_CHILD_DB, &f.path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Lines arrive through a thread, so that a silent child times out.
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                if lines_tx.send(line.unwrap()).is_err() {
                    break;
                }
            }
        });
        let mut seen = 0;
        loop {
            let line = match lines.recv_timeout(CHILD_LINE_WAIT) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Disconnected) => break, // the child's stdout closed
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    child.kill().unwrap();
                    child.wait().unwrap();
                    panic!("round {round}: the child printed nothing for {CHILD_LINE_WAIT:?}");
                }
            };
            let Some((what, id)) = line.split_once(' ') else {
                continue;
            };
            let level = match what {
                "SUBMITTED" => 0,
                "CLAIMED" => 1,
                "DONE" => 2,
                _ => continue,
            };
            let id: WorkItemId = id.parse().unwrap();
            let entry = acked.entry(id).or_insert(level);
            *entry = (*entry).max(level);
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap(); // SIGKILL
                break;
            }
        }
        let status = child.wait().unwrap();
        drop(lines);
        reader.join().unwrap();
        assert!(
            status.code().is_none(),
            "round {round}: the child ended by itself ({status}) after {seen} of {kill_after} transitions"
        );
    }

    let limits = Limits::default();
    let storage = storage(&f.path, &limits).await;
    assert_eq!(storage.integrity_check().await.unwrap(), "ok");
    assert!(
        acked.values().any(|&level| level == 2),
        "some item finished"
    );
    for (id, level) in &acked {
        let item = storage
            .work_item(*id)
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("acknowledged item {id} lost"));
        match level {
            2 => assert_eq!(item.state, WorkState::Done, "{id}"),
            1 => assert!(
                matches!(item.state, WorkState::Claimed | WorkState::Done),
                "{id} was acknowledged claimed but is {}",
                item.state
            ),
            _ => {}
        }
    }
    // A restarted queue takes every active item back.
    let supervisor = Supervisor::from_limits(&limits);
    let queue = WorkQueue::open(storage.clone(), &limits, &supervisor)
        .await
        .unwrap();
    let active = storage.active_work_items().await.unwrap().len();
    assert_eq!(queue.gauges().active, active);
    assert!(supervisor.shutdown().await.is_clean());
}
