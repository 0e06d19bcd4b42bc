//! Conformance checks of the embedding worker: embedding off the write
//! path, the bounded backlog, retries, stopping, and the pass over the
//! memories missing a vector at start.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use mnemosyne_core::{Embedder, Error, Limits, MemoryId, MemoryPatch, PendingKind};
use mnemosyne_storage::{MemoryStore, RecallMode};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Backend, TrigramEmbedder, embedding, fixture, new_memory, open, recall_mode};

/// Bound on every wait below: reaching it fails the test instead of hanging
/// it. Nothing checks how fast anything is.
const WAIT_MAX: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(5);

/// Marks a text whose storage call waits for the gate.
const HOLD: &str = "[hold]";

/// Trigram vectors (as [`TrigramEmbedder`], under its own model id). A
/// storage call with a text marked [`HOLD`] waits for the gate to open;
/// storage calls fail while `fail` is set, and each is recorded.
#[derive(Debug)]
struct GatedEmbedder {
    open: watch::Sender<bool>,
    fail: AtomicBool,
    /// (when, texts) of every storage call, failed ones included.
    calls: Mutex<Vec<(Instant, usize)>>,
}

impl GatedEmbedder {
    fn new(open: bool) -> Arc<Self> {
        Arc::new(Self {
            open: watch::Sender::new(open),
            fail: AtomicBool::new(false),
            calls: Mutex::new(Vec::new()),
        })
    }

    fn open(&self) {
        self.open.send_replace(true);
    }

    fn calls(&self) -> Vec<(Instant, usize)> {
        self.calls.lock().unwrap().clone()
    }
}

#[async_trait]
impl Embedder for GatedEmbedder {
    fn model_id(&self) -> &str {
        "test-gated-64"
    }

    fn dims(&self) -> usize {
        64
    }

    async fn embed(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        TrigramEmbedder.embed(texts).await
    }

    async fn embed_for_storage(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        if texts.iter().any(|text| text.contains(HOLD)) {
            let mut open = self.open.subscribe();
            let _ = open.wait_for(|open| *open).await;
        }
        self.calls
            .lock()
            .unwrap()
            .push((Instant::now(), texts.len()));
        if self.fail.load(Ordering::SeqCst) {
            return Err(Error::Embedding("the test embedder is down".into()));
        }
        TrigramEmbedder.embed(texts).await
    }
}

async fn gated_store<B: Backend>(
    path: &std::path::Path,
    limits: Limits,
    embedder: &Arc<GatedEmbedder>,
) -> MemoryStore {
    open::<B>(path, limits)
        .await
        .with_embedder(Arc::clone(embedder) as Arc<dyn Embedder>)
}

/// Starts the store's worker on its own task; returns its token and handle.
fn start_worker(store: &MemoryStore) -> (CancellationToken, JoinHandle<()>) {
    let worker = store.start_embedding_worker().expect("start the worker");
    let token = CancellationToken::new();
    let handle = tokio::spawn(worker.run(token.clone()));
    (token, handle)
}

/// Waits until `check` holds, at most [`WAIT_MAX`].
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT_MAX;
    while !check().await {
        assert!(Instant::now() < deadline, "gave up waiting until {what}");
        tokio::time::sleep(POLL).await;
    }
}

async fn missing(store: &MemoryStore) -> u64 {
    store.pending_count(PendingKind::Missing).await.unwrap()
}

async fn vector_hits(store: &MemoryStore, text: &str) -> Vec<MemoryId> {
    store
        .recall(recall_mode(text, RecallMode::Vector))
        .await
        .unwrap()
        .hits
        .iter()
        .map(|hit| hit.memory.id)
        .collect()
}

/// Stops the worker and waits for its task to end.
async fn stop(token: CancellationToken, handle: JoinHandle<()>) {
    token.cancel();
    tokio::time::timeout(WAIT_MAX, handle)
        .await
        .expect("the worker stops once cancelled")
        .expect("the worker does not panic");
}

