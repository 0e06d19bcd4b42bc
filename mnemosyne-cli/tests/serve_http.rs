//! `mnemosyne serve http` as a child process, spoken to over real loopback
//! sockets with a minimal HTTP/1.1 client (`common::http`).

mod common;

use std::io::Read;
use std::time::Duration;

use common::http::{Conn, READ_TIMEOUT_S, Served};
use common::{Sandbox, unreachable_http_embedder};
use serde_json::{Value, json};

fn remember_body(content: &str) -> Value {
    json!({"content": content, "namespace": "project:http", "tags": ["http"]})
}

#[test]
fn the_http_api_serves_memories_with_json_errors_and_metrics() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);

    let created = served.request(
        "POST",
        "/v1/memories",
        Some(&json!({"content": "axum routes share one state", "tags": ["axum"], "importance": 8})),
    );
    assert_eq!(
        created.status,
        201,
        "{:?}",
        String::from_utf8_lossy(&created.body)
    );
    let id = created.json()["id"].as_str().expect("id").to_owned();
    let other = served.request(
        "POST",
        "/v1/memories",
        Some(&remember_body("tower layers wrap services")),
    );
    let other_id = other.json()["id"].as_str().expect("id").to_owned();

    let got = served.request("GET", &format!("/v1/memories/{id}"), None);
    assert_eq!(got.status, 200);
    assert_eq!(got.json()["importance"], 8);
    let patched = served.request(
        "PATCH",
        &format!("/v1/memories/{id}"),
        Some(&json!({"importance": 3, "summary": "state"})),
    );
    assert_eq!(
        (patched.status, patched.json()["importance"].clone()),
        (200, json!(3))
    );
    let linked = served.request(
        "POST",
        &format!("/v1/memories/{other_id}/links"),
        Some(&json!({"target": id, "link_type": "relates_to"})),
    );
    assert_eq!(linked.status, 200, "{:?}", linked.json());
    let recall = served.request(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "axum routes state", "limit": 5})),
    );
    assert_eq!(recall.status, 200);
    assert_eq!(recall.json()["hits"][0]["memory"]["id"], id.as_str());
    assert_eq!(recall.json()["limit"], 5);
    let listed = served.request("GET", "/v1/memories?limit=1&tag=http", None);
    assert_eq!(listed.status, 200);
    assert_eq!(listed.json()["memories"][0]["id"], other_id.as_str());
    let forgotten = served.request(
        "DELETE",
        &format!("/v1/memories/{other_id}?hard=true"),
        None,
    );
    assert_eq!(forgotten.json()["status"], "deleted");

    // Errors: stable shape and status.
    let missing = served.request("GET", &format!("/v1/memories/{other_id}"), None);
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found".into())
    );
    let bad_id = served.request("GET", "/v1/memories/not-an-id", None);
    assert_eq!(
        (bad_id.status, bad_id.error_code()),
        (400, "invalid_input".into())
    );
    let bad_json = served
        .connect()
        .send_raw("POST", "/v1/memories", &[], Some(b"{not json"));
    assert_eq!(
        (bad_json.status, bad_json.error_code()),
        (400, "invalid_input".into())
    );
    let wrong_type = served.request("POST", "/v1/memories", Some(&json!({"content": 5})));
    assert_eq!(
        (wrong_type.status, wrong_type.error_code()),
        (400, "invalid_input".into())
    );
    let refused = served.request(
        "POST",
        "/v1/memories",
        Some(&json!({"content": "x", "importance": 11})),
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("between 1 and 10")
    );
    let no_words = served.request("POST", "/v1/recall", Some(&json!({"query": "!!"})));
    assert_eq!(
        (no_words.status, no_words.error_code()),
        (400, "invalid_input".into())
    );
    let no_route = served.request("GET", "/v2/nothing", None);
    assert_eq!(
        (no_route.status, no_route.error_code()),
        (404, "not_found".into())
    );
    let wrong_method = served.request("PUT", "/v1/recall", None);
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.error_code(), "method_not_allowed");

    let health = served.request("GET", "/health", None);
    assert_eq!(
        (health.status, health.json()["status"].clone()),
        (200, json!("ok"))
    );
    let metrics = served.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8(metrics.body).expect("utf-8");
    for name in [
        "mnemosyne_pool_readers_open_max 4",
        "mnemosyne_process_resident_memory_bytes ",
        "mnemosyne_work_items_active 0",
        "mnemosyne_work_items_active_max 10000",
        "mnemosyne_embedding_backlog ",
        "mnemosyne_embedding_backlog_max 10000",
        "mnemosyne_embeddings_stored_total ",
        "mnemosyne_embedding_errors_total 0",
        "mnemosyne_event_subscribers 0",
        "mnemosyne_event_subscribers_max 1024",
        "mnemosyne_events_lagged_total 0",
        "mnemosyne_docs_open 0",
        "mnemosyne_docs_open_max 16",
        "mnemosyne_crdt_ops_since_compaction 0",
        "mnemosyne_crdt_ops_since_compaction_max 1000",
        "mnemosyne_tasks_alive ",
        "mnemosyne_http_requests_total{code=\"4xx\"} ",
        "mnemosyne_http_connections_open ",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(text.contains("mnemosyne_http_requests_total{code=\"2xx\"} "));

    assert_eq!(served.terminate(), Some(0), "exit 0 on SIGTERM");
}

