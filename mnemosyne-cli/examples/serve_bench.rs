//! Load driver of `cargo xtask serve-bench`: fills a store with 10 000
//! memories of the standard workload (`mnemosyne-core/src/workload.rs`, seeded: the
//! same corpus and queries as the storage benches), then measures
//! - MCP `recall` over stdio from one rmcp client: one request at a time,
//!   then `MCP_IN_FLIGHT` requests in flight;
//! - HTTP `POST /v1/recall` from `HTTP_CLIENTS` concurrent keep-alive
//!   loopback clients: p50/p99 latency and errors.
//!
//! Usage: serve_bench [MNEMOSYNE_BINARY] (default: `mnemosyne` beside the
//! examples directory, i.e. the release binary cargo built with it).
//! `MNEMOSYNE_BENCH_MODE=keyword|vector|hybrid` picks the recall mode
//! (default hybrid, what agents get).
//! Prints one JSON line of figures on stdout.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mnemosyne_core::Memory;
use mnemosyne_core::workload::{Workload, WorkloadQuery};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::Command;

const MEMORIES: usize = 10_000;
const MCP_REQUESTS: usize = 20_000;
const MCP_IN_FLIGHT: usize = 16;
const HTTP_CLIENTS: usize = 64;
const HTTP_REQUESTS_PER_CLIENT: usize = 300;
const WARM_UP_REQUESTS: usize = 500;
const RECALL_LIMIT: u32 = 10;

/// Seed of the workload generator (the storage benches use the same).
const SEED: u64 = 42;
/// Distinct workload queries, cycled through by every client.
const QUERIES: usize = 2_000;

/// The standard workload (`mnemosyne-core/src/workload.rs`): the memories and the
/// queries drawn from them, the same every run.
fn workload() -> (Vec<Memory>, Vec<WorkloadQuery>) {
    let mut workload = Workload::new(SEED);
    let now = chrono::Utc::now();
    let memories = (0..MEMORIES).map(|_| workload.memory(now)).collect();
    let queries = (0..QUERIES).map(|_| workload.query()).collect();
    (memories, queries)
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::args().nth(1) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("mnemosyne")
}

fn command(binary: &Path, db: &Path) -> Command {
    let mut command = Command::new(binary);
    command.arg("--db").arg(db).kill_on_drop(true);
    command
}

async fn fill(binary: &Path, db: &Path, dir: &Path, memories: &[Memory]) {
    let file = dir.join("corpus.jsonl");
    let mut text = String::new();
    for memory in memories {
        text.push_str(&serde_json::to_string(memory).expect("encode memory"));
        text.push('\n');
    }
    std::fs::write(&file, text).expect("write corpus");
    let status = command(binary, db)
        .arg("import")
        .arg(&file)
        .stdout(Stdio::null())
        .status()
        .await
        .expect("import");
    assert!(status.success(), "import failed");
}

/// The recall mode under test.
fn mode() -> String {
    std::env::var("MNEMOSYNE_BENCH_MODE").unwrap_or_else(|_| "hybrid".into())
}

/// The recall arguments of one workload query (with its namespace filter, if any).
fn recall_args(query: &WorkloadQuery) -> Value {
    let mut args = json!({"query": query.text, "limit": RECALL_LIMIT, "mode": mode()});
    if let Some(namespace) = &query.namespace {
        args["namespace"] = json!(namespace.to_string());
    }
    args
}

fn recall_params(query: &WorkloadQuery) -> CallToolRequestParams {
    let Value::Object(args) = recall_args(query) else {
        unreachable!()
    };
    CallToolRequestParams::new("recall").with_arguments(args)
}

