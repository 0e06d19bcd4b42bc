//! `mnemosyne serve mcp` as an MCP client starts it: a child process spoken
//! to over its stdin and stdout, by the rmcp client, by raw JSON-RPC lines
//! (malformed input), and by the Python `mcp` SDK.

// The skip reason of the Python test is printed for whoever runs `cargo test`.
#![allow(clippy::print_stderr)]

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::Sandbox;
use rmcp::model::{CallToolRequestParams, CallToolResult, ErrorCode};
use rmcp::service::{RunningService, ServiceError};
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Every tool, sorted.
const TOOLS: [&str; 22] = [
    "context",
    "diagnostics",
    "doc_edit",
    "doc_list",
    "doc_read",
    "doc_undo",
    "doc_write",
    "forget",
    "get",
    "link",
    "list",
    "recall",
    "remember",
    "update",
    "work_claim",
    "work_complete",
    "work_fail",
    "work_get",
    "work_heartbeat",
    "work_list",
    "work_review",
    "work_submit",
];

/// Time a test waits for the server to exit after its stdin closed or a
/// signal; a hang fails the test instead of blocking CI.
const EXIT_WAIT_S: u64 = 60;

fn serve_mcp(sandbox: &Sandbox, env: &[(&str, &str)]) -> Child {
    let mut command = Command::from(sandbox.command());
    command
        .args(["serve", "mcp"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    command.spawn().expect("spawn mnemosyne serve mcp")
}

type Client = RunningService<RoleClient, ()>;

async fn connect(child: &mut Child) -> Client {
    let stdout = child.stdout.take().expect("stdout");
    let stdin = child.stdin.take().expect("stdin");
    ().serve((stdout, stdin)).await.expect("initialize")
}

fn args(value: Value) -> CallToolRequestParams {
    let Value::Object(map) = value else {
        panic!("arguments must be an object")
    };
    CallToolRequestParams::new("").with_arguments(map)
}

async fn call(client: &Client, tool: &'static str, arguments: Value) -> CallToolResult {
    let mut params = args(arguments);
    params.name = tool.into();
    client
        .call_tool(params)
        .await
        .unwrap_or_else(|e| panic!("{tool}: {e}"))
}

/// A successful tool answer's JSON.
async fn ok(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(result.is_error, Some(true), "{tool} failed: {result:?}");
    result.structured_content.expect("structured content")
}

/// A refused tool call's error object (`{"code", "message"}`).
async fn tool_error(client: &Client, tool: &'static str, arguments: Value) -> Value {
    let result = call(client, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} should fail: {result:?}"
    );
    result.structured_content.expect("structured error")["error"].clone()
}

async fn exit_code(child: &mut Child) -> Option<i32> {
    tokio::time::timeout(Duration::from_secs(EXIT_WAIT_S), child.wait())
        .await
        .expect("the server exits")
        .expect("wait")
        .code()
}

#[tokio::test]
async fn an_rmcp_client_remembers_and_recalls_through_the_tools() {
    let sandbox = Sandbox::new();
    let mut child = serve_mcp(&sandbox, &[]);
    let client = connect(&mut child).await;

    let info = client.peer_info().expect("server info");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("mnemosyne")
    );
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| {
            assert!(
                tool.description.as_deref().is_some_and(|d| d.len() > 20),
                "{} needs a description",
                tool.name
            );
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
            tool.name.to_string()
        })
        .collect();
    names.sort();
    assert_eq!(names, TOOLS);

    let first = ok(
        &client,
        "remember",
        json!({"content": "sqlite WAL mode lets readers run while one writer commits",
               "namespace": "project:atlas", "tags": ["sqlite"], "importance": 7,
               "memory_type": "fact"}),
    )
    .await;
    let first_id = first["id"].as_str().expect("id").to_owned();
    assert_eq!(first["namespace"], "project:atlas");
    assert_eq!(first["importance"], 7);
    let second = ok(
        &client,
        "remember",
        json!({"content": "the lease reaper must not hold the queue lock"}),
    )
    .await;
    let second_id = second["id"].as_str().expect("id").to_owned();

    let recall = ok(&client, "recall", json!({"query": "sqlite readers writer"})).await;
    let hits = recall["hits"].as_array().expect("hits");
    assert_eq!(hits[0]["memory"]["id"], first_id.as_str(), "{recall}");
    assert_eq!(hits[0]["memory"]["content_truncated"], false);
    assert_eq!(recall["truncated"], false);

    let got = ok(&client, "get", json!({"id": first_id})).await;
    assert_eq!(got["tags"], json!(["sqlite"]));
    let updated = ok(
        &client,
        "update",
        json!({"id": first_id, "importance": 9, "tags": ["sqlite", "wal"]}),
    )
    .await;
    assert_eq!(updated["importance"], 9);
    let linked = ok(
        &client,
        "link",
        json!({"source": second_id, "target": first_id, "link_type": "depends_on"}),
    )
    .await;
    assert_eq!(linked["status"], "linked");
    let listed = ok(&client, "list", json!({"limit": 10})).await;
    assert_eq!(listed["memories"].as_array().map(Vec::len), Some(2));
    let forgotten = ok(&client, "forget", json!({"id": second_id})).await;
    assert_eq!(forgotten["status"], "archived");
    let listed = ok(&client, "list", json!({})).await;
    assert_eq!(listed["memories"].as_array().map(Vec::len), Some(1));

    // A recall's contents are bounded and say so; get returns the whole text.
    let long = format!("bounded recall {}", "x".repeat(300));
    let long_id = ok(&client, "remember", json!({"content": long})).await["id"].clone();
    drop(client);
    let _ = exit_code(&mut child).await;

    let mut child = serve_mcp(&sandbox, &[("MNEMOSYNE_RESULT_CONTENT_BYTES_MAX", "100")]);
    let client = connect(&mut child).await;
    let recall = ok(&client, "recall", json!({"query": "bounded recall"})).await;
    let hit = &recall["hits"][0]["memory"];
    assert_eq!(hit["id"], long_id);
    assert_eq!(hit["content_truncated"], true);
    assert_eq!(hit["content"].as_str().map(str::len), Some(100));
    assert_eq!(hit["content_bytes"], long.len());
    let got = ok(&client, "get", json!({"id": long_id})).await;
    assert_eq!(got["content"], long.as_str());
    assert_eq!(got["content_truncated"], false);

    client.cancel().await.expect("close the client");
    assert_eq!(
        exit_code(&mut child).await,
        Some(0),
        "exit 0 when stdin closes"
    );
}

