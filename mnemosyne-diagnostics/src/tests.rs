//! The tracker reads live structures; the monitor judges and alerts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use mnemosyne_core::Limits;
use mnemosyne_orchestration::{NewWorkItem, Supervisor, WorkQueue};
use mnemosyne_storage::{Location, open_storage};

use super::*;

fn snapshot_with(rss: u64, limit: u64, gauges: Vec<Gauge>) -> Snapshot {
    let mut snapshot = Snapshot::take(gauges);
    snapshot.process.rss_bytes = Some(rss);
    snapshot.process.open_fds = Some(10);
    snapshot.process.fd_limit = Some(1024);
    snapshot.memory_limit = MemoryLimit {
        bytes: limit,
        source: LimitSource::MemTotal,
    };
    snapshot
}

#[test]
fn thresholds_are_relative_to_the_real_limits() {
    let thresholds = Thresholds::from_limits(&Limits::default());
    let gib = 1 << 30;
    assert!(
        thresholds
            .judge(&snapshot_with(gib / 4, gib, vec![]))
            .is_empty()
    );
    let warn = thresholds.judge(&snapshot_with(gib * 6 / 10, gib, vec![]));
    assert_eq!((warn[0].what.as_str(), warn[0].level), ("rss", Level::Warn));
    let critical = thresholds.judge(&snapshot_with(gib * 9 / 10, gib, vec![]));
    assert_eq!(critical[0].level, Level::Critical);
    // The same RSS under a machine 4x as large is fine.
    assert!(
        thresholds
            .judge(&snapshot_with(gib * 9 / 10, 4 * gib, vec![]))
            .is_empty()
    );

    let gauges = vec![
        Gauge::new("mnemosyne_a", "a", 95).with_max(100),
        Gauge::new("mnemosyne_b", "b", 101).with_max(100),
        Gauge::new("mnemosyne_c", "c", 50).with_max(100),
        Gauge::new("mnemosyne_d", "d", 1_000_000),
        // A cache at its cap is normal; past it is not.
        Gauge::new("mnemosyne_e", "e", 100).with_cap(100),
        Gauge::new("mnemosyne_f", "f", 101).with_cap(100),
    ];
    let alerts = thresholds.judge(&snapshot_with(1, gib, gauges));
    let judged: Vec<(&str, Level)> = alerts.iter().map(|a| (a.what.as_str(), a.level)).collect();
    assert_eq!(
        judged,
        [
            ("mnemosyne_a", Level::Warn),
            ("mnemosyne_b", Level::Critical),
            ("mnemosyne_f", Level::Critical)
        ]
    );
    assert!(
        alerts[1].message.contains("over its limit 100"),
        "{}",
        alerts[1].message
    );

    let mut fds = snapshot_with(1, gib, vec![]);
    fds.process.open_fds = Some(900);
    let alerts = thresholds.judge(&fds);
    assert_eq!(
        (alerts[0].what.as_str(), alerts[0].level),
        ("open_fds", Level::Warn)
    );
}

