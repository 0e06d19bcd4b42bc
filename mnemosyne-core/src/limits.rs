use serde::{Deserialize, Serialize};

/// `recall_results_max` can never be configured above this.
pub const RECALL_RESULTS_HARD_CAP: u32 = 1_000;

/// `context_memories_max` can never be configured above this.
pub const CONTEXT_MEMORIES_HARD_CAP: u32 = 1_000;

/// `embedding_tokens_max` can never be configured above this: the local
/// model (all-MiniLM-L6-v2) has 512 positions.
pub const EMBEDDING_TOKENS_HARD_CAP: u32 = 512;

/// `mcp_message_bytes_max` can never be configured below this: an MCP
/// `initialize` request must fit.
pub const MCP_MESSAGE_BYTES_MIN: u64 = 4_096;

/// Prefix of the environment variables that override a limit:
/// `MNEMOSYNE_POOL_READERS_MAX=8` sets `pool_readers_max`.
pub const ENV_PREFIX: &str = "MNEMOSYNE_";

/// A limits file or variable that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum LimitsError {
    /// The TOML text does not describe limits (unknown key, wrong type).
    #[error("invalid limits: {0}")]
    Parse(String),
    /// An environment variable holds something that is not a whole number.
    #[error("invalid value {value:?} in {variable}: expected a whole number")]
    EnvValue {
        /// The variable name.
        variable: String,
        /// What it held.
        value: String,
    },
    /// A limit is out of its allowed range.
    #[error("invalid limit {name} = {value}: {rule}")]
    OutOfRange {
        /// Limit name.
        name: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        rule: &'static str,
    },
}

