//! `serve http` against what a web page, a careless client or an attacker
//! sends: a foreign Host (DNS rebinding), a cross-origin "simple" request,
//! oversized heads, a slowloris, a flood of idle connections, bodies with
//! invalid UTF-8 or NaN. Real binary, real sockets, real database: each test
//! counts the memories stored before and after.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::Sandbox;
use common::http::{Conn, READ_TIMEOUT_S, Response, Served};
use serde_json::json;

/// A request head of the test's own (`{host}` is the Host header line or
/// nothing), with an optional JSON-ish body and content type.
fn raw(method: &str, path: &str, headers: &[&str], body: &[u8]) -> Vec<u8> {
    let mut text = format!("{method} {path} HTTP/1.1\r\n");
    for header in headers {
        text.push_str(header);
        text.push_str("\r\n");
    }
    if !body.is_empty() {
        text.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    text.push_str("\r\n");
    let mut bytes = text.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

fn send(served: &Served, method: &str, path: &str, headers: &[&str], body: &[u8]) -> Response {
    served
        .connect()
        .send_bytes(&raw(method, path, headers, body))
}

fn remember(served: &Served, content: &str) -> Response {
    served.request(
        "POST",
        "/v1/memories",
        Some(&json!({"content": content, "namespace": "project:hardening"})),
    )
}

const NOTE: &[u8] = br#"{"content": "planted by a web page", "namespace": "global"}"#;

#[test]
fn a_foreign_host_reads_nothing_and_writes_nothing() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    assert_eq!(remember(&served, "a private note").status, 201);
    let before = sandbox.count();
    let port = served.addr.port();
    let evil = format!("Host: evil.example:{port}");

    // DNS rebinding: the page's own name, resolved to 127.0.0.1.
    for path in ["/v1/memories", "/v1/events", "/metrics", "/health"] {
        let read = send(&served, "GET", path, &[&evil], b"");
        assert_eq!(
            (read.status, read.error_code()),
            (421, "unknown_host".into())
        );
        let body = String::from_utf8_lossy(&read.body);
        assert!(!body.contains("a private note"), "{body}");
        assert!(body.contains("--allowed-host"), "{body}");
    }
    let json_type = "Content-Type: application/json";
    let write = send(&served, "POST", "/v1/memories", &[&evil, json_type], NOTE);
    assert_eq!(write.status, 421);
    let by_ip = format!("Host: 10.1.2.3:{port}");
    let other_port = format!("Host: 127.0.0.1:{}", port.wrapping_add(1));
    for host in [by_ip.as_str(), other_port.as_str(), "Host: evil.example"] {
        let write = send(&served, "POST", "/v1/memories", &[host, json_type], NOTE);
        assert_eq!(write.status, 421, "{host}");
    }
    // An absolute-form target names the host too.
    let absolute = format!("http://evil.example:{port}/v1/memories");
    let own = format!("Host: 127.0.0.1:{port}");
    let read = send(&served, "GET", &absolute, &[&own], b"");
    assert_eq!(read.status, 421);
    // No Host at all on HTTP/1.1, or two of them.
    let none = send(&served, "GET", "/v1/memories", &[], b"");
    assert_eq!(
        (none.status, none.error_code()),
        (400, "invalid_input".into())
    );
    let two = send(&served, "GET", "/v1/memories", &[&own, &evil], b"");
    assert_eq!(two.status, 400);
    assert_eq!(sandbox.count(), before, "nothing was written");

    // The names of this server are answered, with or without the port.
    for host in [
        format!("Host: localhost:{port}"),
        format!("Host: [::1]:{port}"),
        "Host: 127.0.0.1".to_owned(),
        "Host: LocalHost".to_owned(),
    ] {
        let read = send(&served, "GET", "/v1/memories", &[&host], b"");
        assert_eq!(read.status, 200, "{host}");
        assert!(String::from_utf8_lossy(&read.body).contains("a private note"));
    }
    let mut events = served.connect();
    assert_eq!(events.subscribe(&[]), 200, "SSE with the own Host");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_cross_origin_simple_post_stores_nothing() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    let before = sandbox.count();
    let own = format!("Host: {}", served.addr);
    let page = "Origin: http://evil.example";

    // What a form or fetch(no-cors) of another site sends: no preflight.
    let simple = send(
        &served,
        "POST",
        "/v1/memories",
        &[&own, page, "Content-Type: text/plain"],
        NOTE,
    );
    assert_eq!(
        (simple.status, simple.error_code()),
        (403, "forbidden_origin".into())
    );
    assert_eq!(simple.header("access-control-allow-origin"), None);
    let json_body = send(
        &served,
        "POST",
        "/v1/memories",
        &[&own, page, "Content-Type: application/json"],
        NOTE,
    );
    assert_eq!(json_body.status, 403);
    let read = send(&served, "GET", "/v1/memories", &[&own, page], b"");
    assert_eq!(read.status, 403);
    let null = send(&served, "GET", "/v1/events", &[&own, "Origin: null"], b"");
    assert_eq!(null.status, 403);
    let preflight = send(
        &served,
        "OPTIONS",
        "/v1/memories",
        &[&own, page, "Access-Control-Request-Method: POST"],
        b"",
    );
    assert_eq!(preflight.status, 403);
    assert_eq!(preflight.header("access-control-allow-origin"), None);

    // Without an Origin, a body must still be JSON: 415 for anything else.
    for content_type in [
        "Content-Type: text/plain",
        "Content-Type: application/x-www-form-urlencoded",
        "Content-Type: multipart/form-data; boundary=x",
    ] {
        let other = send(&served, "POST", "/v1/memories", &[&own, content_type], NOTE);
        assert_eq!(
            (other.status, other.error_code()),
            (415, "unsupported_media_type".into()),
            "{content_type}"
        );
    }
    let untyped = send(&served, "POST", "/v1/memories", &[&own], NOTE);
    assert_eq!(untyped.status, 415);
    let put = send(
        &served,
        "PUT",
        "/v1/docs/notes",
        &[&own, "Content-Type: text/plain"],
        br#"{"text":"x"}"#,
    );
    assert_eq!(put.status, 415);
    assert_eq!(sandbox.count(), before, "nothing was stored");

    // The server's own pages (same origin) and plain clients still work.
    let same_origin = format!("Origin: http://{}", served.addr);
    let localhost_origin = format!("Origin: http://localhost:{}", served.addr.port());
    for origin in [&same_origin, &localhost_origin] {
        let stored = send(
            &served,
            "POST",
            "/v1/memories",
            &[
                &own,
                origin,
                "Content-Type: application/json; charset=utf-8",
            ],
            NOTE,
        );
        assert_eq!(stored.status, 201, "{origin}");
        assert_eq!(stored.header("access-control-allow-origin"), None);
    }
    assert_eq!(remember(&served, "a plain client").status, 201);
    // An empty body needs no type (the work transitions without fields).
    let no_body = send(
        &served,
        "POST",
        "/v1/work/items/x/cancel",
        &[&own, "Content-Length: 0"],
        b"",
    );
    assert_eq!(no_body.status, 400, "reached the handler: a bad id");
    assert_eq!(sandbox.count(), before + 3);
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_configured_proxy_host_and_origin_are_answered() {
    let sandbox = Sandbox::new();
    let config = sandbox.path("config.toml");
    std::fs::write(
        &config,
        "[server]\nhttp_allowed_origins = [\"https://app.example\"]\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let served = Served::start_with(
        &sandbox,
        &[
            "--bind",
            "127.0.0.1:0",
            "--allowed-host",
            "memory.example",
            "--allowed-origin",
            "http://tools.example:3000",
        ],
        &[("MNEMOSYNE_CONFIG", config)],
    );
    let json_type = "Content-Type: application/json";
    let proxied = send(
        &served,
        "POST",
        "/v1/memories",
        &["Host: memory.example", json_type],
        NOTE,
    );
    assert_eq!(proxied.status, 201, "the proxy's name is answered");
    let read = send(
        &served,
        "GET",
        "/v1/memories",
        &["Host: memory.example:443"],
        b"",
    );
    assert_eq!(read.status, 200);
    let unlisted = send(
        &served,
        "GET",
        "/v1/memories",
        &["Host: other.example"],
        b"",
    );
    assert_eq!(unlisted.status, 421);

    let own = format!("Host: {}", served.addr);
    for origin in ["https://app.example", "http://tools.example:3000"] {
        let header = format!("Origin: {origin}");
        let preflight = send(
            &served,
            "OPTIONS",
            "/v1/memories",
            &[
                &own,
                &header,
                "Access-Control-Request-Method: POST",
                "Access-Control-Request-Headers: content-type",
            ],
            b"",
        );
        assert_eq!(preflight.status, 204, "{origin}");
        assert_eq!(
            preflight.header("access-control-allow-origin"),
            Some(origin)
        );
        assert!(
            preflight
                .header("access-control-allow-headers")
                .is_some_and(|h| h.contains("content-type") && h.contains("authorization"))
        );
        assert!(
            preflight
                .header("access-control-allow-methods")
                .is_some_and(|m| m.contains("POST"))
        );
        let stored = send(
            &served,
            "POST",
            "/v1/memories",
            &[&own, &header, json_type],
            NOTE,
        );
        assert_eq!(stored.status, 201, "{origin}");
        assert_eq!(stored.header("access-control-allow-origin"), Some(origin));
        assert_eq!(stored.header("vary"), Some("Origin"));
    }
    let other = send(
        &served,
        "POST",
        "/v1/memories",
        &[&own, "Origin: https://evil.example", json_type],
        NOTE,
    );
    assert_eq!(other.status, 403);
    assert_eq!(sandbox.count(), 3);
    assert_eq!(served.terminate(), Some(0));

    let error = sandbox.fail(&[
        "serve",
        "http",
        "--bind",
        "127.0.0.1:0",
        "--allowed-origin",
        "app.example",
    ]);
    assert!(
        error.contains("invalid allowed origin \"app.example\"") && !error.contains('\n'),
        "{error}"
    );
}

#[test]
fn request_heads_over_their_limits_are_431_and_the_server_carries_on() {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[
            ("MNEMOSYNE_HTTP_HEADER_BYTES_MAX", "16384"),
            ("MNEMOSYNE_HTTP_HEADERS_MAX", "20"),
        ],
    );
    let own = format!("Host: {}", served.addr);
    let cookie = |bytes: usize| format!("Cookie: c={}", "x".repeat(bytes));
    let fits = send(&served, "GET", "/health", &[&own, &cookie(12 * 1024)], b"");
    assert_eq!(fits.status, 200);
    for size in [17 * 1024, 1024 * 1024] {
        let mut conn = served.connect();
        conn.write_bytes(&raw("GET", "/health", &[&own, &cookie(size)], b""));
        // The server answers 431 and closes; with part of a long head
        // still unread, the close may reset the connection first.
        let answer = String::from_utf8_lossy(&conn.read_until_closed()).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
            "{size} bytes of headers: {answer:?}"
        );
    }
    let many: Vec<String> = (0..20).map(|i| format!("X-Header-{i}: {i}")).collect();
    let mut headers: Vec<&str> = many.iter().map(String::as_str).collect();
    headers.push(&own);
    let mut conn = served.connect();
    conn.write_bytes(&raw("GET", "/health", &headers, b""));
    let answer = String::from_utf8_lossy(&conn.read_until_closed()).into_owned();
    assert!(answer.starts_with("HTTP/1.1 431"), "21 headers: {answer:?}");
    headers.remove(0);
    let twenty = send(&served, "GET", "/health", &headers, b"");
    assert_eq!(twenty.status, 200, "20 headers fit");
    assert_eq!(served.terminate(), Some(0));
}

