//! The embedding worker in a server in-process, on a real store and real
//! loopback sockets: it runs as a supervised task, stores the vectors of
//! what is remembered after the answer, and ends at shutdown with the other
//! tasks (the runtime's alive-task count returns to its baseline), even in
//! the middle of an embedder call that never returns.
//!
//! A test binary of its own: `lifecycle.rs` measures the process's RSS,
//! which tests running beside it in one process would disturb.
//!
//! Needs a storage backend: the workspace's `cargo test` gets one through
//! mnemosyne-cli; alone, run with `--features sqlite` (or `libsql`).

mod common;

use std::sync::Arc;
use std::time::Duration;

use mnemosyne_core::{Embedder, Limits, PendingKind};
use mnemosyne_embed::HashEmbedder;
use mnemosyne_server::{HttpListener, Server};
use mnemosyne_storage::{MemoryStore, RecallMode, RecallQuery};
use rmcp::ServiceExt;
use tokio::sync::oneshot;

use common::{SETTLE_POLL_MS, SETTLE_POLLS_MAX, alive_tasks, open_store, request, settle_to};

/// [`open_store`] with the hash embedder: the server runs its embedding worker.
async fn open_embedded_store(dir: &tempfile::TempDir, embedder: Arc<dyn Embedder>) -> MemoryStore {
    open_store(dir, Limits::default())
        .await
        .with_embedder(embedder)
}

fn hash_embedder() -> Arc<dyn Embedder> {
    Arc::new(HashEmbedder::new(64).expect("hash embedder"))
}

/// The value of one of the server's gauges now.
fn gauge(server: &Server, name: &str) -> Option<u64> {
    server.tracker().snapshot().gauge(name).map(|g| g.value)
}

/// Hash vectors for recall queries; a text to store is never embedded (the
/// call never returns), like a model that hangs.
#[derive(Debug)]
struct StuckEmbedder(HashEmbedder);

#[async_trait::async_trait]
impl Embedder for StuckEmbedder {
    fn model_id(&self) -> &str {
        self.0.model_id()
    }

    fn dims(&self) -> usize {
        self.0.dims()
    }

    async fn embed(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        self.0.embed(texts).await
    }

    async fn embed_for_storage(&self, _: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        std::future::pending().await
    }
}

/// Serves HTTP on a loopback port until the returned sender fires.
fn serve_http(
    server: &Server,
    listener: HttpListener,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<
        Result<mnemosyne_server::ShutdownReport, mnemosyne_server::ServerError>,
    >,
) {
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_http(listener, async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    (stop, serving)
}

/// `serve_http` runs the `embedding-worker` task: a remembered memory gets
/// its vector after the answer (the gauges say so), and the task ends at
/// shutdown with the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_runs_the_embedding_worker_and_shutdown_ends_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_embedded_store(&dir, hash_embedder()).await;
    let baseline = alive_tasks();
    let server = Server::new(store.clone());
    let listener = HttpListener::bind(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let (stop, serving) = serve_http(&server, listener);
    assert_eq!(
        request(addr, "POST", "/v1/memories", r#"{"content":"alive tasks"}"#).await,
        201
    );
    let names = server.supervisor().names();
    assert!(names.contains(&"embedding-worker".to_owned()), "{names:?}");
    for _ in 0..SETTLE_POLLS_MAX {
        if gauge(&server, "mnemosyne_embeddings_stored_total") == Some(1)
            && gauge(&server, "mnemosyne_embeddings_missing") == Some(0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_POLL_MS)).await;
    }
    assert_eq!(gauge(&server, "mnemosyne_embeddings_stored_total"), Some(1));
    assert_eq!(gauge(&server, "mnemosyne_embeddings_missing"), Some(0));
    assert_eq!(gauge(&server, "mnemosyne_embedding_backlog"), Some(0));
    assert_eq!(gauge(&server, "mnemosyne_embedding_errors_total"), Some(0));
    let recall = store
        .recall(RecallQuery {
            text: "alive tasks".into(),
            mode: RecallMode::Vector,
            ..RecallQuery::default()
        })
        .await
        .expect("recall");
    assert_eq!(recall.hits.len(), 1, "{recall:?}");

    stop.send(()).expect("stop");
    let report = serving.await.expect("join").expect("serve");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(server.supervisor().alive(), 0);
    assert!(store.embedding_backlog().is_none(), "the worker stopped");
    store.close().await;
    assert_eq!(
        settle_to(baseline).await,
        baseline,
        "tasks left after shutdown"
    );
}

/// `serve_mcp` runs it too, and its end ends the worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_runs_the_embedding_worker_and_shutdown_ends_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_embedded_store(&dir, hash_embedder()).await;
    let baseline = alive_tasks();
    let server = Server::new(store.clone());
    let (server_side, client_side) = tokio::io::duplex(64 * 1024);
    let (server_read, server_write) = tokio::io::split(server_side);
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_mcp(server_read, server_write, std::future::pending())
                .await
        }
    });
    let (client_read, client_write) = tokio::io::split(client_side);
    let client = ().serve((client_read, client_write)).await.expect("init");
    let names = server.supervisor().names();
    assert!(names.contains(&"embedding-worker".to_owned()), "{names:?}");
    client.cancel().await.expect("close");
    let report = serving.await.expect("join").expect("serve");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(server.supervisor().alive(), 0);
    store.close().await;
    assert_eq!(
        settle_to(baseline).await,
        baseline,
        "tasks left after shutdown"
    );
}

/// An embedder call that never returns holds neither `remember` nor the
/// shutdown: the memory is acknowledged and found by keyword, its id waits
/// in the backlog, and shutdown stops the worker in the middle of the call
/// (no abort needed), leaving the memory without a vector for the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_embedder_holds_neither_remember_nor_shutdown() {
    let dir = tempfile::tempdir().expect("temp dir");
    let embedder = Arc::new(StuckEmbedder(HashEmbedder::new(64).expect("hash")));
    let store = open_embedded_store(&dir, embedder).await;
    let baseline = alive_tasks();
    let server = Server::new(store.clone());
    let listener = HttpListener::bind(([127, 0, 0, 1], 0).into(), None)
        .await
        .expect("bind");
    let addr = listener.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = tokio::spawn({
        let server = server.clone();
        async move {
            server
                .serve_http(listener, async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    for content in ["first of two", "second of two"] {
        let body = format!(r#"{{"content":"{content}"}}"#);
        assert_eq!(request(addr, "POST", "/v1/memories", &body).await, 201);
    }
    assert_eq!(gauge(&server, "mnemosyne_embedding_backlog"), Some(2));
    let snapshot = server.tracker().snapshot();
    let backlog = snapshot.gauge("mnemosyne_embedding_backlog").unwrap();
    assert_eq!(
        backlog.max,
        Some(10_000),
        "bounded by embedding_backlog_max"
    );
    let recall = store
        .recall(RecallQuery {
            text: "two".into(),
            mode: RecallMode::Keyword,
            ..RecallQuery::default()
        })
        .await
        .expect("recall");
    assert_eq!(recall.hits.len(), 2);
    stop.send(()).expect("stop");
    let report = serving.await.expect("join").expect("serve");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(server.supervisor().alive(), 0);
    assert_eq!(
        store
            .pending_count(PendingKind::Missing)
            .await
            .expect("count"),
        2,
        "left for the next start"
    );
    store.close().await;
    assert_eq!(
        settle_to(baseline).await,
        baseline,
        "tasks left after shutdown"
    );
}
