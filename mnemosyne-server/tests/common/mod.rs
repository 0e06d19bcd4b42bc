//! What the server's integration tests share: a store in a temp dir, the
//! runtime's task count and a wait for it to settle, one raw HTTP request.
#![allow(dead_code)]

use std::time::Duration;

use mnemosyne_core::Limits;
use mnemosyne_storage::{Location, MemoryStore};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on the polls below: the runtime counts a task as ended a moment
/// after it returns (and the embedding worker stores a vector a moment after
/// the answer). Reaching it fails the test; nothing checks speed.
pub const SETTLE_POLLS_MAX: u32 = 500;
pub const SETTLE_POLL_MS: u64 = 10;

pub async fn open_store(dir: &tempfile::TempDir, limits: Limits) -> MemoryStore {
    assert_ne!(
        mnemosyne_storage::BACKEND,
        "none",
        "no storage backend: run with --features sqlite or --features libsql"
    );
    MemoryStore::open(&Location::File(dir.path().join("server.db")), limits)
        .await
        .expect("open the store")
}

pub fn alive_tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

/// Waits until the runtime's alive-task count is back to `baseline`.
pub async fn settle_to(baseline: usize) -> usize {
    let mut alive = alive_tasks();
    for _ in 0..SETTLE_POLLS_MAX {
        if alive <= baseline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_POLL_MS)).await;
        alive = alive_tasks();
    }
    alive
}

/// One request with `Connection: close`; the status code.
pub async fn request(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> u16 {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.expect("write");
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.expect("read");
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status")
}