#[test]
fn a_slowloris_is_closed_after_the_header_read_timeout() {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[("MNEMOSYNE_HTTP_HEADER_READ_TIMEOUT_MS", "300")],
    );
    let opened = served.metric("mnemosyne_http_connections_total").unwrap();
    // A head that never ends: one more header line every 50 ms.
    let mut slow = served.connect();
    slow.write_bytes(format!("GET /health HTTP/1.1\r\nHost: {}\r\n", served.addr).as_bytes());
    let trickle = slow.reader.get_ref().try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let mut trickle = trickle;
        let deadline = Instant::now() + Duration::from_secs(READ_TIMEOUT_S);
        let mut line = 0;
        while Instant::now() < deadline {
            use std::io::Write;
            if trickle
                .write_all(format!("X-Slow-{line}: 1\r\n").as_bytes())
                .is_err()
            {
                return true;
            }
            line += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        false
    });
    let answer = slow.read_until_closed();
    assert!(answer.is_empty(), "{:?}", String::from_utf8_lossy(&answer));
    assert!(
        writer.join().unwrap(),
        "the server stopped reading but kept the socket"
    );
    // An idle connection that sends nothing is closed the same way.
    let mut idle = served.connect();
    assert!(idle.read_until_closed().is_empty());
    // A prompt client on a fresh connection is served.
    let health = served.request("GET", "/health", None);
    assert_eq!(health.status, 200);
    assert!(served.metric("mnemosyne_http_connections_total").unwrap() >= opened + 3);
    assert_eq!(served.terminate(), Some(0));
}