/// Ids of a recall's hits.
fn hit_ids(recall: &Value) -> Vec<String> {
    recall["hits"]
        .as_array()
        .expect("hits")
        .iter()
        .map(|hit| hit["memory"]["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn calls_without_a_namespace_go_to_the_project_the_server_runs_in() {
    let sandbox = Sandbox::new();
    let repo = sandbox.path("atlas");
    let below = repo.join("src/storage");
    std::fs::create_dir_all(&below).expect("a source tree");
    std::fs::create_dir(repo.join(".git")).expect("a repository");
    let spawn_in = |dir: &std::path::Path, extra: &[&str]| {
        let mut command = Command::from(sandbox.command());
        command
            .current_dir(dir)
            .args(["serve", "mcp"])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.spawn().expect("spawn mnemosyne serve mcp")
    };

    let mut child = spawn_in(&below, &[]);
    let client = connect(&mut child).await;
    let own = ok(
        &client,
        "remember",
        json!({"content": "atlas keeps its lease reaper apart"}),
    )
    .await;
    assert_eq!(own["namespace"], "project:atlas");
    let shared = ok(
        &client,
        "remember",
        json!({"content": "every lease reaper runs once a second", "namespace": "global"}),
    )
    .await;
    let other = ok(
        &client,
        "remember",
        json!({"content": "the zephyr lease reaper is a cron job", "namespace": "project:zephyr"}),
    )
    .await;
    let mut seen = hit_ids(&ok(&client, "recall", json!({"query": "lease reaper"})).await);
    seen.sort();
    let mut expected = vec![
        own["id"].as_str().unwrap().to_owned(),
        shared["id"].as_str().unwrap().to_owned(),
    ];
    expected.sort();
    assert_eq!(seen, expected, "the project and global, not project:zephyr");
    let named = ok(
        &client,
        "recall",
        json!({"query": "lease reaper", "namespace": "project:zephyr"}),
    )
    .await;
    assert!(hit_ids(&named).contains(&other["id"].as_str().unwrap().to_owned()));
    let diagnostics = ok(&client, "diagnostics", json!({})).await;
    assert_eq!(diagnostics["project"]["namespace"], "project:atlas");
    let reason = diagnostics["project"]["reason"].as_str().expect("a reason");
    assert!(
        reason.starts_with("the git repository at ") && reason.ends_with("atlas"),
        "{reason}"
    );
    client.cancel().await.expect("close the client");
    assert_eq!(exit_code(&mut child).await, Some(0));

    // Outside any project: remember into global, recall everywhere.
    let mut child = spawn_in(&sandbox.path(""), &[]);
    let client = connect(&mut child).await;
    let loose = ok(
        &client,
        "remember",
        json!({"content": "a lease reaper note from nowhere"}),
    )
    .await;
    assert_eq!(loose["namespace"], "global");
    let seen = hit_ids(&ok(&client, "recall", json!({"query": "lease reaper"})).await);
    for memory in [&loose, &shared, &own, &other] {
        let id = memory["id"].as_str().unwrap().to_owned();
        assert!(seen.contains(&id), "{id} not in {seen:?}");
    }
    let diagnostics = ok(&client, "diagnostics", json!({})).await;
    assert_eq!(diagnostics["project"]["namespace"], "global");
    client.cancel().await.expect("close the client");
    assert_eq!(exit_code(&mut child).await, Some(0));

    // --namespace wins over what the directory says.
    let mut child = spawn_in(&below, &["--namespace", "project:zephyr"]);
    let client = connect(&mut child).await;
    let moved = ok(
        &client,
        "remember",
        json!({"content": "zephyr from atlas's tree"}),
    )
    .await;
    assert_eq!(moved["namespace"], "project:zephyr");
    client.cancel().await.expect("close the client");
    assert_eq!(exit_code(&mut child).await, Some(0));

    // A malformed project file stops the server before it opens the
    // database, with one line naming the file.
    std::fs::write(
        repo.join(".mnemosyne.toml"),
        "namespace = \"project:a b\"\n",
    )
    .unwrap();
    let output = Command::from(sandbox.command())
        .current_dir(&below)
        .args(["serve", "mcp"])
        .output()
        .await
        .expect("run serve mcp");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(".mnemosyne.toml") && stderr.contains("malformed namespace"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

#[tokio::test]
async fn bad_calls_are_answered_with_errors_and_the_server_carries_on() {
    let sandbox = Sandbox::new();
    let mut child = serve_mcp(&sandbox, &[]);
    let client = connect(&mut child).await;

    // Unknown tool: a JSON-RPC error.
    let mut params = args(json!({}));
    params.name = "no_such_tool".into();
    match client.call_tool(params).await {
        Err(ServiceError::McpError(error)) => {
            assert_eq!(error.code, ErrorCode::INVALID_PARAMS);
            assert!(error.message.contains("not found"), "{}", error.message);
        }
        other => panic!("unknown tool should be an MCP error: {other:?}"),
    }
    // Wrong argument types and unknown arguments: tool errors naming the problem.
    let result = call(&client, "recall", json!({"query": 42})).await;
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert!(format!("{result:?}").contains("invalid type"), "{result:?}");
    let result = call(
        &client,
        "remember",
        json!({"content": "x", "importance": "high"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let result = call(
        &client,
        "remember",
        json!({"content": "x", "colour": "red"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true), "{result:?}");
    // Values the domain refuses: the HTTP error shape.
    let error = tool_error(
        &client,
        "remember",
        json!({"content": "x", "importance": 11}),
    )
    .await;
    assert_eq!(error["code"], "invalid_input");
    let error = tool_error(&client, "get", json!({"id": "not-an-id"})).await;
    assert_eq!(error["code"], "invalid_input");
    let error = tool_error(
        &client,
        "get",
        json!({"id": "01900000-0000-7000-8000-000000000001"}),
    )
    .await;
    assert_eq!(error["code"], "not_found");
    // Oversized content.
    let big = "y".repeat(70 * 1024);
    let error = tool_error(&client, "remember", json!({"content": big})).await;
    assert_eq!(error["code"], "invalid_input");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("memory_content_bytes_max")),
        "{error}"
    );

    // Still serving.
    let stored = ok(
        &client,
        "remember",
        json!({"content": "still here after errors"}),
    )
    .await;
    let recall = ok(&client, "recall", json!({"query": "still here"})).await;
    assert_eq!(recall["hits"][0]["memory"]["id"], stored["id"]);

    client.cancel().await.expect("close the client");
    assert_eq!(exit_code(&mut child).await, Some(0));
}

async fn send(stdin: &mut tokio::process::ChildStdin, text: String) {
    send_bytes(stdin, text.as_bytes()).await;
}

async fn send_bytes(stdin: &mut tokio::process::ChildStdin, line: &[u8]) {
    stdin.write_all(line).await.expect("write");
    stdin.write_all(b"\n").await.expect("write");
    stdin.flush().await.expect("flush");
}

type Lines = tokio::io::Lines<BufReader<tokio::process::ChildStdout>>;

/// The next line the server writes, as JSON.
async fn next_message(lines: &mut Lines) -> Value {
    let line = tokio::time::timeout(Duration::from_secs(EXIT_WAIT_S), lines.next_line())
        .await
        .expect("the server answers")
        .expect("read stdout")
        .expect("the server is still up");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("stdout carries only JSON ({e}): {line}"))
}

/// Reads lines from the server until one is a JSON-RPC message with `id`.
async fn answer_to(lines: &mut Lines, id: i64) -> Value {
    loop {
        let message = next_message(lines).await;
        if message["id"] == json!(id) {
            return message;
        }
        assert!(message.get("method").is_some(), "unexpected {message}");
    }
}

/// A raw session, initialized: the child, its stdin and its stdout lines.
async fn raw_session(
    sandbox: &Sandbox,
    env: &[(&str, &str)],
) -> (Child, tokio::process::ChildStdin, Lines) {
    let mut child = serve_mcp(sandbox, env);
    let mut stdin = child.stdin.take().expect("stdin");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "raw", "version": "1"}}})
        .to_string(),
    )
    .await;
    assert!(answer_to(&mut lines, 1).await["result"]["serverInfo"].is_object());
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string(),
    )
    .await;
    (child, stdin, lines)
}

