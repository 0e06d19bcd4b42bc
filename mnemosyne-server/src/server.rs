//! [`Server`]: what both front ends share (store, event bus, counters,
//! supervisor: its [`Core`]), the heartbeat, and the serve functions that
//! run a front end until a stop is asked and then stop every task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mnemosyne_core::Limits;
use mnemosyne_orchestration::{CancellationToken, ShutdownReport, Supervisor};
use mnemosyne_storage::MemoryStore;
use rmcp::ServiceExt;
use rmcp::transport::async_rw::AsyncRwTransport;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;

use mnemosyne_diagnostics::{MemoryTracker, Monitor, Thresholds};
use mnemosyne_ics::DocumentStore;
use mnemosyne_orchestration::WorkQueue;

use crate::docs::Docs;
use crate::error::ServerError;
use crate::events::{Event, EventBus};
use crate::gauges;
use crate::http;
use crate::http::access::{AccessPolicy, AllowLists};
use crate::http::bearer::BearerToken;
use crate::mcp::McpServer;
use crate::mcp_lines;
use crate::mcp_project::McpProject;
use crate::metrics::Metrics;
use crate::ops::Memories;
use crate::shared_core::Core;
use crate::work::Work;

/// Bytes each in-process pipe between the MCP line gate, rmcp and the
/// writer buffers; a full pipe makes its writer wait.
const MCP_PIPE_BYTES: usize = 64 * 1024;

/// The server: one store, one event bus, one supervisor owning every
/// background task, shared by the MCP and HTTP front ends.
#[derive(Clone, Debug)]
pub struct Server {
    core: Arc<Core>,
    supervisor: Arc<Supervisor>,
    /// The namespace of MCP calls that name none (see [`Server::with_mcp_project`]).
    mcp_project: Option<McpProject>,
}

impl Server {
    /// A server over `store`, with the store's limits (`events_capacity`,
    /// `shutdown_timeout_s`, `heartbeat_interval_s`, the HTTP limits).
    pub fn new(store: MemoryStore) -> Self {
        let limits = store.limits().clone();
        let supervisor = Arc::new(Supervisor::from_limits(&limits));
        let events = EventBus::new(limits.events_capacity as usize);
        let tracker = Arc::new(MemoryTracker::new());
        // The first source of a fresh tracker: cannot be refused.
        let _ = tracker.watch_storage(Arc::clone(store.storage()));
        let docs = DocumentStore::new(store.storage().clone(), limits.clone());
        let core = Arc::new(Core {
            work: Work::new(events.clone()),
            docs: Docs::new(docs, events.clone()),
            tracker,
            monitor: std::sync::OnceLock::new(),
            memories: Memories::new(store, events.clone()),
            events,
            metrics: Metrics::default(),
            limits,
            supervisor: Arc::downgrade(&supervisor),
            embedding_worker: std::sync::OnceLock::new(),
        });
        gauges::watch_documents_and_events(&core);
        Self {
            core,
            supervisor,
            mcp_project: None,
        }
    }

    /// MCP sessions of this server remember into `project.namespace` when a
    /// call names none, and recall from it and the namespaces it sees (a
    /// project sees `global`); their `diagnostics` show it and why. What
    /// `serve mcp` sets to the project it detects in its working directory;
    /// without it, memories go to `global` and recall searches every
    /// namespace, as over HTTP.
    #[must_use]
    pub fn with_mcp_project(mut self, project: McpProject) -> Self {
        self.mcp_project = Some(project);
        self
    }

    /// The memory operations (what the tools and routes call).
    pub fn memories(&self) -> &Memories {
        &self.core.memories
    }

