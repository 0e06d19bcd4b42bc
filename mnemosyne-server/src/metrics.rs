//! Counters of the front ends and the Prometheus text rendering of every
//! gauge the server can see (pool, event bus, tasks, requests).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

use mnemosyne_diagnostics::{MemoryTracker, TASKS_ALIVE, TASKS_PANICKED_TOTAL};
use mnemosyne_orchestration::Supervisor;

use crate::events::EventBus;

/// Request counters, updated by the HTTP layers and the MCP handler.
#[derive(Debug, Default)]
pub struct Metrics {
    /// HTTP responses by status class: 1xx..5xx at index 0..4.
    http_responses: [AtomicU64; 5],
    http_in_flight: AtomicU64,
    http_connections_open: AtomicU64,
    http_connections_total: AtomicU64,
    http_connections_refused: AtomicU64,
    mcp_tool_calls: AtomicU64,
    mcp_tool_errors: AtomicU64,
}

impl Metrics {
    /// An HTTP request started.
    pub fn http_request_started(&self) {
        self.http_in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// An HTTP request ended, answered or not.
    pub fn http_request_finished(&self) {
        self.http_in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    /// An HTTP request was answered with `status`.
    pub fn http_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// HTTP responses with a status in `class` (1 to 5) so far.
    pub fn http_responses(&self, class: usize) -> u64 {
        self.http_responses[class.clamp(1, 5) - 1].load(Ordering::Relaxed)
    }

    /// A connection was accepted.
    pub fn connection_opened(&self) {
        self.http_connections_open.fetch_add(1, Ordering::Relaxed);
        self.http_connections_total.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was refused: `http_connections_max` were open.
    pub fn connection_refused(&self) {
        self.http_connections_refused
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Connections refused so far.
    pub fn connections_refused(&self) -> u64 {
        self.http_connections_refused.load(Ordering::Relaxed)
    }

    /// A connection ended.
    pub fn connection_closed(&self) {
        self.http_connections_open.fetch_sub(1, Ordering::Relaxed);
    }

    /// An MCP tool call ended; `error` when it was answered with an error.
    pub fn mcp_tool_call(&self, error: bool) {
        self.mcp_tool_calls.fetch_add(1, Ordering::Relaxed);
        if error {
            self.mcp_tool_errors.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Everything `/metrics` serves, in the Prometheus text exposition format:
/// the counters of `metrics`, the figures of `events` and `supervisor`, and
/// every gauge of `tracker`. Task gauges are 0 once the supervisor is gone.
pub(crate) fn render(
    metrics: &Metrics,
    events: &EventBus,
    tracker: &MemoryTracker,
    supervisor: Option<&Supervisor>,
) -> String {
    let mut out = String::with_capacity(4096);
    let tasks = |f: fn(&Supervisor) -> u64| supervisor.map_or(0, f);
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let rest: [(&str, &str, &str, u64); 12] = [
        (
            "mnemosyne_events_capacity",
            "gauge",
            "Events the bus holds (events_capacity).",
            events.capacity() as u64,
        ),
        (
            "mnemosyne_events_published_total",
            "counter",
            "Events published.",
            events.published_total(),
        ),
        (
            "mnemosyne_events_lagged_total",
            "counter",
            "Events skipped by subscribers that fell behind, summed over subscribers.",
            events.lagged_total(),
        ),
        (
            TASKS_ALIVE,
            "gauge",
            "Background tasks alive under the supervisor.",
            tasks(|s| s.alive() as u64),
        ),
        (
            "mnemosyne_tasks_spawned_total",
            "counter",
            "Background tasks started.",
            tasks(Supervisor::spawned_total),
        ),
        (
            TASKS_PANICKED_TOTAL,
            "counter",
            "Background tasks that panicked.",
            tasks(Supervisor::panicked_total),
        ),
        (
            "mnemosyne_http_requests_in_flight",
            "gauge",
            "HTTP requests being served.",
            load(&metrics.http_in_flight),
        ),
        (
            "mnemosyne_http_connections_open",
            "gauge",
            "HTTP connections open.",
            load(&metrics.http_connections_open),
        ),
        (
            "mnemosyne_http_connections_total",
            "counter",
            "HTTP connections accepted.",
            load(&metrics.http_connections_total),
        ),
        (
            "mnemosyne_http_connections_refused_total",
            "counter",
            "HTTP connections refused (503) because http_connections_max were open.",
            load(&metrics.http_connections_refused),
        ),
        (
            "mnemosyne_mcp_tool_calls_total",
            "counter",
            "MCP tool calls answered.",
            load(&metrics.mcp_tool_calls),
        ),
        (
            "mnemosyne_mcp_tool_errors_total",
            "counter",
            "MCP tool calls answered with an error.",
            load(&metrics.mcp_tool_errors),
        ),
    ];
    for (name, kind, help, value) in rest {
        metric(&mut out, name, kind, help, value);
    }
    let name = "mnemosyne_http_requests_total";
    let _ = writeln!(
        out,
        "# HELP {name} HTTP requests answered, by status class."
    );
    let _ = writeln!(out, "# TYPE {name} counter");
    for class in 1..=5 {
        let _ = writeln!(
            out,
            "{name}{{code=\"{class}xx\"}} {}",
            metrics.http_responses(class)
        );
    }
    // Process figures and every tracked gauge (pool, work queue, caches),
    // each bounded one with its limit as `<name>_max`: the same gauges the
    // monitor judges and `diagnostics` shows.
    out.push_str(&tracker.snapshot().to_prometheus());
    out
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
    let _ = writeln!(out, "{name} {value}");
}