#[test]
fn a_non_loopback_bind_needs_a_token_and_checks_it() {
    let sandbox = Sandbox::new();
    let error = sandbox.fail(&["serve", "http", "--bind", "0.0.0.0:0"]);
    assert!(
        error.contains("requires a bearer token") && error.contains("MNEMOSYNE_TOKEN"),
        "{error}"
    );
    assert!(!sandbox.db.exists(), "refused before opening the database");

    let token = "test-token-0123456789";
    let served = Served::start(&sandbox, "0.0.0.0:0", &[("MNEMOSYNE_TOKEN", token)]);
    let body = remember_body("behind a token");
    let anonymous = served.request("POST", "/v1/memories", Some(&body));
    assert_eq!(
        (anonymous.status, anonymous.error_code()),
        (401, "unauthorized".into())
    );
    assert_eq!(anonymous.header("www-authenticate"), Some("Bearer"));
    let wrong = served.connect().send(
        "POST",
        "/v1/memories",
        &[("Authorization", "Bearer test-token-0123456788")],
        Some(&body),
    );
    assert_eq!(wrong.status, 401);
    let no_sse = served.connect().subscribe(&[]);
    assert_eq!(no_sse, 401);
    let bearer = format!("Bearer {token}");
    let allowed = served.connect().send(
        "POST",
        "/v1/memories",
        &[("Authorization", &bearer)],
        Some(&body),
    );
    assert_eq!(allowed.status, 201);
    let metrics = served.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 401, "metrics are behind the token too");
    let health = served.request("GET", "/health", None);
    assert_eq!(health.status, 200, "health is open");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_body_over_the_limit_is_413_and_the_server_carries_on() {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[("MNEMOSYNE_REQUEST_BODY_BYTES_MAX", "4096")],
    );
    let big = remember_body(&"b".repeat(10_000));
    let refused = served.request("POST", "/v1/memories", Some(&big));
    assert_eq!(
        (refused.status, refused.error_code()),
        (413, "payload_too_large".into())
    );
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("request_body_bytes_max")
    );
    // Content within the body limit but over memory_content_bytes_max: 400.
    let served_small = served.request("POST", "/v1/memories", Some(&remember_body("fits")));
    assert_eq!(served_small.status, 201);
    assert_eq!(served.terminate(), Some(0));

    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let over_content = served.request(
        "POST",
        "/v1/memories",
        Some(&remember_body(&"c".repeat(70 * 1024))),
    );
    assert_eq!(over_content.status, 400);
    assert!(
        over_content.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("memory_content_bytes_max")
    );
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn an_sse_client_receives_the_remember_of_another_client() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let mut events = served.connect();
    assert_eq!(events.subscribe(&[]), 200);
    // The subscription is live once the server counts it.
    let metrics = served.request("GET", "/metrics", None);
    assert!(String::from_utf8_lossy(&metrics.body).contains("mnemosyne_event_subscribers 1"));

    let created = served.request(
        "POST",
        "/v1/memories",
        Some(&remember_body("seen by the subscriber")),
    );
    let id = created.json()["id"].clone();
    let event = events.next_event("remembered");
    assert_eq!(event["type"], "remembered");
    assert_eq!(event["id"], id);
    assert_eq!(event["namespace"], "project:http");
    served.request(
        "PATCH",
        &format!("/v1/memories/{}", id.as_str().unwrap()),
        Some(&json!({"importance": 2})),
    );
    assert_eq!(events.next_event("updated")["id"], id);
    served.request(
        "DELETE",
        &format!("/v1/memories/{}", id.as_str().unwrap()),
        None,
    );
    let forgotten = events.next_event("forgotten");
    assert_eq!(
        (forgotten["id"].clone(), forgotten["hard"].clone()),
        (id, json!(false))
    );

    // Shutdown ends the open stream: the server still exits 0.
    assert_eq!(served.terminate(), Some(0));
    let mut rest = String::new();
    let _ = events.reader.read_to_string(&mut rest);
}