    /// Opens the work queue of the store's database under this server's
    /// supervisor and serves it from now on. Call it only when this process
    /// owns the queue (see `mnemosyne_orchestration::QueueOwnership`).
    pub async fn open_work_queue(&self) -> Result<(), ServerError> {
        let storage = Arc::clone(self.core.memories.store().storage());
        let queue = WorkQueue::open(storage, &self.core.limits, &self.supervisor)
            .await
            .map_err(ServerError::WorkQueue)?;
        let _ = self.core.tracker.watch_work_queue(queue.clone());
        self.core.work.attach(queue);
        Ok(())
    }

    /// The work queue operations.
    pub fn work(&self) -> &Work {
        &self.core.work
    }

    /// The context document operations.
    pub fn docs(&self) -> &Docs {
        &self.core.docs
    }

    /// The gauges behind `/metrics`, `diagnostics` and the monitor; a
    /// caller may register more sources (the embedding cache, say).
    pub fn tracker(&self) -> &Arc<MemoryTracker> {
        &self.core.tracker
    }

    /// The event bus.
    pub fn events(&self) -> &EventBus {
        &self.core.events
    }

    /// The supervisor owning every background task of this server.
    pub fn supervisor(&self) -> &Supervisor {
        &self.supervisor
    }

    /// The request counters.
    pub fn metrics(&self) -> &Metrics {
        &self.core.metrics
    }

    /// The limits in force.
    pub fn limits(&self) -> &Limits {
        &self.core.limits
    }