/// A `tools/call` of `remember` as one line.
fn remember_line(id: i64, content: &str) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {
    "name": "remember", "arguments": {"content": content}}})
    .to_string()
}

async fn remembered(lines: &mut Lines, id: i64, content: &str) {
    let answer = answer_to(lines, id).await;
    assert_eq!(answer["result"]["isError"], false, "{answer}");
    assert_eq!(answer["result"]["structuredContent"]["content"], content);
}

/// `{"jsonrpc":"2.0","id":ID,"method":"ping"` and spaces up to `bytes`.
fn ping_of(id: &str, bytes: usize) -> String {
    let head = format!("{{\"jsonrpc\":\"2.0\",\"id\":{id},\"method\":\"ping\"");
    let pad = bytes - head.len() - 1;
    format!("{head}{}}}", " ".repeat(pad))
}

fn over_the_limit(id: Value, bytes: usize, limit: u64) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message":
        format!("message of {bytes} bytes exceeds mcp_message_bytes_max ({limit} bytes)")}})
}

#[tokio::test]
async fn malformed_json_rpc_is_refused_and_the_next_request_answered() {
    let sandbox = Sandbox::new();
    let (mut child, mut stdin, mut lines) = raw_session(&sandbox, &[]).await;

    // Well-formed JSON that is no JSON-RPC message: Invalid Request.
    send(&mut stdin, json!({"hello": "world"}).to_string()).await;
    let refused = next_message(&mut lines).await;
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    // A request whose params have the wrong shape: Invalid Request too (the
    // message does not parse, so its id is not known).
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": 7}).to_string(),
    )
    .await;
    let refused = next_message(&mut lines).await;
    assert_eq!(refused["error"]["code"], -32600, "{refused}");
    // Unknown method.
    send(
        &mut stdin,
        json!({"jsonrpc": "2.0", "id": 3, "method": "no/such/method"}).to_string(),
    )
    .await;
    assert_eq!(answer_to(&mut lines, 3).await["error"]["code"], -32601);
    // Text that is not JSON, and bytes that are not UTF-8: Parse error, id null.
    send(&mut stdin, "this is {not json".into()).await;
    let refused = next_message(&mut lines).await;
    assert_eq!(refused["id"], Value::Null, "{refused}");
    assert_eq!(refused["error"]["code"], -32700, "{refused}");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("parse error: expected"), "{message}");
    send_bytes(
        &mut stdin,
        b"{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"\xFF\xFE\"}",
    )
    .await;
    let refused = next_message(&mut lines).await;
    assert_eq!(
        refused,
        json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700,
            "message": "parse error: the message is not UTF-8 (invalid byte at offset 34)"}})
    );
    // Blank lines are no message: nothing to answer.
    send(&mut stdin, "   ".into()).await;
    send(&mut stdin, remember_line(5, "answered after garbage")).await;
    remembered(&mut lines, 5, "answered after garbage").await;

    drop(stdin);
    assert_eq!(
        exit_code(&mut child).await,
        Some(0),
        "exit 0 when stdin closes"
    );
}

