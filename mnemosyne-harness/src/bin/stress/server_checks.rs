//! Stress checks of the server and the context documents: start/stop
//! cycles of the HTTP server in one process, SSE subscribers that never
//! read, and a storm of concurrent CRDT edits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use mnemosyne_core::{Limits, Namespace};
use mnemosyne_diagnostics::ProcessStats;
use mnemosyne_harness::{Baseline, ensure};
use mnemosyne_ics::{Base, Change, DocumentStore, Edit, NewDocument, Splice};
use mnemosyne_server::{Event, HttpListener, Server};
use mnemosyne_storage::{Location, MemoryStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

use super::check_outcome::{Outcome, fail, sample_max};

/// Start/stop cycles of the HTTP server over one store.
const SERVER_CYCLES: usize = 2_000;
/// Cycles run before the fd and task baseline is taken (the runtime's
/// blocking threads and SQLite's one-time setup come first).
const SERVER_CYCLES_WARM: usize = 20;
/// SSE subscribers that never read a byte, all on one server.
const STALLED_SUBSCRIBERS: usize = 64;
/// Events pushed past them.
const EVENTS_PAST_STALLED: u64 = 200_000;
/// Resident growth the stalled subscribers may cause: their sockets' kernel
/// buffers are not counted in RSS, so this covers only the allocator's
/// noise, not a queue per subscriber (200 000 events would be ~30 MiB).
const STALLED_RSS_GROWTH_MAX_KIB: u64 = 8 * 1024;
/// Actors editing at once, documents they share, edits per actor.
const STORM_ACTORS: usize = 16;
const STORM_DOCS: usize = 6;
const STORM_EDITS_PER_ACTOR: usize = 150;

async fn open_store(dir: &tempfile::TempDir, limits: Limits) -> Result<MemoryStore, String> {
    MemoryStore::open(&Location::File(dir.path().join("server.db")), limits)
        .await
        .map_err(fail)
}

/// One request with `Connection: close`: the status code and the body.
async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(addr).await.map_err(fail)?;
    let text = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await.map_err(fail)?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.map_err(fail)?;
    let status = answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {answer:?}"))?;
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Opens `GET /v1/events`, reads the response head, and never reads again.
async fn stalled_subscriber(addr: SocketAddr) -> Result<TcpStream, String> {
    let mut stream = TcpStream::connect(addr).await.map_err(fail)?;
    stream
        .write_all(b"GET /v1/events HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .map_err(fail)?;
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    reader.read_line(&mut line).await.map_err(fail)?;
    ensure(line.starts_with("HTTP/1.1 200"), || {
        format!("GET /v1/events answered {line:?}")
    })?;
    Ok(reader.into_inner())
}

/// A server serving HTTP on 127.0.0.1 until `stop` is sent.
struct Running {
    server: Server,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    served: tokio::task::JoinHandle<Result<mnemosyne_server::ShutdownReport, String>>,
}

async fn start(store: &MemoryStore) -> Result<Running, String> {
    let server = Server::new(store.clone());
    server.open_work_queue().await.map_err(fail)?;
    let listener = HttpListener::bind("127.0.0.1:0".parse().map_err(fail)?, None)
        .await
        .map_err(fail)?;
    let addr = listener.local_addr();
    let (stop, stopped) = oneshot::channel::<()>();
    let serving = server.clone();
    let served = tokio::spawn(async move {
        serving
            .serve_http(listener, async {
                let _ = stopped.await;
            })
            .await
            .map_err(fail)
    });
    Ok(Running {
        server,
        addr,
        stop,
        served,
    })
}

impl Running {
    async fn stop(self) -> Result<(), String> {
        let _ = self.stop.send(());
        let report = self.served.await.map_err(fail)??;
        ensure(report.is_clean(), || {
            format!("shutdown not clean: {report:?}")
        })?;
        ensure(self.server.supervisor().alive() == 0, || {
            format!(
                "{} supervised tasks alive after shutdown",
                self.server.supervisor().alive()
            )
        })
    }
}

/// Thousands of HTTP server start/stop cycles over one store, each with a
/// stored memory and an SSE subscriber that never reads: every cycle shuts
/// down cleanly, every acknowledged memory is there, fds and tasks return.
pub async fn server_start_stop_cycles() -> Outcome {
    let dir = tempfile::tempdir().map_err(fail)?;
    let store = open_store(&dir, Limits::default()).await?;
    let mut before = Baseline::now();
    let mut acknowledged = 0u64;
    for cycle in 0..SERVER_CYCLES {
        if cycle == SERVER_CYCLES_WARM {
            before = Baseline::now();
        }
        let running = start(&store).await?;
        let stalled = stalled_subscriber(running.addr).await?;
        let (status, body) = request(
            running.addr,
            "POST",
            "/v1/memories",
            &format!(r#"{{"content":"cycle {cycle} of the start/stop stress"}}"#),
        )
        .await?;
        ensure(status == 201 || status == 200, || {
            format!("cycle {cycle}: POST /v1/memories answered {status}: {body}")
        })?;
        acknowledged += 1;
        running
            .stop()
            .await
            .map_err(|e| format!("cycle {cycle}: {e}"))?;
        drop(stalled);
    }
    let stored = store.storage().count_memories(true).await.map_err(fail)?;
    ensure(stored == acknowledged, || {
        format!("{acknowledged} memories acknowledged, {stored} stored")
    })?;
    if let Some(leak) = before.settle(mnemosyne_harness::SETTLE).await {
        return Err(format!(
            "from cycle {SERVER_CYCLES_WARM} to {SERVER_CYCLES}: {leak}"
        ));
    }
    let after = Baseline::now();
    store.storage().close().await;
    Ok(format!(
        "{SERVER_CYCLES} start / remember / stalled SSE / stop cycles: all clean, \
         {stored} memories stored, fds {} -> {}, tasks {} -> {}",
        before.fds, after.fds, before.tasks, after.tasks
    ))
}

/// SSE subscribers that never read, on one server, while events flood the
/// bus: the server holds no queue per subscriber (RSS stays flat), counts
/// what they missed, keeps its connection cap, and still shuts down.
pub async fn stalled_event_subscribers() -> Outcome {
    let dir = tempfile::tempdir().map_err(fail)?;
    let limits = Limits::default();
    let connections_max = limits.http_connections_max as usize;
    let store = open_store(&dir, limits).await?;
    let running = start(&store).await?;
    let events = running.server.events().clone();
    let watched = events.clone();
    let (max_subscribers, sampler) = sample_max(move || watched.subscribers());
    let mut stalled = Vec::new();
    for _ in 0..STALLED_SUBSCRIBERS {
        stalled.push(stalled_subscriber(running.addr).await?);
    }
    // Let every stream fill its socket once before measuring.
    for seq in 0..10_000 {
        events.publish(Event::Heartbeat {
            seq,
            tasks_alive: 0,
        });
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_before = ProcessStats::sample().rss_bytes.unwrap_or(0);
    for seq in 0..EVENTS_PAST_STALLED {
        events.publish(Event::Heartbeat {
            seq,
            tasks_alive: 0,
        });
        if seq % 1_000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let rss_after = ProcessStats::sample().rss_bytes.unwrap_or(0);
    let (status, _) = request(running.addr, "GET", "/health", "").await?;
    ensure(status == 200, || {
        format!("/health answered {status} with {STALLED_SUBSCRIBERS} stalled subscribers")
    })?;
    let lagged = events.lagged_total();
    running.stop().await?;
    sampler.abort();
    drop(stalled);
    let growth_kib = rss_after.saturating_sub(rss_before) / 1024;
    ensure(growth_kib <= STALLED_RSS_GROWTH_MAX_KIB, || {
        format!(
            "RSS grew {growth_kib} KiB while {EVENTS_PAST_STALLED} events passed \
             {STALLED_SUBSCRIBERS} stalled subscribers (max {STALLED_RSS_GROWTH_MAX_KIB})"
        )
    })?;
    let max_subscribers = max_subscribers.load(Ordering::Relaxed);
    ensure(max_subscribers <= connections_max, || {
        format!("{max_subscribers} subscribers, http_connections_max {connections_max}")
    })?;
    ensure(lagged > 0, || {
        "stalled subscribers were never told they lagged".to_owned()
    })?;
    store.storage().close().await;
    Ok(format!(
        "{EVENTS_PAST_STALLED} events past {STALLED_SUBSCRIBERS} SSE subscribers that never read: \
         RSS +{growth_kib} KiB, at most {max_subscribers} subscribers, \
         {lagged} events skipped and reported, clean shutdown"
    ))
}

/// Many actors splicing into a few shared documents at once, with few
/// documents kept open and frequent compaction: the open-document and
/// ops-since-compaction caps hold throughout, compactions happen, and every
/// acknowledged edit is in the text read back by a fresh store.
pub async fn crdt_edit_storm() -> Outcome {
    let dir = tempfile::tempdir().map_err(fail)?;
    let limits = Limits {
        doc_open_max: 3,
        crdt_compact_every_ops: 100,
        ..Limits::default()
    };
    let store = open_store(&dir, limits.clone()).await?;
    let storage = Arc::clone(store.storage());
    let docs = Arc::new(DocumentStore::new(storage.clone(), limits.clone()));
    let names: Vec<String> = (0..STORM_DOCS).map(|d| format!("storm-{d}")).collect();
    for name in &names {
        docs.create(NewDocument {
            name: name.clone(),
            namespace: Namespace::Global,
            title: String::new(),
            text: String::new(),
            actor: "setup".to_owned(),
        })
        .await
        .map_err(fail)?;
    }
    let watched = Arc::clone(&docs);
    let (max_open, open_sampler) = sample_max(move || watched.open_count());
    let watched = Arc::clone(&docs);
    let (max_ops, ops_sampler) =
        sample_max(move || watched.open_ops_since_compaction_max() as usize);
    let mut actors = tokio::task::JoinSet::new();
    for actor in 0..STORM_ACTORS {
        let docs = Arc::clone(&docs);
        let names = names.clone();
        actors.spawn(async move {
            let mut rng = StdRng::seed_from_u64(actor as u64);
            let mut acknowledged: Vec<(String, String)> = Vec::new();
            let mut refused = 0u32;
            for n in 0..STORM_EDITS_PER_ACTOR {
                let name = &names[rng.random_range(0..names.len())];
                let marker = format!("<a{actor}e{n}>");
                let edit = Edit {
                    actor: format!("agent-{actor}"),
                    base: Base::default(),
                    change: Change::Splices(vec![Splice {
                        pos: 0,
                        delete: 0,
                        insert: marker.clone(),
                    }]),
                };
                match docs.edit(name, edit).await {
                    Ok(_) => acknowledged.push((name.clone(), marker)),
                    // Too many concurrent savers of one document: refused
                    // whole, never half applied (checked below).
                    Err(mnemosyne_core::Error::DocumentConflict(_)) => refused += 1,
                    Err(e) => return Err(format!("agent-{actor} edit {n}: {e}")),
                }
            }
            Ok::<_, String>((acknowledged, refused))
        });
    }
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    let mut refused = 0;
    while let Some(joined) = actors.join_next().await {
        let (mine, mine_refused) = joined.map_err(fail)??;
        acknowledged.extend(mine);
        refused += mine_refused;
    }
    open_sampler.abort();
    ops_sampler.abort();
    let max_open = max_open.load(Ordering::Relaxed);
    let max_ops = max_ops.load(Ordering::Relaxed);
    ensure(max_open <= limits.doc_open_max as usize, || {
        format!(
            "{max_open} documents open, doc_open_max {}",
            limits.doc_open_max
        )
    })?;
    ensure(max_ops < limits.crdt_compact_every_ops as usize, || {
        format!(
            "{max_ops} ops since compaction, crdt_compact_every_ops {}",
            limits.crdt_compact_every_ops
        )
    })?;
    // A fresh store reads only what was committed.
    let fresh = DocumentStore::new(storage.clone(), limits.clone());
    let mut texts = HashMap::new();
    let mut epochs_max = 0;
    for name in &names {
        let view = fresh.read(name).await.map_err(fail)?;
        epochs_max = epochs_max.max(view.meta.epoch);
        texts.insert(name.clone(), view.text);
    }
    let missing: Vec<&(String, String)> = acknowledged
        .iter()
        .filter(|(name, marker)| !texts[name].contains(marker.as_str()))
        .collect();
    ensure(missing.is_empty(), || {
        format!(
            "{} acknowledged edits missing, first {:?}",
            missing.len(),
            missing.first()
        )
    })?;
    let markers_stored: usize = texts.values().map(|t| t.matches('<').count()).sum();
    ensure(markers_stored == acknowledged.len(), || {
        format!(
            "{markers_stored} edits stored, {} acknowledged (a refused edit was half applied?)",
            acknowledged.len()
        )
    })?;
    ensure(epochs_max > 1, || {
        "no document was ever compacted".to_owned()
    })?;
    store.storage().close().await;
    Ok(format!(
        "{STORM_ACTORS} actors x {STORM_EDITS_PER_ACTOR} splices into {STORM_DOCS} documents: \
         {} acknowledged and stored, {refused} refused as conflicts, at most {max_open} open \
         (cap {}), at most {max_ops} ops since compaction (cap {}), epochs up to {epochs_max}",
        acknowledged.len(),
        limits.doc_open_max,
        limits.crdt_compact_every_ops
    ))
}