/// Events pushed past a subscriber that never reads, each a committed
/// write (a `PATCH`). `MNEMOSYNE_TEST_STALLED_EVENTS` changes it (100 000 for
/// the figure in the issue: about 100 s in a debug build). The kernel's
/// socket buffers absorb the first megabyte or so of SSE text; the bus's
/// behaviour past them (skip ahead, `lagged`, 100 000 events) is checked
/// in-process by `mnemosyne-server/tests/lifecycle.rs`.
const EVENTS_PAST_A_STALLED_SUBSCRIBER: usize = 30_000;

#[test]
fn a_subscriber_that_never_reads_does_not_grow_the_server() {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[("MNEMOSYNE_EVENTS_CAPACITY", "64")],
    );
    let mut stalled = served.connect();
    assert_eq!(stalled.subscribe(&[]), 200);

    let created = served.request(
        "POST",
        "/v1/memories",
        Some(&remember_body("the one memory")),
    );
    let path = format!("/v1/memories/{}", created.json()["id"].as_str().unwrap());
    let mut conn = served.connect();
    let push = |n: usize, conn: &mut Conn| {
        for i in 0..n {
            let importance = 1 + (i % 10);
            let response = conn.send(
                "PATCH",
                &path,
                &[],
                Some(&json!({"importance": importance})),
            );
            assert_eq!(response.status, 200);
        }
    };
    // Warm up (allocator, pools, buffers), then take the baseline.
    push(2_000, &mut conn);
    let before = served.rss_kib();
    let events = std::env::var("MNEMOSYNE_TEST_STALLED_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(EVENTS_PAST_A_STALLED_SUBSCRIBER);
    push(events, &mut conn);
    let after = served.rss_kib();
    // Buffered in the server, 30 000 events would be over 3 MB of SSE text;
    // allocator and SQLite cache noise stays well under half of that.
    assert!(
        after < before + 1_536,
        "server RSS grew from {before} KiB to {after} KiB past a stalled subscriber"
    );
    let metrics = served.request("GET", "/metrics", None);
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(text.contains("mnemosyne_event_subscribers 1"), "{text}");
    // The stalled subscriber still gets events once it reads.
    stalled.next_event("updated");
    assert_eq!(served.terminate(), Some(0));
}

/// Most threads `serve http` ran while 32 clients remembered and recalled
/// at once, with `blocking_threads_max` set to `blocking`; every request
/// must succeed.
fn threads_under_load(blocking: &str) -> u64 {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[("MNEMOSYNE_BLOCKING_THREADS_MAX", blocking)],
    );
    let most = std::sync::atomic::AtomicU64::new(served.threads());
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                most.fetch_max(served.threads(), std::sync::atomic::Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        });
        let clients: Vec<_> = (0..32)
            .map(|client| {
                let served = &served;
                scope.spawn(move || {
                    let mut conn = served.connect();
                    for i in 0..15 {
                        let content = format!("client {client} note {i} about lease locks");
                        let made =
                            conn.send("POST", "/v1/memories", &[], Some(&remember_body(&content)));
                        assert_eq!(made.status, 201);
                        let query = json!({"query": "lease locks", "limit": 10});
                        let found = conn.send("POST", "/v1/recall", &[], Some(&query));
                        assert_eq!(found.status, 200);
                    }
                })
            })
            .collect();
        for client in clients {
            client.join().expect("a client failed");
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert_eq!(served.terminate(), Some(0));
    assert_eq!(sandbox.count(), 32 * 15);
    most.into_inner()
}