/// The default limit (1 MiB): a 2 MiB line gets Invalid Request with its
/// id, or null when the id is not in its first bytes, and the session goes on.
#[tokio::test]
async fn a_line_over_mcp_message_bytes_max_is_answered_with_its_id() {
    let sandbox = Sandbox::new();
    let (mut child, mut stdin, mut lines) = raw_session(&sandbox, &[]).await;
    let limit = 1024 * 1024;
    let two_mib = 2 * 1024 * 1024;

    let big = ping_of("10", two_mib);
    send(&mut stdin, big).await;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(json!(10), two_mib, limit)
    );
    let content = "w".repeat(two_mib);
    let big = remember_line(11, &content).replace("\"id\":11,", "\"id\":\"call-11\",");
    let bytes = big.len();
    send(&mut stdin, big).await;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(json!("call-11"), bytes, limit)
    );
    // The id after 2 MiB of params cannot be read: null.
    let late_id = format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":\"ping\",\"params\":{{\"pad\":\"{}\"}},\"id\":12}}",
        "p".repeat(two_mib)
    );
    let bytes = late_id.len();
    send(&mut stdin, late_id).await;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(Value::Null, bytes, limit)
    );
    send(&mut stdin, remember_line(13, "served after 2 MiB lines")).await;
    remembered(&mut lines, 13, "served after 2 MiB lines").await;
    drop(stdin);
    assert_eq!(exit_code(&mut child).await, Some(0));
    assert_eq!(sandbox.count(), 1, "the oversized remember stored nothing");
}

