//! The MCP message handler (`serve mcp`: rmcp's stdio transport and our
//! tools), on a real database: after the handshake, the input is written as
//! the client's bytes (JSON-RPC lines, or anything), then the client
//! closes. `@mem`, `@item` and `@doc` name stored fixtures.
//!
//! The session ends in time, everything written back is a JSON-RPC
//! message, and no input makes a tool fail on the server's side (an
//! `internal` or `corrupt_document` error, a JSON-RPC internal error).
#![no_main]

use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use mnemosyne_server::Server;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The client's opening, written before the input.
const HANDSHAKE: &str = concat!(
    r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}"#,
    "\n",
    r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
    "\n"
);

/// Past this the session hangs (every request is bounded well below it).
const SESSION_WAIT_MS: u64 = 60_000;

/// JSON-RPC's internal error.
const INTERNAL_ERROR: i64 = -32603;

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let input = mnemosyne_fuzz::fixtures().substitute(data);
    let store = mnemosyne_fuzz::store().clone();
    let output = mnemosyne_fuzz::runtime().block_on(async move {
        let server = Server::new(store);
        server.open_work_queue().await.expect("open the work queue");
        let (client, server_end) = tokio::io::duplex(64 * 1024);
        let (server_read, server_write) = tokio::io::split(server_end);
        let (mut client_read, mut client_write) = tokio::io::split(client);
        let writer = async move {
            // The server may stop reading (a closed session): not an error here.
            let _ = client_write.write_all(HANDSHAKE.as_bytes()).await;
            let _ = client_write.write_all(&input).await;
            let _ = client_write.write_all(b"\n").await;
            let _ = client_write.shutdown().await;
        };
        let reader = async move {
            let mut output = Vec::new();
            client_read
                .read_to_end(&mut output)
                .await
                .expect("read the answers");
            output
        };
        let session = server.serve_mcp(server_read, server_write, std::future::pending());
        let wait = Duration::from_millis(SESSION_WAIT_MS);
        let ((), report, output) =
            tokio::time::timeout(wait, async { tokio::join!(writer, session, reader) })
                .await
                .expect("the session ends once the client closes");
        let report = report.expect("the session runs");
        assert!(report.is_clean(), "every task stopped in time: {report:?}");
        output
    });
    for line in output.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let text = String::from_utf8_lossy(line);
        let message: Value =
            serde_json::from_slice(line).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
        assert_eq!(message["jsonrpc"], "2.0", "{text}");
        assert_ne!(message["error"]["code"], INTERNAL_ERROR, "{text}");
        let tool_error = &message["result"]["structuredContent"]["error"]["code"];
        assert!(
            tool_error != "internal" && tool_error != "corrupt_document",
            "{text}"
        );
    }
});