/// Every bound of the system, in one place, with its unit in its name.
///
/// Passed explicitly to every component; no component relies on a library
/// default. Loaded from the `[limits]` table of the config file, then from
/// `MNEMOSYNE_<NAME>` environment variables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Reader connections in the pool (the writer is separate and single).
    pub pool_readers_max: u32,
    /// How long a caller waits for a pooled connection before `PoolTimeout`.
    pub pool_wait_timeout_ms: u64,
    /// How long SQLite retries a locked database before giving up.
    pub sqlite_busy_timeout_ms: u64,
    /// Time a remote (libsql server) database has to answer the first
    /// request when it is opened.
    pub remote_connect_timeout_ms: u64,
    /// Time a remote (libsql server) database has to answer each request
    /// (one statement, or a transaction's begin or commit); past it the
    /// operation fails with one line naming the server, never hangs.
    pub remote_request_timeout_ms: u64,
    /// SQLite's page cache of each connection, in bytes (`PRAGMA
    /// cache_size`; SQLite's own default is 2 MiB).
    pub sqlite_page_cache_bytes_max: u64,
    /// SQLite's heap, every connection of the process together (`PRAGMA
    /// soft_heap_limit`): past it SQLite frees cached pages before it
    /// allocates more.
    pub sqlite_heap_bytes_max: u64,
    /// Threads the runtime may start for blocking work: every SQLite call
    /// runs on one, for as long as it holds its connection (tokio's own
    /// default is 512). Past it, blocking work waits for a free thread.
    /// At least 2: a blocking read of stdin (`serve mcp`) holds one.
    pub blocking_threads_max: u32,
    /// glibc builds (the default): malloc arenas (`M_ARENA_MAX`). glibc
    /// would give each new thread its own, up to 8 a core, and each keeps
    /// the memory freed into it: RSS then grows with every blocking thread.
    pub allocator_arenas_max: u32,
    /// jemalloc builds: milliseconds a freed page stays resident before it
    /// goes back to the OS (jemalloc's `dirty_decay_ms`); 0 returns it at once.
    pub allocator_dirty_decay_ms: u64,
    /// Bytes of the database file each local connection reads through a
    /// memory map (`PRAGMA mmap_size`: address space shared through the page
    /// cache, not memory per connection); 0 (the default) turns it off.
    /// A map makes hybrid recall under many concurrent clients faster (the
    /// vector rerank reads scattered rows without a system call each), but
    /// every mapped page the server touched counts in its RSS, which then
    /// grows with the database file.
    pub sqlite_mmap_bytes_max: u64,
    /// Bytes the write-ahead log file is cut back to once a checkpoint has
    /// copied it into the database (`PRAGMA journal_size_limit`): one large
    /// write grows the WAL, and without this it would keep that size.
    pub sqlite_wal_bytes_max: u64,
    /// Active (not finished) work items; more is `WorkQueueFull`.
    pub work_items_max: u32,
    /// Finished work items kept in memory; older ones live on disk only.
    pub work_completed_retained_max: u32,
    /// Finished work items kept on disk; the oldest finished beyond it are
    /// deleted (pruned once 1% over), so the database does not grow with
    /// every item ever done. At least `work_completed_retained_max`.
    pub work_finished_stored_max: u64,
    /// Capacity of the event bus; slow subscribers skip ahead.
    pub events_capacity: u32,
    /// Weight cap of the embedding cache, in bytes.
    pub embedding_cache_bytes_max: u64,
    /// CRDT operations between two compactions of a document.
    pub crdt_compact_every_ops: u32,
    /// Seconds between two compactions of a document.
    pub crdt_compact_every_s: u64,
    /// Undo steps kept per actor and document (redo steps likewise).
    pub crdt_undo_depth: u32,
    /// Bytes of text held by the undo and redo steps of one document, all
    /// actors together; the oldest steps are dropped first.
    pub crdt_undo_bytes_max: u64,
    /// Actors whose undo history one document keeps; the least recently
    /// active actor's history is dropped first.
    pub crdt_actors_max: u32,
    /// Attribution records (who changed what, when) kept per document; the
    /// oldest are dropped first.
    pub crdt_attribution_records_max: u32,
    /// Largest document text, in bytes of UTF-8.
    pub doc_text_bytes_max: u64,
    /// Longest document name, in bytes.
    pub doc_name_bytes_max: u32,
    /// Longest document title, in bytes.
    pub doc_title_bytes_max: u32,
    /// Longest actor (agent) name, in bytes.
    pub crdt_actor_name_bytes_max: u32,
    /// Documents a document store keeps open in memory (least recently used
    /// closed first); 0 keeps none open.
    pub doc_open_max: u32,
    /// Largest memory content, in bytes of UTF-8.
    pub memory_content_bytes_max: u32,
    /// Largest memory summary, in bytes of UTF-8.
    pub memory_summary_bytes_max: u32,
    /// Tags on one memory.
    pub memory_tags_max: u32,
    /// Longest tag, in bytes.
    pub tag_bytes_max: u32,
    /// Outgoing links of one memory.
    pub memory_links_max: u32,
    /// Texts sent to the embedder in one call; the vectors of one call are
    /// stored in one transaction.
    pub embedding_batch_max: u32,
    /// Memories a server's embedding worker holds remembered but not yet
    /// embedded (queued, or in the batch being embedded). When it is full,
    /// `remember` waits `embedding_backlog_wait_ms` for room, then fails with
    /// `EmbeddingBacklogFull` having stored nothing.
    pub embedding_backlog_max: u32,
    /// How long `remember` waits for room in a full embedding backlog, in
    /// milliseconds (0: fail at once).
    pub embedding_backlog_wait_ms: u64,
    /// Time one embedder call may take, in milliseconds.
    pub embedder_timeout_ms: u64,
    /// Inferences of the local model (`minilm`) running at once, each on a
    /// blocking thread; more callers wait their turn.
    pub embedding_inferences_max: u32,
    /// Tokens of one text the local model reads (at most
    /// [`EMBEDDING_TOKENS_HARD_CAP`]); a longer text is embedded from its
    /// first tokens and counted as truncated.
    pub embedding_tokens_max: u32,
    /// Retries of a failed embedder call (so at most this + 1 attempts).
    pub embedder_retries_max: u32,
    /// Wait before the first retry, doubled for each next one, in milliseconds.
    /// The embedding worker waits as long after a batch that failed (embedder
    /// or store), doubled after each further failure of that batch, at most
    /// `embedder_timeout_ms`, and keeps the batch.
    pub embedder_backoff_ms: u64,
    /// Vector candidates fetched for one recall.
    pub vector_candidates_max: u32,
    /// Link hops followed from recall candidates (0 turns expansion off).
    pub link_expansion_hops_max: u32,
    /// Linked memories followed per candidate and hop.
    pub link_expansion_fan_out_max: u32,
    /// Link hops a `context` request (one memory with its linked
    /// neighbourhood) may ask for; also its default. 0 returns the memory alone.
    pub context_hops_max: u32,
    /// Neighbours a `context` request may follow from each memory it
    /// reaches (highest importance first); also its default.
    pub context_fan_out_max: u32,
    /// Memories one `context` answer may hold, the asked-for one included;
    /// also its default. Past it the answer is cut and says so.
    pub context_memories_max: u32,
    /// Memories `reindex` reads per step (embedded `embedding_batch_max` at
    /// a time, each batch committed on its own).
    pub reindex_batch_rows: u32,
    /// Results of one recall (never above [`RECALL_RESULTS_HARD_CAP`]).
    pub recall_results_max: u32,
    /// Longest recall query, in bytes.
    pub recall_query_bytes_max: u32,
    /// Content bytes of each memory in a server recall or list result; longer
    /// content is cut (on a character boundary) and marked `content_truncated`.
    /// `get` returns the whole content.
    pub result_content_bytes_max: u32,
    /// Rows of one list or export page.
    pub list_page_rows_max: u32,
    /// Memories written per import transaction.
    pub import_batch_rows: u32,
    /// Largest HTTP request body, in bytes (413 above it).
    pub request_body_bytes_max: u64,
    /// Longest MCP message over stdio: one JSON-RPC line, in bytes, its
    /// newline not counted. A longer line is skipped without being held
    /// whole and answered with an Invalid Request error (-32600). At least
    /// 4096, so that an `initialize` request fits.
    pub mcp_message_bytes_max: u64,
    /// HTTP requests served at once, over every route; more wait (bounded by
    /// `http_request_timeout_ms`).
    pub http_concurrency_max: u32,
    /// Time one HTTP request may take from its first header byte to its
    /// response head (waiting for a concurrency slot included), in milliseconds.
    pub http_request_timeout_ms: u64,
    /// Open HTTP connections (SSE streams included); a client past it is
    /// answered 503 `busy` and closed at once. `serve http` checks that it
    /// fits under the process's open-file limit with the database's files.
    pub http_connections_max: u32,
    /// Time a client has to send a whole request head (request line and
    /// headers), counted from the connection's start or the end of its
    /// previous request, in milliseconds: past it the connection is closed,
    /// so a slow or idle client (slowloris) cannot hold a connection slot.
    pub http_header_read_timeout_ms: u64,
    /// Largest HTTP request head (request line and headers), in bytes:
    /// past it the answer is 431 and the connection closes. At least 8192
    /// (hyper's smallest read buffer).
    pub http_header_bytes_max: u32,
    /// Most headers in one HTTP request (431 past it).
    pub http_headers_max: u32,
    /// Seconds between two keep-alive comments on an idle SSE stream.
    pub sse_keep_alive_s: u64,
    /// Time given to background tasks to stop before they are aborted.
    pub shutdown_timeout_s: u64,
    /// Seconds between two resource monitor samples.
    pub monitor_interval_s: u64,
    /// Seconds between two server heartbeats.
    pub heartbeat_interval_s: u64,
    /// Seconds a work claim lasts without a heartbeat.
    pub work_lease_s: u64,
    /// Expired claims a work item may have: when its attempts reach this, it becomes failed.
    pub work_attempts_max: u32,
    /// Longest text of a work item (description, requirement, feedback, reason, agent), in bytes.
    pub work_text_bytes_max: u32,
    /// Entries of each list of one work item (dependencies, requirements,
    /// evidence, suggested tests; review feedback keeps its newest this many).
    pub work_item_entries_max: u32,
    /// Queue transitions persisted in one commit (group commit).
    pub work_commit_batch_max: u32,
    /// Queue transitions waiting to be committed; more is `WorkWriteBacklogFull`.
    pub work_write_backlog_max: u32,
    /// How long a `work` command waits for another process to let go of the
    /// work queue of a local database (one process owns it), in
    /// milliseconds, before it fails naming the owner (0: fail at once).
    pub work_owner_wait_timeout_ms: u64,
    /// Resident memory, as a percentage of the memory limit (cgroup or
    /// MemTotal), at which the monitor warns.
    pub monitor_rss_warn_percent: u8,
    /// Resident memory, as a percentage of the memory limit, at which the
    /// monitor raises a critical alert.
    pub monitor_rss_critical_percent: u8,
    /// Open fds, as a percentage of the fd limit (`ulimit -n`), at which the monitor warns.
    pub monitor_fds_warn_percent: u8,
    /// A bounded gauge, as a percentage of its limit, at which the monitor warns.
    pub monitor_gauge_warn_percent: u8,
    /// Bytes of context `mnemosyne hook SessionStart` adds (memories, work
    /// items, document names); at most [`HOOK_CONTEXT_BYTES_HARD_CAP`].
    pub hook_session_start_bytes_max: u32,
    /// Bytes of context `mnemosyne hook UserPromptSubmit` adds beside a
    /// prompt; at most [`HOOK_CONTEXT_BYTES_HARD_CAP`].
    pub hook_prompt_bytes_max: u32,
    /// Memories `mnemosyne hook UserPromptSubmit` adds beside one prompt.
    pub hook_prompt_hits_max: u32,
    /// Relevance floor of `mnemosyne hook UserPromptSubmit`: the cosine
    /// similarity between prompt and memory, in percent, a memory needs to
    /// be added. Below it (or with no vector to compare) it is left out.
    pub hook_similarity_min_percent: u8,
    /// Time one hook has from start to answer, in milliseconds; past it, it
    /// prints nothing and exits 0.
    pub hook_time_budget_ms: u64,
    /// Bytes of hook input (Claude Code's JSON on stdin) read; a larger
    /// input is refused (nothing printed, exit 0).
    pub hook_input_bytes_max: u32,
    /// Sessions whose given memories the hooks remember (one small file
    /// each); past it the least recently used session's file is deleted.
    pub hook_sessions_max: u32,
    /// Memory ids remembered per session as already given (so a prompt
    /// does not repeat them); past it the oldest are forgotten.
    pub hook_session_ids_max: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            pool_readers_max: 4,
            pool_wait_timeout_ms: 5_000,
            sqlite_busy_timeout_ms: 5_000,
            sqlite_mmap_bytes_max: 0,
            sqlite_wal_bytes_max: 64 << 20,
            sqlite_page_cache_bytes_max: 2 << 20,
            sqlite_heap_bytes_max: 32 << 20,
            allocator_dirty_decay_ms: 1_000,
            allocator_arenas_max: 2,
            // The pool's 4 readers and 1 writer, with room for file and
            // stdin work; a soak at 200 requests/s used up to 16.
            blocking_threads_max: 16,
            remote_connect_timeout_ms: 10_000,
            remote_request_timeout_ms: 30_000,
            work_items_max: 10_000,
            work_completed_retained_max: 1_000,
            // About 50 MB of rows with short descriptions; a soak finishing
            // 30 items a second kept 1.3 GB a day without this bound.
            work_finished_stored_max: 100_000,
            events_capacity: 1_000,
            // 16 MiB (about 9 800 vectors of 384 dims), not DESIGN's starting 64 MiB:
            // the server's steady RSS target is 100 MB in all (see the soak).
            embedding_cache_bytes_max: 16 * 1024 * 1024,
            crdt_compact_every_ops: 1_000,
            crdt_compact_every_s: 600,
            crdt_undo_depth: 100,
            crdt_undo_bytes_max: 4 * 1024 * 1024,
            crdt_actors_max: 64,
            crdt_attribution_records_max: 1_000,
            doc_text_bytes_max: 1024 * 1024,
            doc_name_bytes_max: 128,
            doc_title_bytes_max: 256,
            crdt_actor_name_bytes_max: 64,
            doc_open_max: 16,
            memory_content_bytes_max: 64 * 1024,
            memory_summary_bytes_max: 1_024,
            memory_tags_max: 32,
            tag_bytes_max: 64,
            memory_links_max: 64,
            embedding_batch_max: 64,
            // Ids only (16 bytes each): the texts stay on disk until embedded.
            embedding_backlog_max: 10_000,
            embedding_backlog_wait_ms: 5_000,
            embedder_timeout_ms: 30_000,
            embedding_inferences_max: 2,
            embedding_tokens_max: 256,
            embedder_retries_max: 3,
            embedder_backoff_ms: 200,
            vector_candidates_max: 200,
            link_expansion_hops_max: 1,
            link_expansion_fan_out_max: 5,
            context_hops_max: 2,
            context_fan_out_max: 8,
            context_memories_max: 50,
            reindex_batch_rows: 256,
            recall_results_max: 100,
            recall_query_bytes_max: 4_096,
            result_content_bytes_max: 4_096,
            list_page_rows_max: 1_000,
            import_batch_rows: 1_000,
            request_body_bytes_max: 1024 * 1024,
            mcp_message_bytes_max: 1024 * 1024,
            http_concurrency_max: 256,
            http_request_timeout_ms: 30_000,
            http_connections_max: 1_024,
            http_header_read_timeout_ms: 10_000,
            // Browsers send every cookie of `localhost` (all local apps) here.
            http_header_bytes_max: 32 * 1024,
            http_headers_max: 100,
            sse_keep_alive_s: 15,
            shutdown_timeout_s: 30,
            monitor_interval_s: 30,
            heartbeat_interval_s: 10,
            work_lease_s: 300,
            work_attempts_max: 3,
            work_text_bytes_max: 16 * 1024,
            work_item_entries_max: 100,
            work_commit_batch_max: 1_024,
            work_write_backlog_max: 10_000,
            work_owner_wait_timeout_ms: 5_000,
            monitor_rss_warn_percent: 50,
            monitor_rss_critical_percent: 80,
            monitor_fds_warn_percent: 80,
            monitor_gauge_warn_percent: 90,
            // Claude Code keeps additions under 10 000 characters whole.
            hook_session_start_bytes_max: 6_144,
            hook_prompt_bytes_max: 3_072,
            hook_prompt_hits_max: 3,
            hook_similarity_min_percent: 40,
            hook_time_budget_ms: 3_000,
            hook_input_bytes_max: 1024 * 1024,
            hook_sessions_max: 64,
            hook_session_ids_max: 512,
        }
    }
}

