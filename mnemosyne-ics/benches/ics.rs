//! Context document benches (targets from issue 5):
//! - a 1-character splice into a 100 KB document: p50 under 50 µs;
//! - loading a compacted 100 KB document: under 5 ms.
//!
//! Besides criterion's means, a percentile pass times splices one by one and
//! prints p50/p99 (`cargo bench -p mnemosyne-ics`). The document is compacted
//! every `crdt_compact_every_ops` splices, outside the timing, as the store's
//! default policy would. `MNEMOSYNE_BENCH_QUICK=1` shortens every run.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use mnemosyne_core::Limits;
use mnemosyne_ics::{Base, Change, CrdtText, DocumentStore, Edit, NewDocument, Splice};
use mnemosyne_storage::Location;

const DOC_BYTES: usize = 100 * 1024;

fn quick() -> bool {
    std::env::var_os("MNEMOSYNE_BENCH_QUICK").is_some()
}

fn criterion() -> Criterion {
    Criterion::default()
        .configure_from_args()
        .measurement_time(Duration::from_secs(if quick() { 1 } else { 5 }))
        .warm_up_time(Duration::from_secs(1))
}

/// 100 KB of prose-like ASCII lines.
fn text_100kb() -> String {
    let line = "the lease reaper must not hold the queue lock while it waits for sqlite\n";
    line.repeat(DOC_BYTES / line.len() + 1)[..DOC_BYTES].to_owned()
}

#[path = "../tests/common/lcg.rs"]
mod lcg;
use lcg::Lcg;

/// The next single-character splice: insert and delete alternate, so the
/// text stays at 100 KB.
fn next_splice(rng: &mut Lcg, i: u64, len: usize) -> Splice {
    if i.is_multiple_of(2) {
        Splice {
            pos: rng.next(len + 1),
            delete: 0,
            insert: "x".into(),
        }
    } else {
        Splice {
            pos: rng.next(len),
            delete: 1,
            insert: String::new(),
        }
    }
}

struct Splicer {
    doc: CrdtText,
    rng: Lcg,
    i: u64,
    every: u64,
}

impl Splicer {
    fn new(every: u64) -> Self {
        Self {
            doc: CrdtText::new(&text_100kb()),
            rng: Lcg(7),
            i: 0,
            every,
        }
    }

    /// One timed splice (with its incremental save, as the store does);
    /// compaction, when due, happens after the timing.
    fn step(&mut self) -> Duration {
        let splice = next_splice(&mut self.rng, self.i, self.doc.len_chars());
        let started = Instant::now();
        self.doc
            .apply("bench", std::slice::from_ref(&splice))
            .unwrap();
        black_box(self.doc.save_incremental());
        let took = started.elapsed();
        self.i += 1;
        if self.i.is_multiple_of(self.every) {
            self.doc = self.doc.compacted();
        }
        took
    }
}

fn bench_splice(c: &mut Criterion) {
    let every = u64::from(Limits::default().crdt_compact_every_ops);
    let mut splicer = Splicer::new(every);
    c.bench_function("ics/splice_1char_100kb", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| splicer.step()).sum())
    });

    let samples_count = if quick() { 5_000 } else { 50_000 };
    let mut splicer = Splicer::new(every);
    let mut samples: Vec<Duration> = (0..samples_count).map(|_| splicer.step()).collect();
    samples.sort();
    let pick = |q: f64| samples[((samples.len() as f64 * q) as usize).min(samples.len() - 1)];
    println!(
        "ics/splice_1char_100kb percentiles over {samples_count} splices: p50 {:.1} µs, p99 {:.1} µs, max {:.1} µs (target p50 < 50 µs)",
        pick(0.50).as_secs_f64() * 1e6,
        pick(0.99).as_secs_f64() * 1e6,
        pick(1.0).as_secs_f64() * 1e6,
    );
}

fn bench_load(c: &mut Criterion) {
    let snapshot = CrdtText::new(&text_100kb()).save();
    println!("compacted 100 KB document: {} bytes saved", snapshot.len());
    c.bench_function("ics/load_compacted_100kb", |b| {
        b.iter(|| CrdtText::load(black_box(&snapshot), &[]).unwrap())
    });
    c.bench_function("ics/load_compacted_100kb_with_text", |b| {
        b.iter(|| CrdtText::load(black_box(&snapshot), &[]).unwrap().text())
    });
}

/// Through the store and a real database: what an agent's edit costs end to end.
fn bench_store(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The pool's connections are dropped at the end: inside the runtime.
    let _runtime = rt.enter();
    let dir = tempfile::tempdir().unwrap();
    let limits = Limits::default();
    let storage = rt
        .block_on(mnemosyne_storage::open_storage(
            &Location::File(dir.path().join("bench.db")),
            &limits,
        ))
        .unwrap();
    let docs = Arc::new(DocumentStore::new(storage, limits));
    rt.block_on(docs.create(NewDocument {
        name: "big".into(),
        namespace: Default::default(),
        title: String::new(),
        text: text_100kb(),
        actor: "bench".into(),
    }))
    .unwrap();
    let mut rng = Lcg(11);
    let mut i = 0u64;
    let mut len = DOC_BYTES;
    c.bench_function("ics/store_edit_1char_100kb", |b| {
        b.iter(|| {
            let splice = next_splice(&mut rng, i, len);
            len = if i.is_multiple_of(2) {
                len + 1
            } else {
                len - 1
            };
            i += 1;
            rt.block_on(docs.edit(
                "big",
                Edit {
                    actor: "bench".into(),
                    base: Base::default(),
                    change: Change::Splices(vec![splice]),
                },
            ))
            .unwrap()
        })
    });
    rt.block_on(docs.compact("big", "bench")).unwrap();
    c.bench_function("ics/store_read_compacted_100kb", |b| {
        b.iter(|| rt.block_on(docs.read("big")).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = criterion();
    targets = bench_splice, bench_load, bench_store
}
criterion_main!(benches);
