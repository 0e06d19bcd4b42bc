//! One MCP stdio driver for every memory server of `cargo xtask bench`:
//! spawn the server, read its `tools/list`, pick the store and search tools
//! it offers ([`ToolMapping`]), then N stores and M searches of the standard
//! workload, one call at a time, each under a timeout, each phase under a
//! time budget; the server's peak RSS sampled from procfs throughout.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mnemosyne_core::Memory;
use mnemosyne_core::workload::WorkloadQuery;
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, JsonObject};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::Command;

use crate::bench_report::OpStats;
use crate::peak_rss::PeakRss;

/// Results asked of every search (servers without a limit return what they match).
pub const SEARCH_LIMIT: u32 = 10;
/// How often the server's peak RSS is sampled.
pub const RSS_SAMPLE_INTERVAL_MS: u64 = 200;
/// How long a server gets to exit after its stdin closes, before it is killed.
pub const EXIT_TIMEOUT_S: u64 = 10;

/// The store and search tools of one server, and how a workload memory or
/// query becomes their arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum ToolMapping {
    /// Mnemosyne: `remember` and `recall` (keyword mode).
    Mnemosyne,
    /// `@modelcontextprotocol/server-memory`: one entity per memory through
    /// `create_entities`, `search_nodes` for a query.
    KnowledgeGraph,
    /// `basic-memory`: one note per memory through `write_note`,
    /// `search_notes` (text search) for a query.
    BasicMemory,
}

impl ToolMapping {
    /// Every mapping, in the order [`ToolMapping::detect`] tries them.
    pub const ALL: [ToolMapping; 3] = [Self::Mnemosyne, Self::KnowledgeGraph, Self::BasicMemory];

    /// The first mapping whose store and search tools are both in `tools`
    /// (the names of a `tools/list` answer).
    pub fn detect<S: AsRef<str>>(tools: &[S]) -> Option<Self> {
        let offered = |name: &str| tools.iter().any(|tool| tool.as_ref() == name);
        Self::ALL
            .into_iter()
            .find(|mapping| offered(mapping.store_tool()) && offered(mapping.search_tool()))
    }

    /// The tool one memory is stored with.
    pub fn store_tool(self) -> &'static str {
        match self {
            Self::Mnemosyne => "remember",
            Self::KnowledgeGraph => "create_entities",
            Self::BasicMemory => "write_note",
        }
    }

    /// The tool one query is searched with.
    pub fn search_tool(self) -> &'static str {
        match self {
            Self::Mnemosyne => "recall",
            Self::KnowledgeGraph => "search_nodes",
            Self::BasicMemory => "search_notes",
        }
    }

    /// The mapping in words, for the notes under the table.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Mnemosyne => {
                "store = `remember` {content, namespace, memory_type, importance, tags}; \
                 search = `recall` {query, limit 10, mode keyword, namespace filter on a tenth of queries}"
            }
            Self::KnowledgeGraph => {
                "store = `create_entities` with one entity {name: memory id, entityType: memory type, \
                 observations: [content]}; search = `search_nodes` {query} (case-insensitive substring \
                 of the whole query over names, types and observations; no limit, no namespace filter)"
            }
            Self::BasicMemory => {
                "store = `write_note` {title: memory id, content, directory: namespace, tags}; \
                 search = `search_notes` {query, page_size 10, search_type text} (no namespace filter)"
            }
        }
    }

    /// Arguments of the store tool for `memory` (its links are not sent: their
    /// targets are workload ids, not ids the server gave).
    pub fn store_args(self, memory: &Memory) -> JsonObject {
        let id = memory.id.to_string();
        let namespace = memory.namespace.to_string();
        let value = match self {
            Self::Mnemosyne => json!({
                "content": memory.content,
                "namespace": namespace,
                "memory_type": memory.memory_type.as_str(),
                "importance": memory.importance.get(),
                "tags": memory.tags,
            }),
            Self::KnowledgeGraph => json!({
                "entities": [{
                    "name": id,
                    "entityType": memory.memory_type.as_str(),
                    "observations": [memory.content],
                }]
            }),
            Self::BasicMemory => json!({
                "title": id,
                "content": memory.content,
                "directory": directory_of(&namespace),
                "tags": memory.tags.join(","),
            }),
        };
        into_object(value)
    }

    /// Arguments of the search tool for `query`.
    pub fn search_args(self, query: &WorkloadQuery) -> JsonObject {
        let value = match self {
            Self::Mnemosyne => {
                let mut args =
                    json!({"query": query.text, "limit": SEARCH_LIMIT, "mode": "keyword"});
                if let Some(namespace) = &query.namespace {
                    args["namespace"] = json!(namespace.to_string());
                }
                args
            }
            Self::KnowledgeGraph => json!({"query": query.text}),
            Self::BasicMemory => json!({
                "query": query.text,
                "page_size": SEARCH_LIMIT,
                "search_type": "text",
            }),
        };
        into_object(value)
    }
}

/// A namespace as a relative directory: `session:atlas/s1` -> `session-atlas/s1`.
fn directory_of(namespace: &str) -> String {
    namespace.replace(':', "-")
}

