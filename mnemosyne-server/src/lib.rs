//! The servers of Mnemosyne: MCP over stdio (rmcp) and an HTTP API (axum)
//! with Server-Sent Events, sharing one store, one bounded event bus and one
//! supervisor.
//!
//! Invariants:
//! - the server knows MCP and HTTP; storage knows nothing of them. It has no
//!   business logic of its own: every operation is a [`ops::Memories`] call
//!   (a `MemoryStore` call, then an event), shared by both front ends;
//! - every background task (heartbeat, MCP session, HTTP accept loop, each
//!   HTTP connection with its SSE stream) is spawned through the
//!   orchestration `Supervisor` and ends within `shutdown_timeout_s` of a stop;
//! - every answer is bounded: recall by `recall_results_max`, list by
//!   `list_page_rows_max`, contents in both by `result_content_bytes_max`
//!   (marked `content_truncated`), requests by `request_body_bytes_max` (MCP
//!   lines by `mcp_message_bytes_max`),
//!   `http_concurrency_max`, `http_request_timeout_ms` and
//!   `http_connections_max`, the event bus by `events_capacity`;
//! - errors reach clients as a stable code and one line
//!   (`{"error": {"code", "message"}}`), never SQL or a backtrace;
//! - a non-loopback HTTP bind needs a bearer token, compared in constant time;
//! - HTTP answers only requests naming this server in `Host` (loopback names,
//!   the bound address, an allow-list), refuses foreign `Origin`s and bodies
//!   that are not `application/json`, before any handler (`http::access`);
//! - nothing here prints: stdout is the MCP channel; logs go through `tracing`.
#![deny(missing_docs)]

mod diagnostics_view;
pub mod docs;
pub mod error;
pub mod events;
mod gauges;
mod http;
pub mod mcp;
mod mcp_lines;
mod mcp_project;
pub mod metrics;
pub mod ops;
pub mod params;
mod server;
mod shared_core;
pub mod work;

pub use error::{ApiError, ServerError};
pub use events::{Event, EventBus, Received, Subscriber};
pub use http::access::AllowLists;
pub use http::bearer::BearerToken;
pub use mcp::McpServer;
pub use mcp_project::McpProject;
/// The report of a shutdown, re-exported from orchestration.
pub use mnemosyne_orchestration::ShutdownReport;
pub use server::{HttpListener, Server};