impl Limits {
    /// Limits from a TOML table such as the `[limits]` table of the config
    /// file; keys not given keep their default, unknown keys are an error.
    pub fn from_toml_str(text: &str) -> Result<Self, LimitsError> {
        let limits: Self = toml::from_str(text).map_err(|e| LimitsError::Parse(one_line(&e)))?;
        limits.validate()?;
        Ok(limits)
    }

    /// Applies `MNEMOSYNE_<NAME>` overrides from `vars` (pass
    /// `std::env::vars()`); variables that name no limit are ignored.
    pub fn with_env_overrides(
        self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, LimitsError> {
        let mut table =
            toml::Table::try_from(&self).map_err(|e| LimitsError::Parse(e.to_string()))?;
        let mut changed = false;
        for (variable, value) in vars {
            let Some(name) = variable.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let key = name.to_ascii_lowercase();
            let Some(slot) = table.get_mut(&key) else {
                continue;
            };
            let parsed: i64 = value.trim().parse().map_err(|_| LimitsError::EnvValue {
                variable: variable.clone(),
                value: value.clone(),
            })?;
            if parsed < 0 {
                return Err(LimitsError::EnvValue { variable, value });
            }
            *slot = toml::Value::Integer(parsed);
            changed = true;
        }
        if !changed {
            return Ok(self);
        }
        let limits: Self = table
            .try_into()
            .map_err(|e: toml::de::Error| LimitsError::Parse(one_line(&e)))?;
        limits.validate()?;
        Ok(limits)
    }

    /// Checks that every limit is usable: positive where zero would wedge the
    /// system, and `recall_results_max` within its hard cap.
    pub fn validate(&self) -> Result<(), LimitsError> {
        let positive: [(&'static str, u64); 45] = [
            ("allocator_arenas_max", self.allocator_arenas_max.into()),
            ("sqlite_heap_bytes_max", self.sqlite_heap_bytes_max),
            ("embedding_batch_max", self.embedding_batch_max.into()),
            ("embedding_backlog_max", self.embedding_backlog_max.into()),
            ("embedder_timeout_ms", self.embedder_timeout_ms),
            (
                "embedding_inferences_max",
                self.embedding_inferences_max.into(),
            ),
            ("embedding_tokens_max", self.embedding_tokens_max.into()),
            ("vector_candidates_max", self.vector_candidates_max.into()),
            ("context_fan_out_max", self.context_fan_out_max.into()),
            ("context_memories_max", self.context_memories_max.into()),
            ("reindex_batch_rows", self.reindex_batch_rows.into()),
            ("pool_readers_max", self.pool_readers_max.into()),
            ("pool_wait_timeout_ms", self.pool_wait_timeout_ms),
            ("remote_request_timeout_ms", self.remote_request_timeout_ms),
            ("work_items_max", self.work_items_max.into()),
            ("work_finished_stored_max", self.work_finished_stored_max),
            ("events_capacity", self.events_capacity.into()),
            ("crdt_compact_every_ops", self.crdt_compact_every_ops.into()),
            ("crdt_compact_every_s", self.crdt_compact_every_s),
            ("crdt_actors_max", self.crdt_actors_max.into()),
            ("doc_text_bytes_max", self.doc_text_bytes_max),
            ("doc_name_bytes_max", self.doc_name_bytes_max.into()),
            ("doc_title_bytes_max", self.doc_title_bytes_max.into()),
            (
                "crdt_actor_name_bytes_max",
                self.crdt_actor_name_bytes_max.into(),
            ),
            (
                "crdt_attribution_records_max",
                self.crdt_attribution_records_max.into(),
            ),
            (
                "memory_content_bytes_max",
                self.memory_content_bytes_max.into(),
            ),
            (
                "memory_summary_bytes_max",
                self.memory_summary_bytes_max.into(),
            ),
            ("tag_bytes_max", self.tag_bytes_max.into()),
            ("recall_results_max", self.recall_results_max.into()),
            ("recall_query_bytes_max", self.recall_query_bytes_max.into()),
            ("list_page_rows_max", self.list_page_rows_max.into()),
            (
                "result_content_bytes_max",
                self.result_content_bytes_max.into(),
            ),
            ("import_batch_rows", self.import_batch_rows.into()),
            ("request_body_bytes_max", self.request_body_bytes_max),
            ("http_concurrency_max", self.http_concurrency_max.into()),
            ("http_request_timeout_ms", self.http_request_timeout_ms),
            ("http_connections_max", self.http_connections_max.into()),
            ("sse_keep_alive_s", self.sse_keep_alive_s),
            ("heartbeat_interval_s", self.heartbeat_interval_s),
            ("work_lease_s", self.work_lease_s),
            ("work_attempts_max", self.work_attempts_max.into()),
            ("work_text_bytes_max", self.work_text_bytes_max.into()),
            ("work_item_entries_max", self.work_item_entries_max.into()),
            ("work_commit_batch_max", self.work_commit_batch_max.into()),
            ("work_write_backlog_max", self.work_write_backlog_max.into()),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(LimitsError::OutOfRange {
                    name,
                    value,
                    rule: "must be at least 1",
                });
            }
        }
        for (name, value) in [
            ("monitor_rss_warn_percent", self.monitor_rss_warn_percent),
            (
                "monitor_rss_critical_percent",
                self.monitor_rss_critical_percent,
            ),
            ("monitor_fds_warn_percent", self.monitor_fds_warn_percent),
            (
                "monitor_gauge_warn_percent",
                self.monitor_gauge_warn_percent,
            ),
        ] {
            if !(1..=100).contains(&value) {
                return Err(LimitsError::OutOfRange {
                    name,
                    value: value.into(),
                    rule: "must be a percentage from 1 to 100",
                });
            }
        }
        self.validate_http_heads()?;
        self.validate_hooks()?;
        if self.blocking_threads_max < 2 {
            return Err(LimitsError::OutOfRange {
                name: "blocking_threads_max",
                value: self.blocking_threads_max.into(),
                rule: "must be at least 2 (a stdin reader holds one)",
            });
        }
        if self.mcp_message_bytes_max < MCP_MESSAGE_BYTES_MIN {
            return Err(LimitsError::OutOfRange {
                name: "mcp_message_bytes_max",
                value: self.mcp_message_bytes_max,
                rule: "must be at least 4096 (an MCP initialize request must fit)",
            });
        }
        if self.work_finished_stored_max < self.work_completed_retained_max.into() {
            return Err(LimitsError::OutOfRange {
                name: "work_finished_stored_max",
                value: self.work_finished_stored_max,
                rule: "must be at least work_completed_retained_max",
            });
        }
        if self.embedding_tokens_max > EMBEDDING_TOKENS_HARD_CAP {
            return Err(LimitsError::OutOfRange {
                name: "embedding_tokens_max",
                value: self.embedding_tokens_max.into(),
                rule: "must be at most 512 (the positions of the local model)",
            });
        }
        if self.context_memories_max > CONTEXT_MEMORIES_HARD_CAP {
            return Err(LimitsError::OutOfRange {
                name: "context_memories_max",
                value: self.context_memories_max.into(),
                rule: "must be at most 1000",
            });
        }
        if self.recall_results_max > RECALL_RESULTS_HARD_CAP {
            return Err(LimitsError::OutOfRange {
                name: "recall_results_max",
                value: self.recall_results_max.into(),
                rule: "must be at most 1000",
            });
        }
        Ok(())
    }
}

/// `hook_session_start_bytes_max` and `hook_prompt_bytes_max` can never be
/// configured above this: Claude Code replaces a hook's context of over
/// 10 000 characters by a file path and its first 2 000.
pub const HOOK_CONTEXT_BYTES_HARD_CAP: u32 = 9_000;

impl Limits {
    fn validate_hooks(&self) -> Result<(), LimitsError> {
        for (name, value) in [
            (
                "hook_session_start_bytes_max",
                self.hook_session_start_bytes_max,
            ),
            ("hook_prompt_bytes_max", self.hook_prompt_bytes_max),
        ] {
            if !(256..=HOOK_CONTEXT_BYTES_HARD_CAP).contains(&value) {
                return Err(LimitsError::OutOfRange {
                    name,
                    value: value.into(),
                    rule: "must be 256 to 9000 (Claude Code cuts a hook's context over 10 000 characters)",
                });
            }
        }
        for (name, value) in [
            ("hook_prompt_hits_max", u64::from(self.hook_prompt_hits_max)),
            ("hook_time_budget_ms", self.hook_time_budget_ms),
            ("hook_input_bytes_max", self.hook_input_bytes_max.into()),
            ("hook_sessions_max", self.hook_sessions_max.into()),
            ("hook_session_ids_max", self.hook_session_ids_max.into()),
        ] {
            if value == 0 {
                return Err(LimitsError::OutOfRange {
                    name,
                    value,
                    rule: "must be at least 1",
                });
            }
        }
        if self.hook_similarity_min_percent > 100 {
            return Err(LimitsError::OutOfRange {
                name: "hook_similarity_min_percent",
                value: self.hook_similarity_min_percent.into(),
                rule: "must be a percentage from 0 to 100",
            });
        }
        Ok(())
    }
}

/// Smallest `http_header_bytes_max`: hyper's initial read buffer.
pub const HTTP_HEADER_BYTES_MIN: u32 = 8_192;

impl Limits {
    fn validate_http_heads(&self) -> Result<(), LimitsError> {
        for (name, value) in [
            (
                "http_header_read_timeout_ms",
                self.http_header_read_timeout_ms,
            ),
            ("http_headers_max", self.http_headers_max.into()),
        ] {
            if value == 0 {
                return Err(LimitsError::OutOfRange {
                    name,
                    value,
                    rule: "must be at least 1",
                });
            }
        }
        if self.http_header_bytes_max < HTTP_HEADER_BYTES_MIN {
            return Err(LimitsError::OutOfRange {
                name: "http_header_bytes_max",
                value: self.http_header_bytes_max.into(),
                rule: "must be at least 8192",
            });
        }
        Ok(())
    }
}

fn one_line(error: &toml::de::Error) -> String {
    error.message().replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let limits = Limits::default();
        assert_eq!(limits.pool_readers_max, 4);
        assert_eq!(limits.pool_wait_timeout_ms, 5_000);
        assert_eq!(limits.work_items_max, 10_000);
        assert_eq!(limits.memory_content_bytes_max, 65_536);
        // DESIGN starts at 64 MiB; measured down to 16 MiB for the server's
        // 100 MB RSS target (see the default).
        assert_eq!(limits.embedding_cache_bytes_max, 16 << 20);
        assert_eq!(limits.sqlite_page_cache_bytes_max, 2 << 20);
        assert_eq!(limits.sqlite_heap_bytes_max, 32 << 20);
        assert_eq!(limits.allocator_dirty_decay_ms, 1_000);
        assert_eq!(limits.blocking_threads_max, 16);
        assert_eq!(limits.allocator_arenas_max, 2);
        assert_eq!(limits.work_attempts_max, 3);
        assert_eq!(limits.work_finished_stored_max, 100_000);
        assert_eq!(limits.embedding_backlog_max, 10_000);
        assert_eq!(limits.embedding_backlog_wait_ms, 5_000);
        assert_eq!(limits.work_owner_wait_timeout_ms, 5_000);
        assert_eq!(limits.context_hops_max, 2);
        assert_eq!(limits.context_fan_out_max, 8);
        assert_eq!(limits.context_memories_max, 50);
        limits.validate().unwrap();
    }