fn into_object(value: Value) -> JsonObject {
    match value {
        Value::Object(object) => object,
        _ => JsonObject::new(),
    }
}

/// How to start one server speaking MCP on stdio.
#[derive(Clone, Debug)]
pub struct ServerCommand {
    /// The program; launched directly so its pid is the server's.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Extra environment (data locations, update checks off).
    pub env: Vec<(String, String)>,
    /// Where the server's stderr goes.
    pub stderr_log: PathBuf,
    /// Its working directory: one of the run's own, outside any repository
    /// (`mnemosyne serve mcp` files memories under the project it runs in).
    pub working_dir: PathBuf,
}

/// Every limit of one run.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Spawn to answered `initialize` and `tools/list`.
    pub start_timeout: Duration,
    /// One tool call.
    pub call_timeout: Duration,
    /// All the stores; the rest of the corpus is skipped once spent.
    pub store_phase: Duration,
    /// All the searches; the rest of the queries are skipped once spent.
    pub search_phase: Duration,
}

/// What one run measured.
#[derive(Clone, Debug, Serialize)]
pub struct RunFigures {
    /// The tools used.
    pub mapping: ToolMapping,
    /// Names the server listed.
    pub tools: Vec<String>,
    /// Memories asked to store.
    pub items_wanted: u64,
    /// Memories stored (calls made) before the searches.
    pub items_stored: u64,
    /// The stores.
    pub store: Option<OpStats>,
    /// The searches.
    pub search: Option<OpStats>,
    /// Peak RSS of the server process tree over the run.
    pub peak_rss_mib: Option<f64>,
    /// Processes of the server tree seen.
    pub processes: usize,
    /// The store phase ran out of budget.
    pub store_capped: bool,
    /// The search phase ran out of budget.
    pub search_capped: bool,
    /// The first failed call, if any.
    pub first_error: Option<String>,
}

/// Why a run could not happen.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The server did not start.
    #[error("cannot start {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        source: std::io::Error,
    },
    /// The log file for the server's stderr.
    #[error("cannot create {path}: {source}")]
    Log {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The MCP handshake or `tools/list` failed.
    #[error("mcp {step} failed: {detail}")]
    Mcp {
        /// `initialize` or `tools/list`.
        step: &'static str,
        /// The client's error.
        detail: String,
    },
    /// A step did not finish in time.
    #[error("mcp {step} took longer than {timeout_s} s")]
    Timeout {
        /// What was waited for.
        step: &'static str,
        /// The limit.
        timeout_s: u64,
    },
    /// The server offers no store and search tools this driver knows.
    #[error("no known store/search tools among {0:?}")]
    NoMapping(Vec<String>),
}

/// Outcome of one timed phase.
struct Phase {
    latencies: Vec<Duration>,
    errors: u64,
    wall: Duration,
    capped: bool,
}

/// Drives the server `command` starts: stores `memories`, then searches
/// `queries`, within `budget`.
pub async fn run(
    command: &ServerCommand,
    memories: &[Memory],
    queries: &[WorkloadQuery],
    budget: &Budget,
) -> Result<RunFigures, DriverError> {
    let stderr = std::fs::File::create(&command.stderr_log).map_err(|source| DriverError::Log {
        path: command.stderr_log.display().to_string(),
        source,
    })?;
    let mut child = Command::new(&command.program)
        .current_dir(&command.working_dir)
        .args(&command.args)
        .envs(command.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .map_err(|source| DriverError::Spawn {
            program: command.program.display().to_string(),
            source,
        })?;
    let pid = child.id().unwrap_or(0);
    let peak = Arc::new(Mutex::new(PeakRss::new()));
    let sampler = {
        let peak = Arc::clone(&peak);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(RSS_SAMPLE_INTERVAL_MS));
            loop {
                tick.tick().await;
                if let Ok(mut peak) = peak.lock() {
                    peak.sample(pid);
                }
            }
        })
    };
    let measured = session(&mut child, memories, queries, budget).await;
    sampler.abort();
    let (mut figures, client) = measured?;
    if let Ok(mut peak) = peak.lock() {
        peak.sample(pid);
        figures.peak_rss_mib = peak.total_mib();
        figures.processes = peak.processes();
    }
    // Closing stdin ends a stdio server; kill what does not end in time.
    let _ = tokio::time::timeout(Duration::from_secs(EXIT_TIMEOUT_S), client.cancel()).await;
    if tokio::time::timeout(Duration::from_secs(EXIT_TIMEOUT_S), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
    Ok(figures)
}

/// `future` within `timeout`, its error or the timeout as a [`DriverError`].
async fn within<T, E: std::fmt::Display>(
    step: &'static str,
    timeout: Duration,
    future: impl std::future::Future<Output = Result<T, E>>,
) -> Result<T, DriverError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => Err(DriverError::Mcp {
            step,
            detail: error.to_string(),
        }),
        Err(_) => Err(DriverError::Timeout {
            step,
            timeout_s: timeout.as_secs(),
        }),
    }
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ()>;

