//! The persistent work queue under load (issue 4's targets):
//! - `round_trip/agents_N`: submit + claim + complete of one item per
//!   iteration, N agents at once (group commit shares each transaction);
//! - `claim/active_N`: one persistent claim with N items active (the item
//!   is completed and replaced outside the timed part, so N stays put).
//!
//! Run: `cargo bench -p mnemosyne-orchestration --bench work_queue`
//! (`--no-default-features --features libsql` for the libsql backend).

use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use mnemosyne_core::Limits;
use mnemosyne_orchestration::{Completion, NewWorkItem, Supervisor, WorkQueue};
use mnemosyne_storage::{Location, open_storage};
use tokio::runtime::Runtime;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn limits() -> Limits {
    Limits {
        work_items_max: 20_000,
        ..Limits::default()
    }
}

async fn open(path: &Path) -> (WorkQueue, Supervisor) {
    let limits = limits();
    let storage = open_storage(&Location::File(path.to_owned()), &limits)
        .await
        .unwrap();
    let supervisor = Supervisor::from_limits(&limits);
    let queue = WorkQueue::open(storage, &limits, &supervisor)
        .await
        .unwrap();
    (queue, supervisor)
}

async fn round_trip(queue: &WorkQueue, agent: &str) {
    let item = queue.submit(NewWorkItem::new("bench item")).await.unwrap();
    let claimed = queue.claim(agent).await.unwrap().expect("an item is ready");
    queue
        .complete(claimed.id, Completion::default())
        .await
        .unwrap();
    std::hint::black_box(item);
}

fn round_trips(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("round_trip");
    group.throughput(Throughput::Elements(1));
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(8));
    for agents in [1usize, 8, 32] {
        let dir = tempfile::tempdir().unwrap();
        let (queue, supervisor) = rt.block_on(open(&dir.path().join("bench.db")));
        group.bench_with_input(BenchmarkId::new("agents", agents), &agents, |b, &agents| {
            b.to_async(&rt).iter_custom(|iters| {
                let queue = queue.clone();
                async move {
                    let per_agent = iters.div_ceil(agents as u64);
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for agent in 0..agents {
                        let queue = queue.clone();
                        tasks.push(tokio::spawn(async move {
                            let name = format!("agent-{agent}");
                            for _ in 0..per_agent {
                                round_trip(&queue, &name).await;
                            }
                        }));
                    }
                    for task in tasks {
                        task.await.unwrap();
                    }
                    // Report the time per requested iteration.
                    start
                        .elapsed()
                        .mul_f64(iters as f64 / (per_agent * agents as u64) as f64)
                }
            });
        });
        // The pools' connections must be dropped inside the runtime.
        rt.block_on(async move {
            supervisor.shutdown().await;
            drop(queue);
        });
    }
    group.finish();
}

fn claims(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("claim");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(6));
    for active in [100usize, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        let (queue, supervisor) = rt.block_on(open(&dir.path().join("bench.db")));
        rt.block_on(async {
            for chunk in (0..active).collect::<Vec<_>>().chunks(1_000) {
                let batch = chunk
                    .iter()
                    .map(|i| {
                        let mut item = NewWorkItem::new(format!("filler {i}"));
                        item.priority = (*i % 7) as i32;
                        item
                    })
                    .collect();
                queue.submit_batch(batch).await.unwrap();
            }
        });
        assert_eq!(queue.gauges().active, active);
        group.bench_with_input(BenchmarkId::new("active", active), &active, |b, _| {
            b.to_async(&rt).iter_custom(|iters| {
                let queue = queue.clone();
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let start = Instant::now();
                        let claimed = queue.claim("bench").await.unwrap().unwrap();
                        timed += start.elapsed();
                        queue
                            .complete(claimed.id, Completion::default())
                            .await
                            .unwrap();
                        queue.submit(NewWorkItem::new("refill")).await.unwrap();
                    }
                    timed
                }
            });
        });
        assert_eq!(
            queue.gauges().active,
            active,
            "claims ran at a constant size"
        );
        // The pools' connections must be dropped inside the runtime.
        rt.block_on(async move {
            supervisor.shutdown().await;
            drop(queue);
        });
    }
    group.finish();
}

criterion_group!(benches, round_trips, claims);
criterion_main!(benches);