    #[test]
    fn toml_overrides_some_keys_and_keeps_the_rest() {
        let limits = Limits::from_toml_str("pool_readers_max = 2\nwork_lease_s = 60\n").unwrap();
        assert_eq!(limits.pool_readers_max, 2);
        assert_eq!(limits.work_lease_s, 60);
        assert_eq!(limits.events_capacity, 1_000);
    }

    #[test]
    fn hook_budgets_stay_under_what_claude_code_keeps_whole() {
        Limits::from_toml_str("hook_prompt_bytes_max = 9000").unwrap();
        let err = Limits::from_toml_str("hook_prompt_bytes_max = 9001").unwrap_err();
        assert!(err.to_string().contains("must be 256 to 9000"), "{err}");
        let err = Limits::from_toml_str("hook_session_start_bytes_max = 255").unwrap_err();
        assert!(
            err.to_string().contains("hook_session_start_bytes_max"),
            "{err}"
        );
        let err = Limits::from_toml_str("hook_similarity_min_percent = 101").unwrap_err();
        assert!(err.to_string().contains("0 to 100"), "{err}");
        let err = Limits::from_toml_str("hook_sessions_max = 0").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let defaults = Limits::default();
        assert!(defaults.hook_session_start_bytes_max < 8 * 1024);
        assert!(defaults.hook_prompt_bytes_max < 8 * 1024);
    }

