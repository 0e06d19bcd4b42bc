use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicUsize};

use tokio::time::Instant;

use super::*;

/// Tasks alive in the current runtime (stable tokio metric, no
/// `tokio_unstable` needed).
fn runtime_alive() -> usize {
    Handle::current().metrics().num_alive_tasks()
}

/// Yields until `done` holds, for at most 5 s of real time (a loaded
/// machine may take a while to run the worker thread that drops a task);
/// the caller asserts afterwards, so a condition that never holds fails the
/// test instead of hanging it.
async fn settle(done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while std::time::Instant::now() < deadline {
        if done() {
            return;
        }
        tokio::task::yield_now().await;
    }
}

/// Counts its own drops: proves a task's future was really torn down.
struct DropCount(Arc<AtomicUsize>);

impl Drop for DropCount {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn tasks_that_honour_cancellation_stop_and_the_runtime_returns_to_baseline() {
    let baseline = runtime_alive();
    let supervisor = Supervisor::new(Duration::from_secs(30));
    let cleaned_up = Arc::new(AtomicUsize::new(0));
    for _ in 0..5 {
        let cleaned_up = Arc::clone(&cleaned_up);
        supervisor
            .spawn("polite", move |token| async move {
                token.cancelled().await;
                // Cleanup after cancellation, with an await in it.
                tokio::task::yield_now().await;
                cleaned_up.fetch_add(1, Ordering::SeqCst);
            })
            .unwrap();
    }
    assert_eq!(supervisor.alive(), 5);
    assert_eq!(runtime_alive(), baseline + 5);

    let report = supervisor.shutdown().await;

