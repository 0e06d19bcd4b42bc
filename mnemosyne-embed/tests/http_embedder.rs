//! The `http` embedder against a small OpenAI-compatible server on
//! 127.0.0.1 that this test starts: batching, the API key, wrong answers,
//! retries, an endpoint that is down, one that never answers. No network.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mnemosyne_core::{Embedder, Error, Limits};
use mnemosyne_embed::{EmbedderConfig, HttpEmbedder, HttpEmbedderOptions, build_embedder};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// Longest a test server keeps a hanging connection open; the test ends
/// (and drops the server) long before.
const HANG_S: u64 = 30;

/// Largest request the test server reads.
const REQUEST_BYTES_MAX: usize = 1024 * 1024;

/// One request the server received.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    /// Lower-case names.
    headers: Vec<(String, String)>,
    body: Value,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn inputs(&self) -> Vec<String> {
        self.body["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

/// What the server does with a request.
enum Reply {
    /// Answer with this status and body.
    Status(u16, String),
    /// Read the request and never answer.
    Hang,
}

type Handler = Arc<dyn Fn(usize, &Seen) -> Reply + Send + Sync>;

/// A minimal HTTP/1.1 server (keep-alive, Content-Length bodies only).
struct Server {
    base_url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        // Dropping the accept task drops its JoinSet, which aborts every
        // connection task.
        self.accept.abort();
    }
}

impl Server {
    /// Starts a server on 127.0.0.1; `handler` gets the 0-based number of
    /// the request and the request.
    async fn start(handler: impl Fn(usize, &Seen) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let handler: Handler = Arc::new(handler);
        let accept = tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                let mut connections = JoinSet::new();
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    connections.spawn(serve(stream, Arc::clone(&seen), Arc::clone(&handler)));
                    while connections.try_join_next().is_some() {}
                }
            }
        });
        Self {
            base_url,
            seen,
            accept,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn endpoint(&self) -> String {
        format!("{}/v1/embeddings", self.base_url)
    }
}