/// Exactly `mcp_message_bytes_max` bytes (the newline not counted) pass;
/// one byte more is refused.
#[tokio::test]
async fn a_message_of_exactly_the_limit_passes_and_one_byte_more_is_refused() {
    let sandbox = Sandbox::new();
    let limit = 65_536;
    let (mut child, mut stdin, mut lines) =
        raw_session(&sandbox, &[("MNEMOSYNE_MCP_MESSAGE_BYTES_MAX", "65536")]).await;
    let exact = ping_of("20", limit);
    assert_eq!(exact.len(), limit);
    send(&mut stdin, exact).await;
    assert_eq!(
        next_message(&mut lines).await,
        json!({"jsonrpc": "2.0", "id": 20, "result": {}})
    );
    send(&mut stdin, ping_of("21", limit + 1)).await;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(json!(21), limit + 1, limit as u64)
    );
    // A CR before the newline counts as a byte of the message.
    send(&mut stdin, format!("{}\r", ping_of("22", limit))).await;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(json!(22), limit + 1, limit as u64)
    );
    send(&mut stdin, format!("{}\r", ping_of("23", limit - 1))).await;
    assert_eq!(
        next_message(&mut lines).await,
        json!({"jsonrpc": "2.0", "id": 23, "result": {}})
    );
    drop(stdin);
    assert_eq!(exit_code(&mut child).await, Some(0));

    let output = sandbox.run_with(
        &["serve", "mcp"],
        &[("MNEMOSYNE_MCP_MESSAGE_BYTES_MAX", "4095")],
    );
    let line = common::fail(output, &["serve", "mcp"]);
    assert!(
        line.contains("mcp_message_bytes_max = 4095: must be at least 4096"),
        "{line}"
    );
}