/// Handshake, tool mapping, stores, searches (peak RSS is filled in by the caller).
async fn session(
    child: &mut tokio::process::Child,
    memories: &[Memory],
    queries: &[WorkloadQuery],
    budget: &Budget,
) -> Result<(RunFigures, Client), DriverError> {
    let (Some(stdout), Some(stdin)) = (child.stdout.take(), child.stdin.take()) else {
        return Err(DriverError::Mcp {
            step: "initialize",
            detail: "no stdio pipes".into(),
        });
    };
    let client = within(
        "initialize",
        budget.start_timeout,
        ().serve((stdout, stdin)),
    )
    .await?;
    let tools = within("tools/list", budget.start_timeout, client.list_all_tools()).await?;
    let tools: Vec<String> = tools.iter().map(|tool| tool.name.to_string()).collect();
    let Some(mapping) = ToolMapping::detect(&tools) else {
        return Err(DriverError::NoMapping(tools));
    };
    let mut first_error = None;
    let stores = timed_phase(
        &client,
        memories
            .iter()
            .map(|memory| (mapping.store_tool(), mapping.store_args(memory))),
        budget.call_timeout,
        budget.store_phase,
        &mut first_error,
    )
    .await;
    let searches = timed_phase(
        &client,
        queries
            .iter()
            .map(|query| (mapping.search_tool(), mapping.search_args(query))),
        budget.call_timeout,
        budget.search_phase,
        &mut first_error,
    )
    .await;
    let figures = RunFigures {
        mapping,
        tools,
        items_wanted: memories.len() as u64,
        items_stored: stores.latencies.len() as u64,
        store_capped: stores.capped,
        search_capped: searches.capped,
        store: OpStats::from_latencies(stores.latencies, stores.errors, stores.wall),
        search: OpStats::from_latencies(searches.latencies, searches.errors, searches.wall),
        peak_rss_mib: None,
        processes: 0,
        first_error,
    };
    Ok((figures, client))
}

/// Calls one tool after another until `calls` or `phase_budget` runs out.
async fn timed_phase(
    client: &Client,
    calls: impl Iterator<Item = (&'static str, JsonObject)>,
    call_timeout: Duration,
    phase_budget: Duration,
    first_error: &mut Option<String>,
) -> Phase {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0u64;
    let mut capped = false;
    for (tool, args) in calls {
        if started.elapsed() >= phase_budget {
            capped = true;
            break;
        }
        let params = CallToolRequestParams::new(tool).with_arguments(args);
        let sent = Instant::now();
        let outcome = tokio::time::timeout(call_timeout, client.call_tool(params)).await;
        latencies.push(sent.elapsed());
        let failure = match outcome {
            Ok(Ok(result)) if result.is_error != Some(true) => None,
            Ok(Ok(result)) => Some(format!("{tool}: tool error {:?}", result.content)),
            Ok(Err(error)) => Some(format!("{tool}: {error}")),
            Err(_) => Some(format!("{tool}: no answer in {} s", call_timeout.as_secs())),
        };
        if let Some(failure) = failure {
            errors += 1;
            first_error.get_or_insert(failure);
        }
    }
    Phase {
        latencies,
        errors,
        wall: started.elapsed(),
        capped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemosyne_core::workload::Workload;

    #[test]
    fn detects_each_server_from_its_tool_list() {
        let ours = ["remember", "recall", "forget", "work_submit"];
        assert_eq!(ToolMapping::detect(&ours), Some(ToolMapping::Mnemosyne));
        let graph = [
            "create_entities",
            "create_relations",
            "add_observations",
            "read_graph",
            "search_nodes",
            "open_nodes",
        ];
        assert_eq!(
            ToolMapping::detect(&graph),
            Some(ToolMapping::KnowledgeGraph)
        );
        let basic = ["write_note", "read_note", "search_notes", "search", "fetch"];
        assert_eq!(ToolMapping::detect(&basic), Some(ToolMapping::BasicMemory));
        // A store tool without its search tool is no mapping.
        assert_eq!(ToolMapping::detect(&["remember", "search_nodes"]), None);
        assert_eq!(ToolMapping::detect::<&str>(&[]), None);
    }

    #[test]
    fn arguments_carry_the_workload_item() {
        let mut workload = Workload::new(7);
        let memory = workload.memory(chrono::Utc::now());
        let query = workload.query();
        for mapping in ToolMapping::ALL {
            let store = Value::Object(mapping.store_args(&memory)).to_string();
            assert!(store.contains(&memory.content), "{mapping:?}: {store}");
            let search = Value::Object(mapping.search_args(&query));
            assert_eq!(search["query"], json!(query.text), "{mapping:?}");
        }
        let graph = ToolMapping::KnowledgeGraph.store_args(&memory);
        assert_eq!(graph["entities"][0]["name"], json!(memory.id.to_string()));
        let recall = ToolMapping::Mnemosyne.search_args(&query);
        assert_eq!(recall["mode"], json!("keyword"));
        assert_eq!(recall.contains_key("namespace"), query.namespace.is_some());
        assert_eq!(directory_of("session:atlas/s1"), "session-atlas/s1");
    }
}