#[test]
fn blocking_threads_stay_within_their_limit() {
    // The main thread, 2 runtime workers, at most 2 blocking threads.
    let limited = threads_under_load("2");
    assert!(
        limited <= 5,
        "{limited} threads with blocking_threads_max 2"
    );
    // The same load with the default limit uses more: the limit is what held.
    let default = threads_under_load("16");
    assert!(
        default > 5,
        "only {default} threads with blocking_threads_max 16"
    );
}

#[test]
fn work_items_and_documents_over_http_with_their_events() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let mut events = served.connect();
    assert_eq!(events.subscribe(&[]), 200);

    let first = served.request(
        "POST",
        "/v1/work/items",
        Some(&json!({"description": "design", "requirements": ["documented"]})),
    );
    assert_eq!(first.status, 201);
    let first_id = first.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(events.next_event("work_changed")["state"], "pending");
    let second = served.request(
        "POST",
        "/v1/work/items",
        Some(&json!({"description": "build", "depends_on": [first_id]})),
    );
    let second_id = second.json()["id"].as_str().unwrap().to_owned();

    let claimed = served.request("POST", "/v1/work/claim", Some(&json!({"agent": "ada"})));
    assert_eq!(
        claimed.json()["item"]["id"],
        first_id.as_str(),
        "the dependent waits"
    );
    let nothing = served.request("POST", "/v1/work/claim", Some(&json!({"agent": "bob"})));
    assert_eq!(nothing.json(), json!({"item": null}));
    let wrong = served.request(
        "POST",
        &format!("/v1/work/items/{first_id}/heartbeat"),
        Some(&json!({"agent": "bob"})),
    );
    assert_eq!(
        (wrong.status, wrong.error_code()),
        (409, "conflict".to_owned())
    );
    let done = served.request(
        "POST",
        &format!("/v1/work/items/{first_id}/complete"),
        Some(&json!({"agent": "ada", "met": [0]})),
    );
    assert_eq!(done.json()["state"], "done");
    let claimed = served.request("POST", "/v1/work/claim", Some(&json!({"agent": "bob"})));
    assert_eq!(claimed.json()["item"]["id"], second_id.as_str());
    let failed = served.request(
        "POST",
        &format!("/v1/work/items/{second_id}/fail"),
        Some(&json!({"reason": "no time"})),
    );
    assert_eq!(failed.json()["state"], "failed");
    let stats = served.request("GET", "/v1/work/stats", None).json();
    assert_eq!(
        (
            stats["stored"]["done"].clone(),
            stats["stored"]["failed"].clone()
        ),
        (json!(1), json!(1))
    );
    let listed = served.request("GET", "/v1/work/items?state=failed", None);
    assert_eq!(listed.json()["items"].as_array().unwrap().len(), 1);
    let bad = served.request("GET", "/v1/work/items?state=later", None);
    assert_eq!(
        (bad.status, bad.error_code()),
        (400, "invalid_input".to_owned())
    );
    let missing = served.request(
        "GET",
        "/v1/work/items/01a209e3-0000-7000-8000-000000000000",
        None,
    );
    assert_eq!(missing.status, 404);

    // Documents: create by writing, edit by splices from the epoch read.
    let written = served.request(
        "PUT",
        "/v1/docs/conventions",
        Some(&json!({"text": "indent with tabs", "actor": "ada"})),
    );
    assert_eq!(written.status, 200, "{:?}", written.json());
    assert_eq!(events.next_event("document_changed")["name"], "conventions");
    let read = served.request("GET", "/v1/docs/conventions", None).json();
    let epoch = read["epoch"].as_u64().unwrap();
    let edited = served.request(
        "POST",
        "/v1/docs/conventions/edit",
        Some(&json!({"actor": "bob", "epoch": epoch, "splices": [{"pos": 12, "delete": 4, "insert": "spaces"}]})),
    );
    assert_eq!(edited.status, 200, "{:?}", edited.json());
    let read = served.request("GET", "/v1/docs/conventions", None).json();
    assert_eq!(read["text"], "indent with spaces");
    let stale = served.request(
        "POST",
        "/v1/docs/conventions/edit",
        Some(&json!({"actor": "bob", "epoch": epoch + 1, "splices": []})),
    );
    assert_eq!(
        (stale.status, stale.error_code()),
        (409, "stale_epoch".to_owned())
    );
    let undone = served.request(
        "POST",
        "/v1/docs/conventions/undo",
        Some(&json!({"actor": "bob"})),
    );
    assert_eq!(undone.status, 200);
    let read = served.request("GET", "/v1/docs/conventions", None).json();
    assert_eq!(read["text"], "indent with tabs");
    let listed = served.request("GET", "/v1/docs", None).json();
    assert_eq!(listed["documents"][0]["name"], "conventions");

    let diagnostics = served.request("GET", "/v1/diagnostics", None).json();
    let gauges = diagnostics["snapshot"]["gauges"].as_array().unwrap();
    assert!(
        gauges
            .iter()
            .any(|g| g["name"] == "mnemosyne_work_items_active" && g["max"] == 10_000)
    );
    assert!(
        gauges
            .iter()
            .any(|g| g["name"] == "mnemosyne_embedding_cache_bytes")
    );
    assert!(
        diagnostics["snapshot"]["process"]["rss_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_second_server_on_the_database_serves_memories_but_says_who_owns_the_queue() {
    let sandbox = Sandbox::new();
    let owner = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let second = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let refused = second.request("POST", "/v1/work/claim", Some(&json!({"agent": "a"})));
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error_code(), "work_queue_unavailable");
    assert!(
        refused.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("held by another mnemosyne process")
    );
    let stored = second.request("POST", "/v1/memories", Some(&remember_body("still served")));
    assert_eq!(stored.status, 201);
    let claimed = owner.request("POST", "/v1/work/claim", Some(&json!({"agent": "a"})));
    assert_eq!(claimed.status, 200);
    assert_eq!(second.terminate(), Some(0));
    assert_eq!(owner.terminate(), Some(0));
}