async fn bench_mcp(binary: &Path, db: &Path, queries: Arc<Vec<WorkloadQuery>>) -> Value {
    // Outside any repository: `serve mcp` would file memories under the project.
    let mut child = command(binary, db)
        .current_dir(db.parent().expect("the database's directory"))
        .args(["serve", "mcp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn serve mcp");
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    let client = Arc::new(().serve((stdout, stdin)).await.expect("initialize"));
    let mut errors = 0usize;
    for query in queries.iter().cycle().take(WARM_UP_REQUESTS) {
        let _ = client.call_tool(recall_params(query)).await;
    }
    // One request at a time.
    let start = Instant::now();
    for query in queries.iter().cycle().take(MCP_REQUESTS) {
        match client.call_tool(recall_params(query)).await {
            Ok(result) if result.is_error != Some(true) => {}
            _ => errors += 1,
        }
    }
    let sequential = MCP_REQUESTS as f64 / start.elapsed().as_secs_f64();
    // MCP_IN_FLIGHT requests in flight on the one session.
    let start = Instant::now();
    let mut workers = Vec::new();
    for worker in 0..MCP_IN_FLIGHT {
        let client = Arc::clone(&client);
        let queries = Arc::clone(&queries);
        workers.push(tokio::spawn(async move {
            let mut errors = 0usize;
            let mine = queries.iter().cycle().skip(worker * 97);
            for query in mine.take(MCP_REQUESTS / MCP_IN_FLIGHT) {
                match client.call_tool(recall_params(query)).await {
                    Ok(result) if result.is_error != Some(true) => {}
                    _ => errors += 1,
                }
            }
            errors
        }));
    }
    for worker in workers {
        errors += worker.await.expect("worker");
    }
    let pipelined =
        (MCP_REQUESTS / MCP_IN_FLIGHT * MCP_IN_FLIGHT) as f64 / start.elapsed().as_secs_f64();
    let client = Arc::into_inner(client).expect("one owner left");
    client.cancel().await.expect("close");
    let status = child.wait().await.expect("wait");
    json!({
        "mcp_recall_per_s_sequential": sequential.round(),
        "mcp_recall_per_s_in_flight": pipelined.round(),
        "mcp_in_flight": MCP_IN_FLIGHT,
        "mcp_errors": errors,
        "mcp_exit_code": status.code(),
    })
}

/// One keep-alive HTTP/1.1 connection: POST a JSON body, read the answer.
struct Conn {
    reader: BufReader<TcpStream>,
}

impl Conn {
    async fn new(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        Self {
            reader: BufReader::new(stream),
        }
    }

    async fn post(&mut self, path: &str, body: &str) -> u16 {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(request.as_bytes())
            .await
            .expect("write");
        let mut line = String::new();
        self.reader.read_line(&mut line).await.expect("status");
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut length = 0usize;
        loop {
            line.clear();
            self.reader.read_line(&mut line).await.expect("header");
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().expect("length");
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await.expect("body");
        status
    }
}

async fn bench_http(binary: &Path, db: &Path, queries: Arc<Vec<WorkloadQuery>>) -> Value {
    let mut child = command(binary, db)
        .args(["serve", "http", "--bind", "127.0.0.1:0"])
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn serve http");
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let addr = loop {
        let line = stderr.next_line().await.expect("stderr").expect("a line");
        if let Some(addr) = line.strip_prefix("mnemosyne: http api listening on http://") {
            break addr.to_owned();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    let mut workers = Vec::new();
    let start = Instant::now();
    for client in 0..HTTP_CLIENTS {
        let addr = addr.clone();
        let queries = Arc::clone(&queries);
        workers.push(tokio::spawn(async move {
            let mut conn = Conn::new(&addr).await;
            let mut latencies = Vec::with_capacity(HTTP_REQUESTS_PER_CLIENT);
            let mut errors = 0usize;
            let mine = queries.iter().cycle().skip(client * 31);
            let requests = WARM_UP_REQUESTS / 10 + HTTP_REQUESTS_PER_CLIENT;
            for (n, query) in mine.take(requests).enumerate() {
                let body = recall_args(query).to_string();
                let sent = Instant::now();
                let status = conn.post("/v1/recall", &body).await;
                if n >= WARM_UP_REQUESTS / 10 {
                    latencies.push(sent.elapsed());
                    if status != 200 {
                        errors += 1;
                    }
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for worker in workers {
        let (mut l, e) = worker.await.expect("worker");
        latencies.append(&mut l);
        errors += e;
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
    let pid = child.id().expect("pid").to_string();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status();
    let status = child.wait().await.expect("wait");
    json!({
        "http_clients": HTTP_CLIENTS,
        "http_requests": latencies.len(),
        "http_errors": errors,
        "http_recall_per_s": (latencies.len() as f64 / elapsed.as_secs_f64()).round(),
        "http_p50_ms": ms(at(0.50)),
        "http_p99_ms": ms(at(0.99)),
        "http_max_ms": ms(at(1.0)),
        "http_exit_code": status.code(),
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let binary = binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let db = dir.path().join("bench.db");
    eprintln!(
        "serve-bench: {MEMORIES} memories of the standard workload into {}",
        db.display()
    );
    let (memories, queries) = workload();
    fill(&binary, &db, dir.path(), &memories).await;
    let queries = Arc::new(queries);
    eprintln!("serve-bench: mcp recall over stdio");
    let mcp = bench_mcp(&binary, &db, Arc::clone(&queries)).await;
    eprintln!("serve-bench: {mcp}");
    eprintln!("serve-bench: http recall, {HTTP_CLIENTS} clients");
    let http = bench_http(&binary, &db, queries).await;
    let mut figures = json!({
        "memories": MEMORIES,
        "backend": mnemosyne_storage::BACKEND,
        "mode": mode(),
    });
    for part in [mcp, http] {
        if let (Value::Object(all), Value::Object(part)) = (&mut figures, part) {
            all.extend(part);
        }
    }
    println!("{figures}");
}
