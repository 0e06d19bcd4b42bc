//! The server in-process on a real store and real loopback sockets: every
//! task it starts ends at shutdown (the runtime's alive-task count returns
//! to its baseline), and 100 000 events pushed past an SSE subscriber that
//! never reads do not grow the process.
//!
//! Needs a storage backend: the workspace's `cargo test` gets one through
//! mnemosyne-cli; alone, run with `--features sqlite` (or `libsql`).

mod common;

use std::time::Duration;

use mnemosyne_core::Limits;
use mnemosyne_server::{Event, HttpListener, Server};
use rmcp::ServiceExt;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use common::{SETTLE_POLL_MS, SETTLE_POLLS_MAX, alive_tasks, open_store, request, settle_to};

/// Opens `GET /v1/events` and reads the response head.
async fn subscribe(addr: std::net::SocketAddr) -> BufReader<TcpStream> {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("write");
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.expect("status");
    assert!(line.starts_with("HTTP/1.1 200"), "{line}");
    loop {
        line.clear();
        reader.read_line(&mut line).await.expect("header");
        if line.trim().is_empty() {
            break;
        }
    }
    reader
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("/proc/self/status")
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_shutdown_ends_every_task_and_open_stream() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir, Limits::default()).await;
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

    let mut events = subscribe(addr).await;
    assert_eq!(
        request(addr, "POST", "/v1/memories", r#"{"content":"alive tasks"}"#).await,
        201
    );
    let mut line = String::new();
    while !line.starts_with("event: remembered") {
        line.clear();
        events.read_line(&mut line).await.expect("event");
    }
    // An idle keep-alive connection stays open too.
    let idle = TcpStream::connect(addr).await.expect("connect");
    let mut names = server.supervisor().names();
    for _ in 0..SETTLE_POLLS_MAX {
        if names.iter().filter(|n| *n == "http-connection").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_POLL_MS)).await;
        names = server.supervisor().names();
    }
    assert!(names.contains(&"heartbeat".to_owned()), "{names:?}");
    assert!(names.contains(&"http-accept".to_owned()), "{names:?}");
    assert!(
        names.iter().filter(|n| *n == "http-connection").count() >= 2,
        "{names:?}"
    );

    stop.send(()).expect("stop");
    let report = serving.await.expect("join").expect("serve");
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(server.supervisor().alive(), 0);
    // The SSE stream ended with the server.
    let mut rest = Vec::new();
    events
        .read_to_end(&mut rest)
        .await
        .expect("read to the end");
    drop(idle);
    store.close().await;
    assert_eq!(
        settle_to(baseline).await,
        baseline,
        "tasks left after shutdown"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mcp_shutdown_ends_every_task() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open_store(&dir, Limits::default()).await;
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
    let tools = client.list_all_tools().await.expect("tools");
    assert_eq!(tools.len(), 22);
    assert!(
        server
            .supervisor()
            .names()
            .contains(&"mcp-session".to_owned())
    );
    // Closing the client side is the end of the session (stdin closed).
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_holds_no_more_than_the_bus_capacity() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits {
        events_capacity: 64,
        ..Limits::default()
    };
    let store = open_store(&dir, limits).await;
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
    // Never read after the head.
    let stalled = subscribe(addr).await;
    let mut late = subscribe(addr).await;
    let event = |seq| Event::Heartbeat {
        seq,
        tasks_alive: 0,
    };
    let push = &|from: u64, n: u64| {
        for seq in from..from + n {
            server.events().publish(event(seq));
        }
    };
    // Warm up until the sockets and the connections' write buffers are
    // full and the allocator's arenas are in use, then take the baseline.
    let rounds = |first: u64, count: u64| async move {
        // Small rounds, so that the connection tasks get to run (and would
        // buffer, if they did) between them.
        for round in first..first + count {
            push(round * 1_000, 1_000);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    rounds(0, 30).await;
    let before = rss_kib();
    rounds(30, 100).await;
    tokio::time::sleep(Duration::from_millis(SETTLE_POLL_MS)).await;
    let after = rss_kib();
    // Buffered, 100 000 events (~90 bytes of SSE text each) would be ~9 MB
    // per subscriber, 18 MB for the two. The margin is 4 MiB: with 2 MiB,
    // allocator noise (a new arena page, the runtime's own buffers) failed
    // about one run in twenty on the libsql backend, which links a larger
    // allocator footprint; 4 MiB still fails any buffering of either stream.
    assert!(
        after < before + 4 * 1024,
        "RSS grew from {before} KiB to {after} KiB past a stalled subscriber"
    );
    // The late reader is told it missed events.
    let mut line = String::new();
    while !line.starts_with("event: lagged") {
        line.clear();
        late.read_line(&mut line).await.expect("event");
    }
    assert!(server.events().lagged_total() > 0);
    drop(stalled);
    stop.send(()).expect("stop");
    let report = serving.await.expect("join").expect("serve");
    assert!(report.is_clean(), "{report:?}");
    store.close().await;
}