/// Connections held open (never sending a byte) up to the limit.
const CONNECTIONS_MAX: usize = 50;
/// Connections refused past it while the RSS is watched.
const REFUSED_WHILE_MEASURED: usize = 2_000;

#[test]
fn connections_past_the_limit_are_refused_without_growing_the_server() {
    let sandbox = Sandbox::new();
    let served = Served::start(
        &sandbox,
        "127.0.0.1:0",
        &[
            ("MNEMOSYNE_HTTP_CONNECTIONS_MAX", "50"),
            ("MNEMOSYNE_HTTP_HEADER_READ_TIMEOUT_MS", "600000"),
        ],
    );
    assert_eq!(remember(&served, "still served").status, 201);
    // Each held connection is served once (a keep-alive request), so all
    // 50 slots are known to be held by them: a connection closed just
    // before may still hold its slot for a moment, and then the next one
    // is refused and tried again.
    let mut held: Vec<Conn> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(READ_TIMEOUT_S);
    while held.len() < CONNECTIONS_MAX {
        let mut conn = served.connect();
        match conn.send("GET", "/health", &[], None).status {
            200 => held.push(conn),
            503 => assert!(Instant::now() < deadline, "slots never came free"),
            other => panic!("GET /health answered {other}"),
        }
    }
    let refused_answer = |served: &Served| {
        let mut conn = served.connect();
        let answer = String::from_utf8_lossy(&conn.read_until_closed()).into_owned();
        assert!(
            answer.starts_with("HTTP/1.1 503") && answer.contains("http_connections_max = 50"),
            "{answer:?}"
        );
    };
    // The 51st to the 60th, then a warm-up, then the measured flood.
    for _ in 0..10 {
        refused_answer(&served);
    }
    for _ in 0..200 {
        refused_answer(&served);
    }
    let before = served.rss_kib();
    for _ in 0..REFUSED_WHILE_MEASURED {
        refused_answer(&served);
    }
    let after = served.rss_kib();
    // Held, 2 000 connections would be 16 MB of read buffers alone.
    assert!(
        after < before + 1_024,
        "RSS grew from {before} KiB to {after} KiB refusing {REFUSED_WHILE_MEASURED} connections"
    );
    // A held connection is served, and once one closes a new one is too.
    let listed = held[0].send("GET", "/v1/memories", &[], None);
    assert_eq!(listed.status, 200);
    held.truncate(CONNECTIONS_MAX - 1);
    let deadline = Instant::now() + Duration::from_secs(READ_TIMEOUT_S);
    let refused = loop {
        let metrics = served.connect().send("GET", "/metrics", &[], None);
        if metrics.status == 200 {
            break String::from_utf8_lossy(&metrics.body).into_owned();
        }
        assert_eq!(metrics.status, 503);
        assert!(Instant::now() < deadline, "no slot came free");
        std::thread::sleep(Duration::from_millis(20));
    };
    let refused_total: u64 = refused
        .lines()
        .find_map(|l| l.strip_prefix("mnemosyne_http_connections_refused_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(refused_total >= 2_210, "{refused_total} refused");
    drop(held);
    assert_eq!(sandbox.count(), 1);
    assert_eq!(served.terminate(), Some(0));
}

/// `serve http` under `ulimit -Sn soft -Hn hard` (through bash).
fn under_fd_limit(sandbox: &Sandbox, soft: u32, hard: u32, env: &[(&str, &str)]) -> Command {
    let inner = sandbox.command();
    let mut command = Command::new("bash");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -Sn {soft} && ulimit -Hn {hard} && exec \"$@\""
        ))
        .arg("bash")
        .arg(inner.get_program())
        .args(inner.get_args())
        .args(["serve", "http", "--bind", "127.0.0.1:0"]);
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => command.env(name, value),
            None => command.env_remove(name),
        };
    }
    command.stdin(std::process::Stdio::null());
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