/// `remember` commits at once without the vector; the worker embeds in
/// batches of `embedding_batch_max` and skips memories deleted meanwhile.
pub async fn the_worker_embeds_remembered_memories_off_the_write_path<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedding_batch_max: 2,
        ..Limits::default()
    };
    let embedder = GatedEmbedder::new(false);
    let store = gated_store::<B>(&f.path, limits, &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().expect("a worker runs");
    assert_eq!(backlog.capacity(), 10_000);

    let mut ids = Vec::new();
    for i in 0..5 {
        let memory = store
            .remember(new_memory(
                &format!("queued note {i} about lighthouses {HOLD}"),
                "global",
            ))
            .await
            .unwrap();
        ids.push(memory.id);
    }
    // Acknowledged and stored, found by keyword, no vector yet (the embedder waits).
    assert_eq!(store.count(true).await.unwrap(), 5);
    assert_eq!(missing(&store).await, 5);
    assert_eq!(backlog.waiting(), 5);
    let keyword = store
        .recall(recall_mode("lighthouses", RecallMode::Keyword))
        .await
        .unwrap();
    assert_eq!(keyword.hits.len(), 5);
    assert!(
        vector_hits(&store, "queued note lighthouses")
            .await
            .is_empty()
    );

    // Meanwhile one is deleted: whether its text was read already or not,
    // no vector is stored for it.
    store.forget(ids[4], true).await.unwrap();
    embedder.open();
    eventually("every vector is stored", || async {
        missing(&store).await == 0 && backlog.waiting() == 0
    })
    .await;
    assert_eq!(backlog.embedded_total(), 4, "the deleted one was skipped");
    assert_eq!(backlog.errors_total(), 0);
    assert!(
        embedder.calls().iter().all(|(_, texts)| *texts <= 2),
        "at most embedding_batch_max texts per call: {:?}",
        embedder.calls()
    );
    let found = vector_hits(&store, "queued note lighthouses").await;
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(ids[..4].iter().all(|id| found.contains(id)));
    eventually("the worker's count of missing vectors is 0", || async {
        backlog.missing() == Some(0)
    })
    .await;
    stop(token, handle).await;
    assert!(store.embedding_backlog().is_none(), "the worker stopped");
}

/// The worker read a memory's text, then an update stored the vector of a
/// new text: the worker's vector of the old text does not replace it.
pub async fn a_vector_made_before_an_update_never_replaces_the_updates_vector<B: Backend>() {
    let f = fixture();
    let embedder = GatedEmbedder::new(false);
    let store = gated_store::<B>(&f.path, Limits::default(), &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    let memory = store
        .remember(new_memory(
            &format!("the old text about ferries {HOLD}"),
            "global",
        ))
        .await
        .unwrap();
    eventually("the worker embeds the old text", || async {
        embedder.open.receiver_count() > 0
    })
    .await;
    let patch = MemoryPatch {
        content: Some("the new text about harbour cranes".into()),
        ..MemoryPatch::default()
    };
    store.update(memory.id, patch).await.unwrap();
    embedder.open();
    eventually("the worker is done", || async { backlog.waiting() == 0 }).await;
    assert_eq!(backlog.embedded_total(), 0, "its vector was not stored");
    let hits = store
        .storage()
        .vector_search(&mnemosyne_core::VectorQuery {
            vector: TrigramEmbedder
                .embed(&["the new text about harbour cranes"])
                .await
                .unwrap()
                .remove(0),
            model_id: "test-gated-64".into(),
            namespaces: Vec::new(),
            tags: Vec::new(),
            limit: 1,
            include_archived: false,
            min_importance: None,
        })
        .await
        .unwrap();
    assert_eq!(hits[0].memory.id, memory.id);
    assert!(
        (hits[0].similarity - 1.0).abs() < 1e-5,
        "the update's vector was kept: {hits:?}"
    );
    stop(token, handle).await;
}

/// A full backlog makes `remember` wait `embedding_backlog_wait_ms`, then
/// fail with `EmbeddingBacklogFull` having stored nothing; a remember that
/// finds room within its wait goes through. Stopping the worker in the
/// middle of an embedder call leaves the memories without a vector on disk.
pub async fn a_full_embedding_backlog_refuses_remember_and_stores_nothing<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedding_batch_max: 1,
        embedding_backlog_max: 3,
        embedding_backlog_wait_ms: 50,
        ..Limits::default()
    };
    let embedder = GatedEmbedder::new(false);
    let store = gated_store::<B>(&f.path, limits.clone(), &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    for i in 0..3 {
        store
            .remember(new_memory(
                &format!("fills the backlog {i} {HOLD}"),
                "global",
            ))
            .await
            .unwrap();
    }
    assert_eq!(backlog.waiting(), 3);
    let err = store
        .remember(new_memory("one too many", "global"))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::EmbeddingBacklogFull {
                capacity: 3,
                waited_ms: 50
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("embedding_backlog_max") && message.contains("retry"),
        "{message}"
    );
    assert_eq!(
        store.count(true).await.unwrap(),
        3,
        "the refused one wrote nothing"
    );
    assert_eq!(backlog.waiting(), 3, "and took no room");

    // The worker is in the middle of an embedder call: stopping abandons it.
    eventually("the worker holds a batch", || async {
        embedder.open.receiver_count() > 0
    })
    .await;
    stop(token, handle).await;
    assert_eq!(missing(&store).await, 3, "nothing was embedded");

    // A new worker, with time to wait: a remember waits for room, and gets it.
    let waiting = Limits {
        embedding_backlog_wait_ms: 60_000,
        ..limits
    };
    let store = gated_store::<B>(&f.path, waiting, &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    for i in 0..3 {
        store
            .remember(new_memory(&format!("fills it again {i} {HOLD}"), "global"))
            .await
            .unwrap();
    }
    assert_eq!(backlog.waiting(), 3);
    let late = tokio::spawn({
        let store = store.clone();
        async move { store.remember(new_memory("waits for room", "global")).await }
    });
    assert_eq!(
        store.count(true).await.unwrap(),
        6,
        "not stored before room was made"
    );
    embedder.open();
    let late = tokio::time::timeout(WAIT_MAX, late)
        .await
        .expect("room was made")
        .unwrap()
        .expect("the waiting remember went through");
    eventually("every vector is stored", || async {
        missing(&store).await == 0
    })
    .await;
    assert_eq!(
        backlog.embedded_total(),
        7,
        "the 3 left without a vector by the stopped worker, the 3 of this one and the late one"
    );
    assert!(
        vector_hits(&store, "waits for room")
            .await
            .contains(&late.id)
    );
    stop(token, handle).await;
}

/// A remember waiting for room when the worker stops does not wait out its
/// `embedding_backlog_wait_ms`: it embeds inline, as without a worker.
pub async fn a_remember_waiting_for_room_embeds_inline_once_the_worker_stops<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedding_batch_max: 1,
        embedding_backlog_max: 1,
        embedding_backlog_wait_ms: 3_600_000,
        ..Limits::default()
    };
    let embedder = GatedEmbedder::new(false);
    let store = gated_store::<B>(&f.path, limits, &embedder).await;
    let (token, handle) = start_worker(&store);
    let held = store
        .remember(new_memory(&format!("held by the worker {HOLD}"), "global"))
        .await
        .unwrap();
    assert_eq!(store.embedding_backlog().unwrap().waiting(), 1);
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.remember(new_memory("waits for room", "global")).await }
    });
    eventually("the worker holds its batch", || async {
        embedder.open.receiver_count() > 0
    })
    .await;
    stop(token, handle).await;
    let inline = tokio::time::timeout(WAIT_MAX, waiting)
        .await
        .expect("the waiting remember ends once the worker is gone")
        .unwrap()
        .expect("and goes through");
    assert_eq!(
        missing(&store).await,
        1,
        "only the held one lacks its vector"
    );
    let found = vector_hits(&store, "waits for room").await;
    assert!(
        found.contains(&inline.id) && !found.contains(&held.id),
        "{found:?}"
    );
}