    assert_eq!(
        report,
        ShutdownReport {
            stopped_in_time: 5,
            aborted: vec![],
            still_running: vec![],
        }
    );
    assert!(report.is_clean());
    assert_eq!(cleaned_up.load(Ordering::SeqCst), 5, "each ran its cleanup");
    assert_eq!(supervisor.alive(), 0);
    assert_eq!(runtime_alive(), baseline);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_on_a_multi_thread_runtime_returns_to_baseline() {
    let baseline = runtime_alive();
    let supervisor = Supervisor::new(Duration::from_secs(30));
    for name in ["a", "b", "c", "d"] {
        supervisor
            .spawn(name, |token| async move { token.cancelled().await })
            .unwrap();
    }
    assert_eq!(supervisor.alive(), 4);

    let report = supervisor.shutdown().await;

    assert_eq!(report.stopped_in_time, 4);
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(supervisor.alive(), 0);
    // The metric is not strongly consistent across worker threads: a task
    // that has just ended may be counted for a moment longer.
    settle(|| runtime_alive() == baseline).await;
    assert_eq!(runtime_alive(), baseline);
}

#[tokio::test(start_paused = true)]
async fn a_task_that_ignores_cancellation_is_aborted_at_the_deadline_and_named() {
    let baseline = runtime_alive();
    let timeout = Duration::from_secs(30);
    let supervisor = Supervisor::new(timeout);
    let drops = Arc::new(AtomicUsize::new(0));
    supervisor
        .spawn("polite", |token| async move { token.cancelled().await })
        .unwrap();
    let guard = DropCount(Arc::clone(&drops));
    supervisor
        .spawn("stubborn", move |_token| async move {
            let _guard = guard;
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        })
        .unwrap();

    let started = Instant::now();
    let report = supervisor.shutdown().await;
    let elapsed = started.elapsed();

    assert_eq!(report.stopped_in_time, 1);
    assert_eq!(report.aborted, vec!["stubborn".to_string()]);
    assert!(report.still_running.is_empty(), "{report:?}");
    assert!(!report.is_clean());
    assert!(
        elapsed >= timeout && elapsed < timeout + Duration::from_millis(ABORT_GRACE_MS),
        "aborted after {elapsed:?}, deadline {timeout:?}"
    );
    assert_eq!(drops.load(Ordering::SeqCst), 1, "the future was dropped");
    assert_eq!(supervisor.alive(), 0);
    assert_eq!(runtime_alive(), baseline);

    // Idempotent: nothing left, so an empty report, at once.
    let again = Instant::now();
    assert_eq!(supervisor.shutdown().await, ShutdownReport::default());
    assert_eq!(again.elapsed(), Duration::ZERO);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_stuck_in_blocking_code_is_reported_as_still_running() {
    let baseline = runtime_alive();
    let supervisor = Supervisor::new(Duration::from_millis(10));
    let release = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    let (release_in_task, entered_in_task) = (Arc::clone(&release), Arc::clone(&entered));
    supervisor
        .spawn("stuck", move |_token| async move {
            entered_in_task.store(true, Ordering::SeqCst);
            // Blocks its worker without ever reaching an `.await`: an abort
            // cannot land (bounded: 10 s at most if the test goes wrong).
            for _ in 0..1_000 {
                if release_in_task.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        })
        .unwrap();
    for _ in 0..1_000 {
        if entered.load(Ordering::SeqCst) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(entered.load(Ordering::SeqCst), "the task started");

    let report = supervisor.shutdown().await;

    assert_eq!(report.stopped_in_time, 0);
    assert_eq!(report.aborted, vec!["stuck".to_string()]);
    assert_eq!(report.still_running, vec!["stuck".to_string()]);
    assert_eq!(supervisor.names(), vec!["stuck".to_string()]);

    release.store(true, Ordering::SeqCst);
    for _ in 0..1_000 {
        if supervisor.alive() == 0 && runtime_alive() == baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(supervisor.alive(), 0);
    assert_eq!(runtime_alive(), baseline);
}

#[tokio::test]
async fn spawn_after_shutdown_is_refused_without_running_the_task() {
    let supervisor = Supervisor::new(Duration::from_secs(1));
    supervisor
        .spawn("early", |token| async move { token.cancelled().await })
        .unwrap();
    assert!(!supervisor.is_shutting_down());
    assert!(supervisor.shutdown().await.is_clean());
    assert!(supervisor.is_shutting_down());

    let called = Arc::new(AtomicBool::new(false));
    let called_in_closure = Arc::clone(&called);
    let refused = supervisor.spawn("late".to_string(), move |_token| {
        called_in_closure.store(true, Ordering::SeqCst);
        async {}
    });

    assert_eq!(
        refused,
        Err(SupervisorError::ShuttingDown {
            task: "late".to_string()
        })
    );
    assert!(!called.load(Ordering::SeqCst));
    assert_eq!(supervisor.spawned_total(), 1);
    assert_eq!(supervisor.alive(), 0);
}

#[test]
fn spawn_outside_a_runtime_is_refused() {
    let supervisor = Supervisor::new(Duration::from_secs(1));
    let refused = supervisor.spawn("orphan", |_token| async {});
    assert_eq!(
        refused,
        Err(SupervisorError::NoRuntime {
            task: "orphan".to_string()
        })
    );
    assert_eq!(supervisor.alive(), 0);
    assert_eq!(supervisor.spawned_total(), 0);
}

#[tokio::test]
async fn drop_aborts_every_live_task() {
    let baseline = runtime_alive();
    let drops = Arc::new(AtomicUsize::new(0));
    let supervisor = Supervisor::new(Duration::from_secs(30));
    for _ in 0..3 {
        let guard = DropCount(Arc::clone(&drops));
        supervisor
            .spawn("forever", move |_token| async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            })
            .unwrap();
    }
    assert_eq!(runtime_alive(), baseline + 3);

    drop(supervisor);
    tokio::task::yield_now().await;
    settle(|| runtime_alive() == baseline).await;

    assert_eq!(runtime_alive(), baseline);
    assert_eq!(drops.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_panicking_task_is_logged_and_removed_and_the_others_carry_on() {
    let logs = Captured::default();
    let _subscriber = tracing::subscriber::set_default(logs.clone());
    let supervisor = Supervisor::new(Duration::from_secs(30));
    supervisor
        .spawn("steady", |token| async move { token.cancelled().await })
        .unwrap();
    supervisor
        .spawn("boom", |_token| async move {
            tokio::task::yield_now().await;
            panic!("kaboom in the background");
        })
        .unwrap();
    assert_eq!(supervisor.alive(), 2);

    settle(|| supervisor.alive() == 1).await;

    assert_eq!(supervisor.names(), vec!["steady".to_string()]);
    assert_eq!(supervisor.panicked_total(), 1);
    let lines = logs.lines();
    assert!(
        lines.iter().any(|line| line.starts_with("ERROR")
            && line.contains("task=boom")
            && line.contains("kaboom in the background")),
        "{lines:#?}"
    );
    // The supervisor still works: new tasks start, shutdown is clean.
    supervisor
        .spawn("after", |token| async move { token.cancelled().await })
        .unwrap();
    let report = supervisor.shutdown().await;
    assert_eq!(report.stopped_in_time, 2);
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn the_registry_holds_only_live_tasks_over_ten_thousand_short_ones() {
    let baseline = runtime_alive();
    let supervisor = Supervisor::new(Duration::from_secs(30));
    let ran = Arc::new(AtomicUsize::new(0));
    let (batches, batch) = (10, 1_000);
    let mut peak = 0;
    for _ in 0..batches {
        for _ in 0..batch {
            let ran = Arc::clone(&ran);
            supervisor
                .spawn("short", move |_token| async move {
                    ran.fetch_add(1, Ordering::Relaxed);
                })
                .unwrap();
        }
        peak = peak.max(supervisor.alive());
        settle(|| supervisor.alive() == 0).await;
        assert_eq!(supervisor.alive(), 0, "registry emptied after a batch");
    }

    assert_eq!(ran.load(Ordering::Relaxed), batches * batch);
    assert_eq!(supervisor.spawned_total(), (batches * batch) as u64);
    assert_eq!(peak, batch, "never more than one batch registered");
    assert_eq!(runtime_alive(), baseline);
    assert_eq!(supervisor.shutdown().await, ShutdownReport::default());
}

#[tokio::test]
async fn names_are_sorted_and_the_observer_token_fires_on_shutdown_only() {
    let supervisor = Supervisor::new(Duration::from_secs(30));
    for name in ["monitor", "compactor", "heartbeat", "compactor"] {
        supervisor
            .spawn(name, |token| async move { token.cancelled().await })
            .unwrap();
    }
    assert_eq!(
        supervisor.names(),
        vec!["compactor", "compactor", "heartbeat", "monitor"]
    );
    assert_eq!(supervisor.alive(), 4);

    // Cancelling an observer's token stops nothing.
    let observer = supervisor.cancellation_token();
    observer.cancel();
    tokio::task::yield_now().await;
    assert_eq!(supervisor.alive(), 4);

    let watcher = supervisor.cancellation_token();
    assert!(!watcher.is_cancelled());
    let report = supervisor.shutdown().await;
    assert!(watcher.is_cancelled());
    assert_eq!(report.stopped_in_time, 4);
}

#[test]
fn from_limits_takes_the_shutdown_timeout() {
    let limits = Limits {
        shutdown_timeout_s: 7,
        ..Limits::default()
    };
    let supervisor = Supervisor::from_limits(&limits);
    assert_eq!(supervisor.shutdown_timeout(), Duration::from_secs(7));
    let debug = format!("{supervisor:?}");
    assert!(debug.contains("alive: 0"), "{debug}");
}

/// A minimal tracing subscriber that keeps every event as one line
/// (`LEVEL field=value ...`), for asserting on logs without a dependency.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<String>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl tracing::Subscriber for Captured {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }

    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = event.metadata().level().to_string();
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}