async fn serve(mut stream: TcpStream, seen: Arc<Mutex<Vec<Seen>>>, handler: Handler) {
    let mut buffer: Vec<u8> = Vec::new();
    loop {
        let Some(request) = read_request(&mut stream, &mut buffer).await else {
            return;
        };
        let number = {
            let mut seen = seen.lock().unwrap();
            seen.push(request.clone());
            seen.len() - 1
        };
        match handler(number, &request) {
            Reply::Hang => {
                tokio::time::sleep(Duration::from_secs(HANG_S)).await;
                return;
            }
            Reply::Status(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\n\
                     content-length: {}\r\nconnection: keep-alive\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
        }
    }
}

/// Reads one request; `None` at end of stream or on anything malformed.
async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Seen> {
    let head_end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > REQUEST_BYTES_MAX {
            return None;
        }
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8(buffer[..head_end].to_vec()).ok()?;
    let mut lines = head.split("\r\n");
    let mut request_line = lines.next()?.split(' ');
    let method = request_line.next()?.to_owned();
    let path = request_line.next()?.to_owned();
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    if length > REQUEST_BYTES_MAX {
        return None;
    }
    while buffer.len() < head_end + length {
        let mut chunk = [0u8; 8192];
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
    let body = serde_json::from_slice(&buffer[head_end..head_end + length]).unwrap_or(Value::Null);
    buffer.drain(..head_end + length);
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

/// Texts are `text <k>`; each gets the one-hot vector of dimension `k`
/// (times 2.0, to show the client normalises). Items come back in reverse
/// order with their index, as servers may do.
fn one_hot_answer(request: &Seen, dims: usize) -> Reply {
    let data: Vec<Value> = request
        .inputs()
        .iter()
        .enumerate()
        .rev()
        .map(|(index, text)| {
            let k: usize = text.trim_start_matches("text ").parse().unwrap();
            let mut vector = vec![0.0f32; dims];
            vector[k % dims] = 2.0;
            json!({"object": "embedding", "index": index, "embedding": vector})
        })
        .collect();
    let body = json!({"object": "list", "data": data, "model": request.body["model"]});
    Reply::Status(200, body.to_string())
}

fn limits(batch_max: u32, timeout_ms: u64, retries_max: u32) -> Limits {
    Limits {
        embedding_batch_max: batch_max,
        embedder_timeout_ms: timeout_ms,
        embedder_retries_max: retries_max,
        embedder_backoff_ms: 10,
        ..Limits::default()
    }
}

fn embedder(base_url: &str, dims: usize, limits: &Limits) -> HttpEmbedder {
    HttpEmbedder::new(HttpEmbedderOptions::new(
        base_url,
        "test-model",
        dims,
        limits,
    ))
    .unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|k| format!("text {k}")).collect()
}

fn refs(texts: &[String]) -> Vec<&str> {
    texts.iter().map(String::as_str).collect()
}

fn embedding_message(error: Error) -> String {
    match error {
        Error::Embedding(message) => message,
        other => panic!("expected an embedding error, got {other:?}"),
    }
}

#[tokio::test]
async fn batches_of_two_keep_the_order_of_five_texts() {
    let server = Server::start(|_, request| one_hot_answer(request, 8)).await;
    let embedder = embedder(&server.base_url, 8, &limits(2, 5_000, 0));
    let texts = texts(5);
    let vectors = embedder.embed(&refs(&texts)).await.unwrap();

    assert_eq!(vectors.len(), 5);
    for (k, vector) in vectors.iter().enumerate() {
        let mut expected = vec![0.0f32; 8];
        expected[k] = 1.0;
        assert_eq!(vector, &expected, "text {k}: in order and normalised");
    }
    let seen = server.seen();
    let batches: Vec<Vec<String>> = seen.iter().map(Seen::inputs).collect();
    assert_eq!(
        batches,
        vec![
            vec!["text 0", "text 1"],
            vec!["text 2", "text 3"],
            vec!["text 4"]
        ]
    );
    for request in &seen {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/v1/embeddings");
        assert_eq!(request.body["model"], "test-model");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("authorization"), None, "no key configured");
    }
    assert_eq!(embedder.model_id(), "http:test-model@8");
    assert_eq!(embedder.endpoint(), server.endpoint());

    assert!(embedder.embed(&[]).await.unwrap().is_empty());
    assert_eq!(server.seen().len(), 3, "nothing to embed: no request");
}

#[tokio::test]
async fn the_api_key_is_sent_as_a_bearer_token() {
    let server = Server::start(|_, request| one_hot_answer(request, 4)).await;
    let mut options =
        HttpEmbedderOptions::new(&server.base_url, "test-model", 4, &limits(8, 5_000, 0));
    options.api_key = Some("sk-test-123".into());
    let embedder = HttpEmbedder::new(options).unwrap();
    embedder.embed(&["text 1"]).await.unwrap();
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer sk-test-123"));
}

#[tokio::test]
async fn a_vector_of_the_wrong_dimension_is_a_clear_error() {
    let server = Server::start(|_, request| one_hot_answer(request, 768)).await;
    let embedder = embedder(&server.base_url, 384, &limits(8, 5_000, 3));
    let error = embedder.embed(&["text 0"]).await.unwrap_err();
    assert_eq!(
        embedding_message(error),
        format!(
            "embedding endpoint {} returned a vector of 768 dimensions, expected 384",
            server.endpoint()
        )
    );
    assert_eq!(server.seen().len(), 1, "a wrong answer is not retried");
}

#[tokio::test]
async fn the_wrong_number_of_vectors_is_a_clear_error() {
    let server = Server::start(|_, request| {
        let Reply::Status(_, body) = one_hot_answer(request, 4) else {
            unreachable!()
        };
        let mut body: Value = serde_json::from_str(&body).unwrap();
        body["data"].as_array_mut().unwrap().pop();
        Reply::Status(200, body.to_string())
    })
    .await;
    let embedder = embedder(&server.base_url, 4, &limits(8, 5_000, 3));
    let texts = texts(4);
    let error = embedder.embed(&refs(&texts)).await.unwrap_err();
    assert_eq!(
        embedding_message(error),
        format!(
            "embedding endpoint {} returned 3 vectors for 4 texts",
            server.endpoint()
        )
    );
    assert_eq!(server.seen().len(), 1);
}

#[tokio::test]
async fn http_500_twice_then_200_succeeds_after_retries() {
    let server = Server::start(|number, request| {
        if number < 2 {
            Reply::Status(500, r#"{"error":"model loading"}"#.into())
        } else {
            one_hot_answer(request, 4)
        }
    })
    .await;
    let embedder = embedder(&server.base_url, 4, &limits(8, 5_000, 3));
    let vectors = embedder.embed(&["text 3"]).await.unwrap();
    assert_eq!(vectors, vec![vec![0.0, 0.0, 0.0, 1.0]]);
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn http_429_is_retried_until_the_retries_run_out() {
    let server = Server::start(|_, _| Reply::Status(429, "slow down".into())).await;
    let embedder = embedder(&server.base_url, 4, &limits(8, 5_000, 2));
    let error = embedder.embed(&["text 0"]).await.unwrap_err();
    assert_eq!(
        embedding_message(error),
        format!(
            "embedding endpoint {} returned HTTP 429 after 3 attempts: slow down",
            server.endpoint()
        )
    );
    assert_eq!(server.seen().len(), 3);
}

#[tokio::test]
async fn http_400_is_not_retried_and_quotes_the_body() {
    let long_body = format!(
        "{{\"error\": \"input too long\",\n \"detail\": \"{}\"}}",
        "x".repeat(500)
    );
    let server = Server::start(move |_, _| Reply::Status(400, long_body.clone())).await;
    let embedder = embedder(&server.base_url, 4, &limits(8, 5_000, 3));
    let message = embedding_message(embedder.embed(&["text 0"]).await.unwrap_err());
    let prefix = format!(
        "embedding endpoint {} returned HTTP 400: {{\"error\": \"input too long\", \"detail\": \"xxx",
        server.endpoint()
    );
    assert!(message.starts_with(&prefix), "{message}");
    let quoted = &message[message.find("HTTP 400: ").unwrap() + "HTTP 400: ".len()..];
    assert_eq!(quoted.chars().count(), 200, "{message}");
    assert!(!message.contains('\n'));
    assert_eq!(server.seen().len(), 1, "400 is not retried");
}

#[tokio::test]
async fn an_endpoint_that_is_down_fails_after_every_attempt_naming_it() {
    // A port that was just free: nothing listens there any more.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let base_url = format!("http://{address}");

    let embedder = embedder(&base_url, 4, &limits(8, 2_000, 3));
    let started = Instant::now();
    let message = embedding_message(embedder.embed(&["text 0"]).await.unwrap_err());
    assert_eq!(
        message,
        format!(
            "embedding endpoint {base_url}/v1/embeddings unreachable after 4 attempts: connection refused"
        )
    );
    // Three backoffs of 10, 20 and 40 ms were waited.
    assert!(
        started.elapsed() >= Duration::from_millis(70),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_server_that_never_answers_times_out() {
    let server = Server::start(|_, _| Reply::Hang).await;
    let embedder = embedder(&server.base_url, 4, &limits(8, 300, 1));
    let started = Instant::now();
    let message = embedding_message(embedder.embed(&["text 0"]).await.unwrap_err());
    let elapsed = started.elapsed();
    assert_eq!(
        message,
        format!(
            "embedding endpoint {} timed out after 2 attempts of 300 ms each",
            server.endpoint()
        )
    );
    assert_eq!(server.seen().len(), 2);
    // Two attempts of at least the timeout each (no upper bound asserted).
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
}

#[tokio::test]
async fn build_embedder_from_the_config_table_caches_the_answers() {
    let server = Server::start(|_, request| one_hot_answer(request, 4)).await;
    let table = format!(
        "kind = \"http\"\nbase_url = \"{}/\"\nmodel = \"test-model\"\ndims = 4\n",
        server.base_url
    );
    let config: EmbedderConfig = toml::from_str(&table).unwrap();
    let embedder = build_embedder(&config, &limits(8, 5_000, 0)).unwrap();
    assert_eq!(embedder.model_id(), "http:test-model@4");

    let first = embedder
        .embed(&["text 1", "text 2", "text 1"])
        .await
        .unwrap();
    assert_eq!(server.seen().len(), 1);
    assert_eq!(
        server.seen()[0].inputs(),
        vec!["text 1", "text 2"],
        "duplicates sent once"
    );
    let again = embedder.embed(&["text 2", "text 1"]).await.unwrap();
    assert_eq!(server.seen().len(), 1, "cache hits send nothing");
    assert_eq!(again, vec![first[1].clone(), first[0].clone()]);
    assert_eq!(first[0], first[2]);
}