/// The first server's embedder is down: remembers are acknowledged (keyword
/// only) and wait in the bounded backlog, a remember past
/// `embedding_backlog_max` is 503 `busy` and stores nothing; then SIGKILL.
/// The next server's embedding worker embeds what the first one left.
#[test]
fn memories_remembered_before_a_kill_get_their_vectors_after_the_next_start() {
    let sandbox = Sandbox::new();
    let (config, _port) = unreachable_http_embedder(&sandbox);
    let first = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[
            ("MNEMOSYNE_CONFIG", config.as_str()),
            ("MNEMOSYNE_EMBEDDING_BACKLOG_MAX", "2"),
            ("MNEMOSYNE_EMBEDDING_BACKLOG_WAIT_MS", "0"),
        ],
    );
    let mut ids = Vec::new();
    for content in [
        "kept across a kill: the lease reaper",
        "kept across a kill: the writer",
    ] {
        let created = first.request("POST", "/v1/memories", Some(&remember_body(content)));
        assert_eq!(created.status, 201, "{:?}", created.json());
        ids.push(created.json()["id"].as_str().expect("id").to_owned());
    }
    let refused = first.request(
        "POST",
        "/v1/memories",
        Some(&remember_body("one past embedding_backlog_max")),
    );
    assert_eq!(refused.status, 503);
    assert_eq!(refused.error_code(), "busy");
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        message.contains("embedding_backlog_max") && message.contains("retry"),
        "{message}"
    );
    assert_eq!(first.metric("mnemosyne_embedding_backlog"), Some(2));
    assert_eq!(first.metric("mnemosyne_embedding_backlog_max"), Some(2));
    let keyword = first.request(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "kept across a kill", "mode": "keyword"})),
    );
    assert_eq!(keyword.json()["hits"].as_array().unwrap().len(), 2);
    let deadline = std::time::Instant::now() + Duration::from_secs(READ_TIMEOUT_S);
    while first
        .metric("mnemosyne_embedding_errors_total")
        .unwrap_or(0)
        == 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never tried"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill();
    assert_eq!(sandbox.count(), 2, "the refused remember stored nothing");

    let second = Served::start(&sandbox, "127.0.0.1:0", &[]);
    second.wait_for_metric("mnemosyne_embeddings_missing", 0);
    assert_eq!(second.metric("mnemosyne_embeddings_stored_total"), Some(2));
    let vector = second.request(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "kept across a kill", "mode": "vector"})),
    );
    let mut found: Vec<String> = vector.json()["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["memory"]["id"].as_str().unwrap().to_owned())
        .collect();
    found.sort();
    ids.sort();
    assert_eq!(found, ids, "{:?}", vector.json());
    assert_eq!(second.terminate(), Some(0));
}