/// A failing embedder: the batch is kept and retried after
/// `embedder_backoff_ms`, doubled after each failure up to
/// `embedder_timeout_ms` (no spinning), and nothing is lost once it recovers.
pub async fn a_failing_embedder_is_retried_with_backoff_and_loses_nothing<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedder_backoff_ms: 20,
        embedder_timeout_ms: 80,
        ..Limits::default()
    };
    let embedder = GatedEmbedder::new(true);
    embedder.fail.store(true, Ordering::SeqCst);
    let store = gated_store::<B>(&f.path, limits, &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    for i in 0..3 {
        store
            .remember(new_memory(&format!("survives an outage {i}"), "global"))
            .await
            .unwrap();
    }
    eventually("five attempts failed", || async {
        backlog.errors_total() >= 5
    })
    .await;
    let calls = embedder.calls();
    assert_eq!(
        backlog.errors_total(),
        calls.len() as u64,
        "every failed attempt counted once"
    );
    // Attempt k+1 starts no sooner than the k-th wait after attempt k.
    let waits_ms = [20, 40, 80, 80];
    for (k, pair) in calls.windows(2).take(waits_ms.len()).enumerate() {
        let gap = pair[1].0 - pair[0].0;
        assert!(
            gap >= Duration::from_millis(waits_ms[k]),
            "attempt {} came {gap:?} after the previous one, before its {} ms wait",
            k + 2,
            waits_ms[k]
        );
    }
    assert_eq!(missing(&store).await, 3);
    assert_eq!(store.count(true).await.unwrap(), 3);

    embedder.fail.store(false, Ordering::SeqCst);
    eventually("every vector is stored", || async {
        missing(&store).await == 0 && backlog.waiting() == 0
    })
    .await;
    assert_eq!(backlog.embedded_total(), 3);
    assert_eq!(vector_hits(&store, "survives an outage").await.len(), 3);
    stop(token, handle).await;
}

