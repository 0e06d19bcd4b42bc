//! `serve mcp` and `serve http`: open the store, run the server until a stop
//! (SIGINT, SIGTERM, or stdin closed for MCP), stop every task within
//! `shutdown_timeout_s`, close the store, exit 0.
//!
//! stdout is the MCP channel for `serve mcp`: nothing else writes there.

use std::net::SocketAddr;

use std::time::Duration;

use anyhow::{Context, Result};
use mnemosyne_diagnostics::Gauge;
use mnemosyne_orchestration::QueueOwnership;
use mnemosyne_server::{AllowLists, HttpListener, McpProject, Server, ShutdownReport};

use crate::cli::ServeCommand;
use crate::config::{SERVER_BIND_DEFAULT, Settings};

pub async fn run(command: ServeCommand, settings: &Settings) -> Result<()> {
    // Checked before the database is opened: a refused bind or a malformed
    // project file changes nothing.
    let mut mcp_project = None;
    let listener = match &command {
        ServeCommand::Mcp(args) => {
            let project = match &args.namespace {
                Some(namespace) => McpProject {
                    namespace: namespace.clone(),
                    reason: "given by --namespace".into(),
                },
                None => {
                    let cwd =
                        std::env::current_dir().context("cannot read the working directory")?;
                    let project = crate::project::detect(&cwd)?;
                    McpProject {
                        reason: project.reason(),
                        namespace: project.namespace,
                    }
                }
            };
            tracing::info!(namespace = %project.namespace, reason = %project.reason, "project");
            mcp_project = Some(project);
            None
        }
        ServeCommand::Http(args) => {
            let bind = match args.bind.or(settings.server.bind) {
                Some(bind) => bind,
                None => SERVER_BIND_DEFAULT.parse::<SocketAddr>()?,
            };
            let token = settings.server.token.as_ref().map(|t| t.0.clone());
            let server = &settings.server;
            let hosts = [server.http_allowed_hosts.as_slice(), &args.allowed_hosts].concat();
            let origins = [
                server.http_allowed_origins.as_slice(),
                &args.allowed_origins,
            ]
            .concat();
            let allow = AllowLists::new(&hosts, &origins)?;
            let fds = crate::fd_limit::raise_and_check(&settings.limits)?;
            tracing::debug!(fds, "open-file limit");
            Some(
                HttpListener::bind(bind, token)
                    .await?
                    .with_allow_lists(allow),
            )
        }
    };
    let embedder = super::store_session::embedder_parts(settings)?;
    // The local model loads before the database opens: a server that cannot
    // embed stops here, having touched nothing, and its first recall is fast.
    if let Some(minilm) = &embedder.minilm {
        minilm
            .preload()
            .await
            .context("cannot load the local embedding model")?;
    }
    let store = super::store_session::open_store_with_embedder(settings, &embedder).await?;
    let mut server = Server::new(store.clone());
    if let Some(project) = mcp_project {
        server = server.with_mcp_project(project);
    }
    let cache = embedder.cache.clone();
    server
        .tracker()
        .register("embedding_cache", move |gauges| {
            gauges.extend([
                Gauge::new(
                    "mnemosyne_embedding_cache_bytes",
                    "weight of the cached embedding vectors",
                    cache.weighted_bytes(),
                )
                .with_cap(cache.capacity_bytes()),
                Gauge::new(
                    "mnemosyne_embedding_cache_entries",
                    "embedding vectors cached",
                    cache.entries(),
                ),
            ]);
        })?;
    if let Some(minilm) = &embedder.minilm {
        let stats = minilm.stats();
        server
            .tracker()
            .register("embedding_model", move |gauges| {
                gauges.extend([
                    Gauge::new(
                        "mnemosyne_embedding_texts_total",
                        "texts the local model embedded since start",
                        stats.texts_embedded(),
                    ),
                    Gauge::new(
                        "mnemosyne_embedding_truncated_total",
                        "texts longer than embedding_tokens_max, embedded from their first tokens",
                        stats.texts_truncated(),
                    ),
                    Gauge::new(
                        "mnemosyne_embedding_model_load_ms",
                        "milliseconds the local model took to load",
                        stats.load_ms(),
                    ),
                ]);
            })?;
    }
    // A second server on the same database serves memories and documents,
    // and says who owns the queue when asked for work. A server asks once:
    // waiting would only delay the memories.
    let owner = match QueueOwnership::acquire(super::work::queue_database(settings), Duration::ZERO)
        .await
    {
        Ok(QueueOwnership::Owned(owner)) => Some(owner),
        Ok(QueueOwnership::OwnedByOther(other)) => {
            tracing::warn!(error = %other, "serving without the work queue");
            server.work().set_unavailable(other.to_string());
            None
        }
        Err(error) => {
            tracing::warn!(%error, "serving without the work queue");
            server.work().set_unavailable(error.to_string());
            None
        }
    };
    if owner.is_some() {
        server
            .open_work_queue()
            .await
            .context("cannot open the work queue")?;
    }
    let stop = stop_signal();
    let result = match listener {
        None => server.serve_mcp_stdio(stop).await,
        Some(listener) => {
            // The one line a script (or a test) waits for; on stderr, like every log.
            eprintln!(
                "mnemosyne: http api listening on http://{}",
                listener.local_addr()
            );
            server.serve_http(listener, stop).await
        }
    };
    store.close().await;
    drop(owner);
    let report: ShutdownReport = result.context("server failed")?;
    tracing::info!(
        stopped = report.stopped_in_time,
        aborted = report.aborted.len(),
        "server stopped"
    );
    Ok(())
}

/// Watches SIGINT (Ctrl-C) and SIGTERM from this call on, and completes on
/// either. The handlers are installed here, before the server answers
/// anyone: installed when the future is first polled, a SIGTERM sent right
/// after a client's first answer could still find the default action and
/// kill the process (seen under load).
#[cfg(unix)]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let watched = signal(SignalKind::terminate())
        .and_then(|term| signal(SignalKind::interrupt()).map(|interrupt| (term, interrupt)));
    async move {
        match watched {
            Ok((mut term, mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = interrupt.recv() => {}
                }
            }
            Err(error) => {
                tracing::warn!(%error, "cannot watch SIGTERM; stopping on Ctrl-C only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Completes on Ctrl-C.
#[cfg(not(unix))]
fn stop_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