#[test]
fn context_and_min_importance_over_http() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let remember = |body: Value| -> String {
        let created = served.request("POST", "/v1/memories", Some(&body));
        assert_eq!(created.status, 201, "{:?}", created.json());
        created.json()["id"].as_str().expect("id").to_owned()
    };
    let spec = remember(json!({"content": "the cache is bounded by bytes", "importance": 9}));
    let test = remember(
        json!({"content": "a test fills the cache past its cap", "importance": 4,
                               "links": [{"target": spec, "link_type": "depends_on"}]}),
    );
    let far = remember(
        json!({"content": "the moka weigher counts vector bytes", "importance": 2,
                              "links": [{"target": test, "link_type": "relates_to"}]}),
    );

    let context = served.request("GET", &format!("/v1/memories/{spec}/context"), None);
    assert_eq!(context.status, 200, "{:?}", context.json());
    let body = context.json();
    assert_eq!(body["memory"]["id"], spec.as_str());
    let reached: Vec<(String, u64)> = body["neighbours"]
        .as_array()
        .expect("neighbours")
        .iter()
        .map(|n| {
            (
                n["memory"]["id"].as_str().expect("id").to_owned(),
                n["hop"].as_u64().expect("hop"),
            )
        })
        .collect();
    assert_eq!(reached, [(test.clone(), 1), (far.clone(), 2)]);
    assert_eq!(
        body["edges"][1],
        json!({"source": far, "target": test, "link_type": "relates_to",
               "from": test, "direction": "incoming", "hop": 2})
    );
    let one_hop = served.request(
        "GET",
        &format!("/v1/memories/{spec}/context?hops=1&fan_out=1&limit=2"),
        None,
    );
    assert_eq!(one_hop.status, 200);
    assert_eq!(
        one_hop.json()["neighbours"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(one_hop.json()["truncated"], false);
    let capped = served.request("GET", &format!("/v1/memories/{spec}/context?limit=2"), None);
    assert_eq!(capped.json()["truncated"], true, "far did not fit");

    for (query, named) in [
        ("hops=3", "context_hops_max"),
        ("fan_out=0", "context_fan_out_max"),
        ("fan_out=9", "context_fan_out_max"),
        ("limit=51", "context_memories_max"),
    ] {
        let refused = served.request("GET", &format!("/v1/memories/{spec}/context?{query}"), None);
        assert_eq!(
            (refused.status, refused.error_code()),
            (400, "invalid_input".into()),
            "{query}"
        );
        let message = refused.json()["error"]["message"].clone();
        assert!(
            message.as_str().unwrap().contains(named),
            "{query}: {message}"
        );
    }
    let zero = served.request("GET", "/v1/memories?min_importance=0", None);
    assert_eq!(zero.status, 400);
    assert!(
        zero.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("min_importance")
    );
    let typo = served.request("GET", &format!("/v1/memories/{spec}/context?hop=1"), None);
    assert_eq!(typo.status, 400, "an unknown parameter is refused");
    let missing = served.request(
        "GET",
        "/v1/memories/01900000-0000-7000-8000-000000000000/context",
        None,
    );
    assert_eq!(
        (missing.status, missing.error_code()),
        (404, "not_found".into())
    );

    let listed = served.request("GET", "/v1/memories?min_importance=4&sort=importance", None);
    assert_eq!(listed.status, 200);
    let ids: Vec<String> = listed.json()["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["id"].as_str().expect("id").to_owned())
        .collect();
    assert_eq!(ids, [spec.clone(), test.clone()]);
    let recall = served.request(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "cache bytes weigher", "min_importance": 3})),
    );
    assert_eq!(recall.status, 200);
    assert!(
        recall.json()["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .all(|h| h["memory"]["id"] != far.as_str()),
        "{:?}",
        recall.json()
    );
    let refused = served.request(
        "POST",
        "/v1/recall",
        Some(&json!({"query": "cache", "min_importance": 11})),
    );
    assert_eq!(refused.status, 400);
    assert_eq!(served.terminate(), Some(0));
}