    /// Starts the resource monitor (every `monitor_interval_s`) and a task
    /// that publishes its alerts as [`Event::Alert`]. The serve functions call it.
    pub fn start_monitor(&self) -> Result<(), ServerError> {
        if self.core.monitor.get().is_some() {
            return Ok(());
        }
        let limits = &self.core.limits;
        let monitor = Monitor::spawn(
            Arc::clone(&self.core.tracker),
            Thresholds::from_limits(limits),
            Duration::from_secs(limits.monitor_interval_s.max(1)),
            limits.events_capacity as usize,
            &self.supervisor,
        )?;
        let mut alerts = monitor.subscribe();
        let events = self.core.events.clone();
        self.supervisor
            .spawn("alert-forwarder", move |token| async move {
                loop {
                    let alert = tokio::select! {
                        _ = token.cancelled() => break,
                        alert = alerts.recv() => alert,
                    };
                    match alert {
                        Ok(alert) => events.publish(Event::Alert {
                            level: format!("{:?}", alert.level).to_lowercase(),
                            what: alert.what,
                            message: alert.message,
                        }),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            })?;
        let _ = self.core.monitor.set(monitor);
        Ok(())
    }

    /// Starts the `embedding-worker` task: from now on `remember` commits a
    /// memory without its vector and the worker embeds it (bounded by
    /// `embedding_backlog_max`; see `mnemosyne_storage::embedding_worker`),
    /// after first embedding the memories that have no vector at all. Its
    /// gauges join the tracker: the backlog against `embedding_backlog_max`,
    /// vectors stored and failed batches since start, and the memories still
    /// missing a vector. Nothing to do when the store has no embedder, or
    /// when another server's worker already runs for this store. The serve
    /// functions call it; it stops with the other tasks at shutdown.
    pub fn start_embedding_worker(&self) -> Result<(), ServerError> {
        if self.core.embedding_worker.get().is_some() {
            return Ok(());
        }
        let store = self.core.memories.store();
        if store.embedder().is_none() {
            let _ = self.core.embedding_worker.set(());
            return Ok(());
        }
        let worker = match store.start_embedding_worker() {
            Ok(worker) => worker,
            Err(error) => {
                tracing::warn!(%error, "this server embeds through the running worker");
                let _ = self.core.embedding_worker.set(());
                return Ok(());
            }
        };
        let backlog = worker.backlog();
        self.supervisor
            .spawn("embedding-worker", move |token| worker.run(token))?;
        let _ = self.core.embedding_worker.set(());
        let registered = gauges::watch_embedding_worker(&self.core.tracker, backlog);
        if let Err(error) = registered {
            tracing::warn!(%error, "embedding worker gauges not registered");
        }
        Ok(())
    }

    /// Starts the heartbeat task: an [`Event::Heartbeat`] every
    /// `heartbeat_interval_s` until shutdown. The serve functions call it.
    pub fn start_heartbeat(&self) -> Result<(), ServerError> {
        let interval = Duration::from_secs(self.core.limits.heartbeat_interval_s.max(1));
        let events = self.core.events.clone();
        let supervisor = Arc::downgrade(&self.supervisor);
        self.supervisor
            .spawn("heartbeat", move |token| async move {
                let start = tokio::time::Instant::now() + interval;
                let mut ticker = tokio::time::interval_at(start, interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut seq = 0u64;
                loop {
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    let tasks_alive = supervisor.upgrade().map_or(0, |s| s.alive());
                    events.publish(Event::Heartbeat { seq, tasks_alive });
                    tracing::trace!(seq, tasks_alive, "heartbeat");
                    seq += 1;
                }
            })?;
        Ok(())
    }

    /// Stops every background task within `shutdown_timeout_s` (then aborts
    /// and reports the rest). Idempotent.
    pub async fn shutdown(&self) -> ShutdownReport {
        let report = self.supervisor.shutdown().await;
        if !report.is_clean() {
            tracing::warn!(
                aborted = ?report.aborted,
                still_running = ?report.still_running,
                "some tasks did not stop in time"
            );
        }
        report
    }

    /// Serves MCP on `read`/`write` (stdin/stdout for `serve mcp`) until
    /// the client closes its side or `stop` completes, then shuts down.
    ///
    /// Every line gets an answer (see `mcp_lines`): a line longer than
    /// `mcp_message_bytes_max` is skipped unbuffered and answered with
    /// Invalid Request (-32600, with its id when its first bytes name one);
    /// text that is not UTF-8 JSON with Parse error (-32700, id null);
    /// well-formed JSON that is not a JSON-RPC message with Invalid Request
    /// (rmcp's answer, id null). The session goes on after each.
    pub async fn serve_mcp<R, W>(
        &self,
        read: R,
        write: W,
        stop: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ServerError>
    where
        R: AsyncRead + Send + Unpin + 'static,
        W: AsyncWrite + Send + Unpin + 'static,
    {
        self.start_embedding_worker()?;
        self.start_heartbeat()?;
        self.start_monitor()?;
        let line_max =
            usize::try_from(self.core.limits.mcp_message_bytes_max).unwrap_or(usize::MAX);
        // The gate feeds rmcp through one pipe, rmcp answers through another
        // to the single writer of `write`.
        let (to_rmcp, rmcp_reads) = tokio::io::duplex(MCP_PIPE_BYTES);
        let (rmcp_writes, from_rmcp) = tokio::io::duplex(MCP_PIPE_BYTES);
        let (answers, queued_answers) = tokio::sync::mpsc::channel(mcp_lines::ANSWERS_QUEUED_MAX);
        // The gate passes lines of at most `line_max` bytes plus their newline.
        let transport = AsyncRwTransport::new_server(rmcp_reads, rmcp_writes)
            .with_max_line_length(line_max.saturating_add(1));
        let handler = McpServer::new(Arc::clone(&self.core), self.mcp_project.clone());
        let ended = CancellationToken::new();
        let session_ended = ended.clone();
        self.supervisor
            .spawn("mcp-session", move |token| async move {
                let session_done = token.child_token();
                let session = async {
                    match handler.serve_with_ct(transport, token.clone()).await {
                        Ok(running) => match running.waiting().await {
                            Ok(reason) => tracing::info!(?reason, "mcp session ended"),
                            Err(error) => tracing::error!(%error, "mcp session failed"),
                        },
                        Err(error) => tracing::warn!(%error, "mcp session did not start"),
                    }
                    session_done.cancel();
                };
                let gate = async {
                    tokio::select! {
                        () = session_done.cancelled() => {}
                        read = mcp_lines::gate_lines(read, to_rmcp, answers, line_max) => {
                            if let Err(error) = read {
                                tracing::warn!(%error, "cannot read the mcp client");
                            }
                        }
                    }
                };
                let writer = async {
                    if let Err(error) =
                        mcp_lines::write_lines(from_rmcp, queued_answers, write).await
                    {
                        tracing::warn!(%error, "cannot write to the mcp client");
                    }
                };
                tokio::join!(session, gate, writer);
                session_ended.cancel();
            })?;
        tokio::select! {
            () = stop => tracing::info!("stop requested"),
            () = ended.cancelled() => tracing::info!("the mcp client closed the session"),
        }
        Ok(self.shutdown().await)
    }

    /// [`Server::serve_mcp`] on this process's stdin and stdout (through
    /// the reactor when they are pipes, as an MCP client starts a server).
    pub async fn serve_mcp_stdio(
        &self,
        stop: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ServerError> {
        let (read, write) = rmcp::transport::io::stdio_pipes();
        self.serve_mcp(read, write, stop).await
    }

    /// Serves the HTTP API on `listener` until `stop` completes, then
    /// shuts down: open connections finish their request, SSE streams end.
    pub async fn serve_http(
        &self,
        listener: HttpListener,
        stop: impl Future<Output = ()>,
    ) -> Result<ShutdownReport, ServerError> {
        self.start_embedding_worker()?;
        self.start_heartbeat()?;
        self.start_monitor()?;
        let policy = AccessPolicy::new(listener.addr, listener.allow);
        let router = http::router(
            Arc::clone(&self.core),
            listener.token,
            policy,
            self.supervisor.cancellation_token(),
        );
        let core = Arc::clone(&self.core);
        let addr = listener.addr;
        self.supervisor.spawn("http-accept", move |token| {
            http::accept_loop(core, listener.listener, router, token)
        })?;
        tracing::info!(%addr, "http api listening");
        stop.await;
        tracing::info!("stop requested");
        Ok(self.shutdown().await)
    }

    /// The HTTP API with every layer, as [`Server::serve_http`] serves it on
    /// `bound` without a token and with no allow-lists (requests must name
    /// `bound` or a loopback name as `Host`), to drive in-process (the fuzz
    /// targets call it with `tower::ServiceExt::oneshot`). Starts no task.
    pub fn http_router(&self, bound: std::net::SocketAddr) -> axum::Router {
        let lists = AllowLists::new(&[], &[]).expect("empty allow-lists are valid");
        http::router(
            Arc::clone(&self.core),
            None,
            AccessPolicy::new(bound, lists),
            self.supervisor.cancellation_token(),
        )
    }
}

/// A bound HTTP socket with the rules of its address checked.
#[derive(Debug)]
pub struct HttpListener {
    listener: TcpListener,
    addr: SocketAddr,
    token: Option<BearerToken>,
    allow: AllowLists,
}

impl HttpListener {
    /// Binds `addr`. A non-loopback address needs a `token`; with a token,
    /// every route but `/health` asks for it (`Authorization: Bearer ...`),
    /// whatever the address.
    pub async fn bind(addr: SocketAddr, token: Option<String>) -> Result<Self, ServerError> {
        let token = token.map(BearerToken::new).transpose()?;
        if token.is_none() && !addr.ip().is_loopback() {
            return Err(ServerError::TokenRequired { addr });
        }
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Bind { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Bind { addr, source })?;
        Ok(Self {
            listener,
            addr,
            token,
            allow: AllowLists::default(),
        })
    }

    /// Answers these `Host` values and origins besides its own (see
    /// [`AllowLists::new`]); by default only its own: loopback names and
    /// the bound address, with or without its port.
    pub fn with_allow_lists(mut self, allow: AllowLists) -> Self {
        self.allow = allow;
        self
    }

    /// The address bound (with the real port when port 0 was asked).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}