/// A worker stopped in its backoff wait ends at once; without a running
/// worker `remember` embeds inline; the next worker's start embeds every
/// memory missing a vector, but not the stale ones (that is `reindex`).
pub async fn the_next_worker_embeds_what_the_last_one_left<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedder_backoff_ms: 60_000,
        embedder_timeout_ms: 60_000,
        ..Limits::default()
    };
    let embedder = GatedEmbedder::new(true);
    embedder.fail.store(true, Ordering::SeqCst);
    let store = gated_store::<B>(&f.path, limits.clone(), &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    let mut left = Vec::new();
    for i in 0..2 {
        left.push(
            store
                .remember(new_memory(&format!("left behind {i}"), "global"))
                .await
                .unwrap()
                .id,
        );
    }
    eventually("an attempt failed", || async {
        backlog.errors_total() >= 1
    })
    .await;
    stop(token, handle).await;
    assert_eq!(missing(&store).await, 2);

    // No worker: inline, as a one-shot command or a library user gets it.
    embedder.fail.store(false, Ordering::SeqCst);
    let inline = store
        .remember(new_memory("left behind inline", "global"))
        .await
        .unwrap();
    assert_eq!(missing(&store).await, 2, "the inline one has its vector");
    // A memory whose vector another model made is stale, not missing.
    let stale = store
        .remember(new_memory("left behind stale", "global"))
        .await
        .unwrap();
    store
        .storage()
        .set_embeddings(&[(stale.id, embedding("another-model", vec![1.0; 64]))])
        .await
        .unwrap();
    store.close().await;

    // A restart: a new store on the file, a new worker.
    let store = gated_store::<B>(&f.path, limits, &embedder).await;
    let (token, handle) = start_worker(&store);
    let backlog = store.embedding_backlog().unwrap();
    eventually(
        "the worker counted and embedded the missing ones",
        || async { backlog.missing() == Some(0) },
    )
    .await;
    assert_eq!(missing(&store).await, 0);
    assert_eq!(backlog.embedded_total(), 2);
    let found = vector_hits(&store, "left behind").await;
    assert!(left.iter().all(|id| found.contains(id)), "{found:?}");
    assert!(found.contains(&inline.id));
    assert!(!found.contains(&stale.id), "stale vectors wait for reindex");
    assert_eq!(store.pending_reindex().await.unwrap(), 1);
    // A second worker on the same store is refused while this one runs.
    let err = store.start_embedding_worker().unwrap_err();
    assert!(matches!(err, Error::InvalidInput(_)), "{err:?}");
    stop(token, handle).await;
    let err = open::<B>(&f.path, Limits::default())
        .await
        .start_embedding_worker()
        .unwrap_err();
    assert!(err.to_string().contains("needs an embedder"), "{err}");
}

/// `embed_pending`, what `import` and `reindex` run: missing vectors only,
/// or stale ones too, `embedding_batch_max` per call, progress per batch.
pub async fn embed_pending_embeds_in_batches_with_progress<B: Backend>() {
    let f = fixture();
    let limits = Limits {
        embedding_batch_max: 2,
        reindex_batch_rows: 3,
        ..Limits::default()
    };
    let plain = open::<B>(&f.path, limits.clone()).await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(
            plain
                .remember(new_memory(&format!("imported note {i}"), "global"))
                .await
                .unwrap()
                .id,
        );
    }
    plain
        .storage()
        .set_embeddings(&[(ids[5], embedding("another-model", vec![1.0; 64]))])
        .await
        .unwrap();
    let embedder = GatedEmbedder::new(true);
    let store = plain.with_embedder(Arc::clone(&embedder) as Arc<dyn Embedder>);
    let mut progress = Vec::new();
    let stored = store
        .embed_pending(PendingKind::Missing, |n| progress.push(n))
        .await
        .unwrap();
    assert_eq!(stored, 5);
    assert_eq!(progress, [2, 1, 2], "3 rows per read, 2 texts per call");
    assert!(embedder.calls().iter().all(|(_, texts)| *texts <= 2));
    assert_eq!(store.pending_count(PendingKind::Missing).await.unwrap(), 0);
    assert_eq!(store.pending_reindex().await.unwrap(), 1);
    let mut progress = Vec::new();
    let stored = store
        .embed_pending(PendingKind::MissingOrStale, |n| progress.push(n))
        .await
        .unwrap();
    assert_eq!((stored, progress), (1, vec![1]));
    assert_eq!(store.pending_reindex().await.unwrap(), 0);
}
