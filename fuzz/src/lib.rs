//! What the fuzz targets share: a panic anywhere (a tokio task too) aborts,
//! one runtime per process, and a store in a temp dir with a small
//! deterministic embedder ([`WordHashEmbedder`]). Not mnemosyne-embed's:
//! that crate links the local model's runtime (tract, tokenizers, a TLS
//! stack for the HTTP embedder), which libFuzzer's instrumented build would
//! compile for half an hour on a busy machine, to run none of it.
//!
//! A target opens its store once and reuses it for every input: the
//! database grows by what the inputs store, bounded by the run's length.

use std::sync::{Arc, Once, OnceLock};

use mnemosyne_core::{Embedder, Limits};
use mnemosyne_storage::{Location, MemoryStore};
use tokio::runtime::Runtime;

/// Dimensions of the embedder's vectors.
pub const EMBEDDING_DIMS: usize = 64;

/// Each word adds one to a dimension picked by its hash; the vector is then
/// L2-normalised (a text without words gets a fixed unit vector).
#[derive(Debug)]
pub struct WordHashEmbedder;

impl WordHashEmbedder {
    fn vector(text: &str) -> Vec<f32> {
        let mut vector = vec![0.0f32; EMBEDDING_DIMS];
        for word in text
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            // FNV-1a: stable across runs and platforms.
            let hash = word
                .to_lowercase()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
                });
            vector[(hash % EMBEDDING_DIMS as u64) as usize] += 1.0;
        }
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm == 0.0 {
            vector[0] = 1.0;
        } else {
            vector.iter_mut().for_each(|x| *x /= norm);
        }
        vector
    }
}

#[async_trait::async_trait]
impl Embedder for WordHashEmbedder {
    fn model_id(&self) -> &str {
        "fuzz-word-hash-64"
    }

    fn dims(&self) -> usize {
        EMBEDDING_DIMS
    }

    async fn embed(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| Self::vector(t)).collect())
    }
}

/// Makes every panic abort the process, so that libFuzzer records it as a
/// crash: tokio catches a panic inside a spawned task, and the server would
/// go on (an MCP session, an HTTP connection, a supervised task).
pub fn abort_on_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            default(info);
            std::process::abort();
        }));
    });
}

/// The process's runtime: one thread, so that runs are repeatable.
pub fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

/// The store of this process (opened on first use, in a directory under
/// `TMPDIR` that lives as long as the process), with default limits.
pub fn store() -> &'static MemoryStore {
    static STORE: OnceLock<(tempfile::TempDir, MemoryStore)> = OnceLock::new();
    &STORE
        .get_or_init(|| {
            abort_on_panic();
            let dir = tempfile::Builder::new()
                .prefix("mnemosyne-fuzz-")
                .tempdir()
                .expect("a temp dir");
            let location = Location::File(dir.path().join("fuzz.db"));
            let store = runtime()
                .block_on(MemoryStore::open(&location, Limits::default()))
                .expect("open the store")
                .with_embedder(Arc::new(WordHashEmbedder));
            (dir, store)
        })
        .1
}

/// Whether `error` is a refusal a client can act on, rather than a failure
/// of the server (storage, a corrupt document) that bad input must never cause.
pub fn is_refusal(error: &mnemosyne_core::Error) -> bool {
    !matches!(
        error,
        mnemosyne_core::Error::Storage(_)
            | mnemosyne_core::Error::CorruptDocument { .. }
            | mnemosyne_core::Error::SchemaTooNew { .. }
    )
}

/// Things stored before the first input, that inputs name by placeholder
/// (`@mem`, `@item`, `@doc`): random ids are beyond a fuzzer's reach.
#[derive(Debug)]
pub struct Fixtures {
    /// A memory's id.
    pub memory_id: String,
    /// A work item's id.
    pub item_id: String,
    /// A context document's name.
    pub doc_name: String,
}

impl Fixtures {
    /// `data` with each placeholder replaced by what it names.
    pub fn substitute(&self, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 64);
        let mut rest = data;
        'scan: while !rest.is_empty() {
            for (placeholder, value) in [
                (&b"@mem"[..], &self.memory_id),
                (b"@item", &self.item_id),
                (b"@doc", &self.doc_name),
            ] {
                if let Some(after) = rest.strip_prefix(placeholder) {
                    out.extend_from_slice(value.as_bytes());
                    rest = after;
                    continue 'scan;
                }
            }
            out.push(rest[0]);
            rest = &rest[1..];
        }
        out
    }
}

/// The fixtures in [`store`], made once through a server's HTTP API (its
/// work queue closed again before any input runs).
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        // Opened first: `store` blocks on the runtime itself.
        let store = store().clone();
        runtime().block_on(async {
            let server = mnemosyne_server::Server::new(store);
            server.open_work_queue().await.expect("open the work queue");
            let router = server.http_router(http::BOUND.parse().expect("an address"));
            let post = |path: &'static str, body: serde_json::Value| {
                let router = router.clone();
                async move {
                    let (status, body) = http::send(router, "POST", path, body.to_string()).await;
                    assert!(status < 300, "fixture {path}: {status} {}", String::from_utf8_lossy(&body));
                    serde_json::from_slice::<serde_json::Value>(&body).expect("a JSON answer")
                }
            };
            let memory = post(
                "/v1/memories",
                serde_json::json!({"content": "fixture memory about tokio and sqlite", "tags": ["fuzz"]}),
            )
            .await;
            let item = post(
                "/v1/work/items",
                serde_json::json!({"description": "fixture work item", "requirements": ["fuzzed"]}),
            )
            .await;
            let doc_name = "fuzz-doc";
            let (status, body) = http::send(
                router.clone(),
                "PUT",
                "/v1/docs/fuzz-doc",
                serde_json::json!({"text": "fixture document", "actor": "fuzzer"}).to_string(),
            )
            .await;
            assert!(status < 300, "fixture doc: {status} {}", String::from_utf8_lossy(&body));
            let _ = server.shutdown().await;
            Fixtures {
                memory_id: memory["id"].as_str().expect("a memory id").to_owned(),
                item_id: item["id"].as_str().expect("an item id").to_owned(),
                doc_name: doc_name.to_owned(),
            }
        })
    })
}

/// One request through the router, in process.
pub mod http {
    use axum::Router;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    /// The address the router is told it is bound to, and the `Host` a
    /// request gets when its input names none.
    pub const BOUND: &str = "127.0.0.1:7077";
    /// `Host` of the fixtures' requests.
    pub const HOST: &str = BOUND;

    /// Sends `method path` with a JSON `body`; the status and the whole body.
    pub async fn send(router: Router, method: &str, path: &str, body: String) -> (u16, Vec<u8>) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", HOST)
            .header("content-type", "application/json")
            .body(Body::from(body))
            .expect("a valid request");
        let response = router.oneshot(request).await.expect("infallible");
        let status = response.status().as_u16();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("a body")
            .to_bytes();
        (status, bytes.to_vec())
    }
}