#[test]
fn the_open_file_limit_is_raised_and_a_budget_that_cannot_fit_is_refused() {
    let sandbox = Sandbox::new();
    // Default limits need 1 024 connections + 15 database files + 64.
    let output = under_fd_limit(&sandbox, 256, 512, &[]).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(
            "the open-file limit is 512 (hard limit 512) but serve http needs 1103: \
             http_connections_max 1024"
        ),
        "{stderr}"
    );
    assert!(!sandbox.db.exists(), "refused before opening the database");

    // 400 + 15 + 64 fit under the hard limit once the soft one is raised.
    let fits = [("MNEMOSYNE_HTTP_CONNECTIONS_MAX", "400")];
    let served = Served::spawn(under_fd_limit(&sandbox, 256, 512, &fits));
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", served.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["512", "512"],
        "{open_files}"
    );
    assert_eq!(remember(&served, "within the budget").status, 201);
    assert_eq!(served.terminate(), Some(0));
    let over = [("MNEMOSYNE_HTTP_CONNECTIONS_MAX", "434")];
    let output = under_fd_limit(&sandbox, 256, 512, &over).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("needs 513"),
        "one past the budget: {stderr}"
    );
}

#[test]
fn invalid_utf8_and_nan_get_one_clear_400_and_store_nothing() {
    let sandbox = Sandbox::new();
    let served = Served::start(&sandbox, "127.0.0.1:0", &[]);
    assert_eq!(remember(&served, "the only memory").status, 201);
    let before = sandbox.count();
    let cases: [(&str, &str, &[u8], &str); 7] = [
        (
            "POST",
            "/v1/memories",
            b"{\"content\": \"caf\xe9\"}",
            "not valid UTF-8",
        ),
        (
            "POST",
            "/v1/memories",
            b"{\"content\": \"x\", \"importance\": NaN}",
            "NaN and Infinity",
        ),
        (
            "POST",
            "/v1/memories",
            b"{\"content\": \"x\", \"importance\": Infinity}",
            "NaN and Infinity",
        ),
        (
            "POST",
            "/v1/recall",
            b"{\"query\": \"x\", \"limit\": -Infinity}",
            "NaN and Infinity",
        ),
        (
            "POST",
            "/v1/memories",
            b"{\"content\": \"x\", \"importance\": 1e999}",
            "number out of range",
        ),
        (
            "POST",
            "/v1/memories",
            b"{\"content\": \"\\ud800\"}",
            "invalid input",
        ),
        (
            "PUT",
            "/v1/docs/notes",
            b"{\"text\": \"\xff\xfe\", \"actor\": \"a\"}",
            "not valid UTF-8",
        ),
    ];
    for (method, path, body, says) in cases {
        let answer = served.connect().send_raw(method, path, &[], Some(body));
        assert_eq!(answer.status, 400, "{}", String::from_utf8_lossy(body));
        assert_eq!(answer.error_code(), "invalid_input");
        let message = answer.json()["error"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(
            message.contains(says) && !message.contains('\n'),
            "{message}"
        );
    }
    let query = served.request("GET", "/v1/memories?namespace=%FF", None);
    assert_eq!(query.status, 400);
    assert_eq!(query.error_code(), "invalid_input");
    assert_eq!(sandbox.count(), before, "nothing was stored");
    let docs = served.request("GET", "/v1/docs", None).json();
    assert_eq!(docs["documents"], json!([]));
    assert_eq!(served.terminate(), Some(0));
}