    #[test]
    fn toml_rejects_unknown_keys_and_bad_ranges() {
        let err = Limits::from_toml_str("pool_readers_maxx = 2").unwrap_err();
        assert!(err.to_string().contains("pool_readers_maxx"), "{err}");
        let err = Limits::from_toml_str("recall_results_max = 1001").unwrap_err();
        assert!(err.to_string().contains("recall_results_max"), "{err}");
        Limits::from_toml_str("embedding_tokens_max = 512").unwrap();
        let err = Limits::from_toml_str("embedding_tokens_max = 513").unwrap_err();
        assert!(err.to_string().contains("at most 512"), "{err}");
        let err = Limits::from_toml_str("pool_readers_max = 0").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = Limits::from_toml_str("context_fan_out_max = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit context_fan_out_max = 0: must be at least 1"
        );
        let err = Limits::from_toml_str("context_memories_max = 0").unwrap_err();
        assert!(err.to_string().contains("context_memories_max"), "{err}");
        Limits::from_toml_str("context_memories_max = 1000").unwrap();
        let err = Limits::from_toml_str("context_memories_max = 1001").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit context_memories_max = 1001: must be at most 1000"
        );
        let alone = Limits::from_toml_str("context_hops_max = 0").unwrap();
        assert_eq!(alone.context_hops_max, 0, "0 hops: the memory alone");
        let err = Limits::from_toml_str("embedding_backlog_max = 0").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit embedding_backlog_max = 0: must be at least 1"
        );
        let no_wait = Limits::from_toml_str("embedding_backlog_wait_ms = 0").unwrap();
        assert_eq!(no_wait.embedding_backlog_wait_ms, 0, "0 fails at once");
        let no_wait = Limits::from_toml_str("work_owner_wait_timeout_ms = 0").unwrap();
        assert_eq!(no_wait.work_owner_wait_timeout_ms, 0, "0 fails at once");
        let err = Limits::from_toml_str("blocking_threads_max = 1").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit blocking_threads_max = 1: must be at least 2 (a stdin reader holds one)"
        );
        assert_eq!(
            Limits::from_toml_str("blocking_threads_max = 2")
                .unwrap()
                .blocking_threads_max,
            2
        );
        let err = Limits::from_toml_str("work_finished_stored_max = 999").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit work_finished_stored_max = 999: must be at least work_completed_retained_max"
        );
        let fits = "work_finished_stored_max = 10\nwork_completed_retained_max = 10";
        assert_eq!(
            Limits::from_toml_str(fits)
                .unwrap()
                .work_finished_stored_max,
            10
        );
    }

    #[test]
    fn http_head_limits_are_checked() {
        let limits = Limits::default();
        assert_eq!(limits.http_header_read_timeout_ms, 10_000);
        assert_eq!(limits.http_header_bytes_max, 32 * 1024);
        assert_eq!(limits.http_headers_max, 100);
        let err = Limits::from_toml_str("http_header_bytes_max = 8191").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit http_header_bytes_max = 8191: must be at least 8192"
        );
        Limits::from_toml_str("http_header_bytes_max = 8192").unwrap();
        let err = Limits::from_toml_str("http_header_read_timeout_ms = 0").unwrap_err();
        assert!(err.to_string().contains("at least 1"), "{err}");
        let err = Limits::from_toml_str("http_headers_max = 0").unwrap_err();
        assert!(err.to_string().contains("http_headers_max"), "{err}");
    }

    #[test]
    fn mcp_messages_have_a_named_bounded_limit() {
        assert_eq!(Limits::default().mcp_message_bytes_max, 1 << 20);
        let limits = Limits::from_toml_str("mcp_message_bytes_max = 4096").unwrap();
        assert_eq!(limits.mcp_message_bytes_max, 4096);
        let err = Limits::from_toml_str("mcp_message_bytes_max = 4095").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid limit mcp_message_bytes_max = 4095: must be at least 4096 (an MCP initialize request must fit)"
        );
        let limits = Limits::default()
            .with_env_overrides(env(&[("MNEMOSYNE_MCP_MESSAGE_BYTES_MAX", "65536")]))
            .unwrap();
        assert_eq!(limits.mcp_message_bytes_max, 65_536);
    }

    #[test]
    fn env_overrides_named_limits_only() {
        let limits = Limits::default()
            .with_env_overrides(env(&[
                ("MNEMOSYNE_POOL_READERS_MAX", "8"),
                ("MNEMOSYNE_WORK_OWNER_WAIT_TIMEOUT_MS", "200"),
                ("MNEMOSYNE_DB", "/tmp/x.db"),
                ("HOME", "/root"),
            ]))
            .unwrap();
        assert_eq!(limits.pool_readers_max, 8);
        assert_eq!(limits.work_owner_wait_timeout_ms, 200);
        assert_eq!(limits.pool_wait_timeout_ms, 5_000);
    }

    #[test]
    fn env_rejects_non_numbers_naming_the_variable() {
        let err = Limits::default()
            .with_env_overrides(env(&[("MNEMOSYNE_WORK_ITEMS_MAX", "lots")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("MNEMOSYNE_WORK_ITEMS_MAX"),
            "{err}"
        );
        let err = Limits::default()
            .with_env_overrides(env(&[("MNEMOSYNE_WORK_ITEMS_MAX", "-1")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("MNEMOSYNE_WORK_ITEMS_MAX"),
            "{err}"
        );
        let err = Limits::default()
            .with_env_overrides(env(&[("MNEMOSYNE_RECALL_RESULTS_MAX", "5000")]))
            .unwrap_err();
        assert!(err.to_string().contains("at most 1000"), "{err}");
    }
}