#[test]
fn prometheus_text_has_every_gauge_and_its_limit() {
    let snapshot = snapshot_with(
        5 << 20,
        1 << 30,
        vec![Gauge::new("mnemosyne_work_items_active", "active items", 3).with_max(10)],
    );
    let text = snapshot.to_prometheus();
    for line in [
        "# TYPE mnemosyne_process_resident_memory_bytes gauge",
        "mnemosyne_process_resident_memory_bytes 5242880",
        "mnemosyne_memory_limit_bytes 1073741824",
        "# HELP mnemosyne_work_items_active active items",
        "mnemosyne_work_items_active 3",
        "mnemosyne_work_items_active_max 10",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    let json = serde_json::to_string(&snapshot).unwrap();
    let back: Snapshot = serde_json::from_str(&json).unwrap();
    assert_eq!(back, snapshot);
}

#[test]
fn sources_are_bounded_and_replaced_by_name() {
    let tracker = MemoryTracker::new();
    for i in 0..SOURCES_MAX {
        tracker
            .register(format!("s{i}"), move |g| {
                g.push(Gauge::new("x", "x", i as u64))
            })
            .unwrap();
    }
    tracker
        .register("s0", |g| g.push(Gauge::new("x", "x", 99)))
        .unwrap();
    assert_eq!(tracker.gauges()[0].value, 99, "replaced in place");
    let err = tracker.register("one more", |_| {}).unwrap_err();
    assert!(matches!(
        err,
        TrackerError::TooManySources {
            max: SOURCES_MAX,
            ..
        }
    ));
    assert_eq!(tracker.source_names().len(), SOURCES_MAX);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gauges_follow_the_live_pool_queue_and_supervisor() {
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits {
        work_items_max: 50,
        ..Limits::default()
    };
    let storage = open_storage(&Location::File(dir.path().join("d.db")), &limits)
        .await
        .unwrap();
    let supervisor = Arc::new(Supervisor::from_limits(&limits));
    let queue = WorkQueue::open(storage.clone(), &limits, &supervisor)
        .await
        .unwrap();
    let tracker = MemoryTracker::new();
    tracker.watch_storage(Arc::clone(&storage)).unwrap();
    tracker.watch_work_queue(queue.clone()).unwrap();
    tracker.watch_supervisor(Arc::clone(&supervisor)).unwrap();

    let before = tracker.snapshot();
    assert_eq!(
        before.gauge("mnemosyne_work_items_active").unwrap().value,
        0
    );
    assert_eq!(
        before.gauge("mnemosyne_work_items_active").unwrap().max,
        Some(50)
    );
    assert_eq!(before.gauge("mnemosyne_tasks_alive").unwrap().value, 2);
    assert_eq!(
        before.gauge("mnemosyne_pool_readers_open").unwrap().max,
        Some(u64::from(limits.pool_readers_max))
    );
    for i in 0..7 {
        queue
            .submit(NewWorkItem::new(format!("job {i}")))
            .await
            .unwrap();
    }
    queue.claim("a").await.unwrap().unwrap();
    let after = tracker.snapshot();
    assert_eq!(after.gauge("mnemosyne_work_items_active").unwrap().value, 7);
    assert_eq!(
        after.gauge("mnemosyne_work_items_claimed").unwrap().value,
        1
    );
    assert!(after.process.rss_bytes.is_some() || !cfg!(target_os = "linux"));

    assert!(supervisor.shutdown().await.is_clean());
    assert_eq!(
        tracker
            .snapshot()
            .gauge("mnemosyne_tasks_alive")
            .unwrap()
            .value,
        0
    );
}

#[tokio::test(start_paused = true)]
async fn the_monitor_alerts_once_per_crossing_and_stops_with_the_supervisor() {
    let level = Arc::new(AtomicU64::new(10));
    let tracker = Arc::new(MemoryTracker::new());
    let read = Arc::clone(&level);
    tracker
        .register("test", move |g| {
            g.push(
                Gauge::new(
                    "mnemosyne_test_depth",
                    "depth",
                    read.load(Ordering::Relaxed),
                )
                .with_max(100),
            );
        })
        .unwrap();
    let supervisor = Supervisor::new(Duration::from_secs(5));
    let thresholds = Thresholds::from_limits(&Limits::default());
    let monitor = Monitor::spawn(
        Arc::clone(&tracker),
        thresholds,
        Duration::from_secs(30),
        16,
        &supervisor,
    )
    .unwrap();
    let mut alerts = monitor.subscribe();
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(monitor.latest().is_some(), "the first tick samples at once");
    assert!(
        monitor
            .active_alerts()
            .iter()
            .all(|a| a.what != "mnemosyne_test_depth")
    );

    level.store(120, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs(30)).await;
    let alert = loop {
        let alert = alerts.try_recv().unwrap();
        if alert.what == "mnemosyne_test_depth" {
            break alert;
        }
    };
    assert_eq!((alert.level, alert.value), (Level::Critical, 120));
    // Still over at the next tick: no second alert.
    tokio::time::sleep(Duration::from_secs(30)).await;
    while let Ok(again) = alerts.try_recv() {
        assert_ne!(again.what, "mnemosyne_test_depth", "raised twice");
    }
    assert!(
        monitor
            .active_alerts()
            .iter()
            .any(|a| a.what == "mnemosyne_test_depth")
    );

    assert_eq!(supervisor.names(), [MONITOR_TASK]);
    assert!(supervisor.shutdown().await.is_clean());
    assert_eq!(supervisor.alive(), 0);
}