/// A field of `/proc/PID/status`, in bytes.
fn proc_status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("{field} in {status}"));
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("kB value");
    kib * 1024
}

/// A 64 MiB line is skipped as it arrives: the server's resident memory,
/// and its peak since just before the line, stay within 32 MiB of before.
#[tokio::test]
async fn a_64_mib_line_is_skipped_without_being_held() {
    let sandbox = Sandbox::new();
    let (mut child, mut stdin, mut lines) = raw_session(&sandbox, &[]).await;
    let pid = child.id().expect("pid");
    send(&mut stdin, remember_line(30, "warm up")).await;
    remembered(&mut lines, 30, "warm up").await;
    let rss_before = proc_status_bytes(pid, "VmRSS:");
    // Resets the peak (VmHWM) to the current RSS, so that the peak after
    // the line is the peak while reading it.
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset VmHWM");
    let peak_before = proc_status_bytes(pid, "VmHWM:");

    let head = b"{\"jsonrpc\":\"2.0\",\"id\":31,\"method\":\"ping\",\"params\":{\"pad\":\"";
    stdin.write_all(head).await.expect("write");
    let chunk = vec![b'q'; 1024 * 1024];
    for _ in 0..64 {
        stdin.write_all(&chunk).await.expect("write");
    }
    stdin.write_all(b"\"}}\n").await.expect("write");
    stdin.flush().await.expect("flush");
    let bytes = head.len() + 64 * chunk.len() + 3;
    assert_eq!(
        next_message(&mut lines).await,
        over_the_limit(json!(31), bytes, 1024 * 1024)
    );
    let rss_after = proc_status_bytes(pid, "VmRSS:");
    let peak_after = proc_status_bytes(pid, "VmHWM:");
    let bound = 32 << 20;
    assert!(
        rss_after < rss_before + bound,
        "RSS {rss_before} -> {rss_after} bytes"
    );
    assert!(
        peak_after < peak_before + bound,
        "peak RSS {peak_before} -> {peak_after} bytes while skipping the line"
    );
    send(&mut stdin, remember_line(32, "served after 64 MiB")).await;
    remembered(&mut lines, 32, "served after 64 MiB").await;
    drop(stdin);
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn sigterm_stops_the_mcp_server_with_exit_code_0() {
    let sandbox = Sandbox::new();
    let mut child = serve_mcp(&sandbox, &[]);
    let client = connect(&mut child).await;
    ok(&client, "remember", json!({"content": "before the signal"})).await;
    let pid = child.id().expect("pid").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(exit_code(&mut child).await, Some(0));
    drop(client);
    assert_eq!(sandbox.count(), 1, "the memory was committed before exit");
}

/// The Python `mcp` SDK (installed by `.ci/run` into a venv whose python is
/// `MNEMOSYNE_TEST_PYTHON`) drives the server through `tests/mcp_client.py`.
#[test]
fn the_python_mcp_sdk_drives_the_server() {
    let python = match std::env::var("MNEMOSYNE_TEST_PYTHON") {
        Ok(python) if !python.is_empty() => python,
        _ => {
            assert!(
                std::env::var_os("MNEMOSYNE_REQUIRE_PYTHON_MCP").is_none(),
                "MNEMOSYNE_TEST_PYTHON is not set but MNEMOSYNE_REQUIRE_PYTHON_MCP is: \
                 .ci/run installs the Python mcp SDK into a venv and sets it"
            );
            eprintln!(
                "skipped: MNEMOSYNE_TEST_PYTHON is not set (a python with the `mcp` package; \
                 .ci/run sets it)"
            );
            return;
        }
    };
    let sandbox = Sandbox::new();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp_client.py");
    let output = std::process::Command::new(python)
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_mnemosyne"))
        .arg(&sandbox.db)
        .current_dir(sandbox.path(""))
        .env("HOME", sandbox.path("home"))
        .env("XDG_CONFIG_HOME", sandbox.path("home/config"))
        .env("XDG_DATA_HOME", sandbox.path("home/data"))
        .output()
        .expect("run the python client");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "python client failed: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("python mcp client: ok"), "{stdout}");
    assert_eq!(sandbox.count(), 2, "the python client stored two memories");
}

#[tokio::test]
async fn work_document_and_diagnostics_tools_answer() {
    let sandbox = Sandbox::new();
    let mut child = serve_mcp(&sandbox, &[]);
    let client = connect(&mut child).await;

    let submitted = ok(
        &client,
        "work_submit",
        json!({"description": "write the parser", "review": true}),
    )
    .await;
    let id = submitted["id"].as_str().unwrap().to_owned();
    let claimed = ok(&client, "work_claim", json!({"agent": "ada"})).await;
    assert_eq!(claimed["item"]["id"], id.as_str());
    ok(&client, "work_heartbeat", json!({"id": id, "agent": "ada"})).await;
    let memory = ok(
        &client,
        "remember",
        json!({"content": "the parser handles nested quotes"}),
    )
    .await;
    let in_review = ok(
        &client,
        "work_complete",
        json!({"id": id, "agent": "ada", "evidence": [memory["id"]]}),
    )
    .await;
    assert_eq!(
        (in_review["phase"].clone(), in_review["state"].clone()),
        (json!("review"), json!("pending"))
    );
    let error = tool_error(&client, "work_review", json!({"id": id, "approve": false})).await;
    assert_eq!(error["code"], "invalid_input", "{error}");
    let approved = ok(
        &client,
        "work_review",
        json!({"id": id, "approve": true, "feedback": "good"}),
    )
    .await;
    assert_eq!(approved["state"], "done");
    let listed = ok(&client, "work_list", json!({"state": "done"})).await;
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let error = tool_error(&client, "work_get", json!({"id": "nope"})).await;
    assert_eq!(error["code"], "invalid_input");

    ok(
        &client,
        "doc_write",
        json!({"name": "plan", "text": "1. parse", "actor": "ada"}),
    )
    .await;
    let read = ok(&client, "doc_read", json!({"name": "plan"})).await;
    assert_eq!(read["text"], "1. parse");
    let edited = ok(
        &client,
        "doc_edit",
        json!({"name": "plan", "actor": "bob", "epoch": read["epoch"], "heads": read["heads"],
               "splices": [{"pos": 8, "insert": "\n2. print"}]}),
    )
    .await;
    assert_eq!(edited["changed"], true);
    let read = ok(&client, "doc_read", json!({"name": "plan"})).await;
    assert_eq!(read["text"], "1. parse\n2. print");
    let error = tool_error(&client, "doc_read", json!({"name": "absent"})).await;
    assert_eq!(error["code"], "not_found");

    let diagnostics = ok(&client, "diagnostics", json!({})).await;
    assert!(
        diagnostics["snapshot"]["process"]["rss_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(diagnostics["snapshot"]["gauges"].as_array().unwrap().len() > 5);

    client.cancel().await.expect("close");
    assert_eq!(exit_code(&mut child).await, Some(0));
}

#[tokio::test]
async fn the_context_tool_follows_typed_links_and_min_importance_filters() {
    let sandbox = Sandbox::new();
    let mut child = serve_mcp(&sandbox, &[]);
    let client = connect(&mut child).await;
    let id_of = |value: Value| value["id"].as_str().expect("id").to_owned();
    let decision = id_of(
        ok(
            &client,
            "remember",
            json!({"content": "retries use exponential backoff with jitter",
                   "memory_type": "decision", "importance": 8}),
        )
        .await,
    );
    let fix = id_of(
        ok(
            &client,
            "remember",
            json!({"content": "fixed the retry storm: the backoff had no cap",
                   "memory_type": "bugfix", "importance": 3,
                   "links": [{"target": decision, "link_type": "fixes"}]}),
        )
        .await,
    );
    let basis = id_of(
        ok(
            &client,
            "remember",
            json!({"content": "the upstream rate limit is 100 requests a second", "importance": 6}),
        )
        .await,
    );
    ok(
        &client,
        "link",
        json!({"source": decision, "target": basis, "link_type": "depends_on"}),
    )
    .await;

    let context = ok(&client, "context", json!({"id": decision, "hops": 1})).await;
    assert_eq!(context["memory"]["id"], decision.as_str());
    assert_eq!(context["memory"]["content_truncated"], false);
    let reached: Vec<&str> = context["neighbours"]
        .as_array()
        .expect("neighbours")
        .iter()
        .map(|n| n["memory"]["id"].as_str().expect("id"))
        .collect();
    assert_eq!(
        reached,
        [basis.as_str(), fix.as_str()],
        "most important first"
    );
    assert_eq!(context["neighbours"][0]["hop"], 1);
    assert_eq!(context["neighbours"][0]["via"], decision.as_str());
    assert_eq!(
        context["edges"],
        json!([
            {"source": decision, "target": basis, "link_type": "depends_on",
             "from": decision, "direction": "outgoing", "hop": 1},
            {"source": fix, "target": decision, "link_type": "fixes",
             "from": decision, "direction": "incoming", "hop": 1},
        ])
    );
    assert_eq!(
        (
            context["hops"].clone(),
            context["fan_out"].clone(),
            context["limit"].clone()
        ),
        (json!(1), json!(8), json!(50))
    );
    assert_eq!(context["truncated"], false);
    let cut = ok(&client, "context", json!({"id": decision, "fan_out": 1})).await;
    assert_eq!(cut["neighbours"].as_array().map(Vec::len), Some(1));
    assert_eq!(cut["truncated"], true);
    assert_eq!(cut["hops"], 2, "default: context_hops_max");

    let error = tool_error(&client, "context", json!({"id": decision, "hops": 3})).await;
    assert_eq!(error["code"], "invalid_input");
    assert_eq!(
        error["message"],
        "invalid input: hops must be between 0 and 2 (context_hops_max), got 3"
    );
    let error = tool_error(&client, "context", json!({"id": decision, "limit": 51})).await;
    assert!(
        error["message"]
            .as_str()
            .expect("message")
            .contains("context_memories_max"),
        "{error}"
    );
    let unknown = "01900000-0000-7000-8000-000000000000";
    let error = tool_error(&client, "context", json!({"id": unknown})).await;
    assert_eq!(error["code"], "not_found");

    let listed = ok(&client, "list", json!({"min_importance": 6})).await;
    let mut listed: Vec<&str> = listed["memories"]
        .as_array()
        .expect("memories")
        .iter()
        .map(|m| m["id"].as_str().expect("id"))
        .collect();
    listed.sort();
    let mut want = vec![decision.as_str(), basis.as_str()];
    want.sort();
    assert_eq!(listed, want);
    let recall = ok(
        &client,
        "recall",
        json!({"query": "retry backoff storm", "min_importance": 4}),
    )
    .await;
    let hits = recall["hits"].as_array().expect("hits");
    assert!(!hits.is_empty());
    assert!(
        hits.iter().all(|h| h["memory"]["id"] != fix.as_str()),
        "{recall}"
    );
    let all = ok(&client, "recall", json!({"query": "retry backoff storm"})).await;
    assert!(
        all["hits"]
            .as_array()
            .expect("hits")
            .iter()
            .any(|h| h["memory"]["id"] == fix.as_str())
    );
    let error = tool_error(&client, "list", json!({"min_importance": 11})).await;
    assert_eq!(
        error["message"],
        "invalid input: min_importance must be between 1 and 10, got 11"
    );

    client.cancel().await.expect("close the client");
    assert_eq!(exit_code(&mut child).await, Some(0));
}
