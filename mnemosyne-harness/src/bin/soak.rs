//! `cargo xtask soak [--duration D]`: starts the real `mnemosyne serve http`
//! on a preloaded database, drives a seeded mixed workload at a steady rate
//! (remember, forget, recall, list, work submit/claim/complete, document
//! writes, SSE subscribers that read and that never read, connection churn),
//! samples the server every few
//! seconds, and judges the run (see `mnemosyne_harness::soak`). Then runs the
//! same workload under a memory limit to show the server does not die.
//! Writes `soak-report.json` and `soak-report.svg` into the directory it
//! prints; exits 1 if any criterion failed.

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use mnemosyne_core::Embedder;
use mnemosyne_core::Limits;
use mnemosyne_core::workload::Workload;
use mnemosyne_embed::{EmbedderConfig, build_embedder};
use mnemosyne_harness::soak::{Sample, Verdict, judge, svg};
use mnemosyne_storage::{Location, MemoryStore};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

/// Seed of the workload, the same in every run.
const SEED: u64 = 42;
/// Requests in flight at once, at most.
const IN_FLIGHT_MAX: usize = 16;
/// Idle keep-alive connections the main client keeps.
const IDLE_CONNECTIONS_MAX: usize = 8;
/// SSE subscribers that read every event (and reconnect now and then).
const READING_SUBSCRIBERS: usize = 4;
/// SSE subscribers that connect and never read a byte.
const STALLED_SUBSCRIBERS: usize = 2;
/// Every this many requests uses a new connection (connection churn).
const CHURN_EVERY: u64 = 10;
/// The warm-up lasts at least `--warm-up`, then until the embedding cache
/// holds this share of its byte cap (a cache still filling looks like a leak)...
const CACHE_FULL_SHARE: f64 = 0.95;
/// ...but at most this many times `--warm-up`.
const WARM_UP_STRETCH_MAX: f64 = 4.0;
/// Time the server gets to stop after SIGTERM before it counts as hung.
const STOP_GRACE_S: u64 = 40;
/// Memories the workload itself remembered that it keeps; past this many
/// each remember forgets (hard) the oldest, so the store holds a steady
/// number of memories (`--grow-store` keeps them all).
const STORE_WINDOW: usize = 1_000;
/// Remembers a second the workload sends at most (`--remember-rate`); a
/// remember drawn past it becomes a recall. Every remember is embedded by
/// the server's worker with the local model, which takes 100 to 300 ms a
/// workload memory on one core (130 tokens on average), and under the rest
/// of the workload a debug server's worker embedded about 3 a second: at 4
/// the backlog grew until `embedding_backlog_max` (covered by its own
/// tests) would stop `remember`. 2 a second is 7 200 memories an hour, far
/// more than agents write, and what the soak judges: a worker that keeps up.
const REMEMBERS_PER_S_MAX: f64 = 2.0;
/// Context documents the workload rewrites, and lines in each.
const DOCS: usize = 4;
const DOC_LINES: usize = 40;

#[derive(Clone, Debug, Serialize)]
struct Config {
    duration_s: f64,
    rate_per_s: u32,
    /// Remembers a second, at most (within `rate_per_s`).
    remembers_per_s: f64,
    memories: u32,
    /// How the preloaded memories get their vectors.
    preload_vectors: PreloadVectors,
    sample_interval_s: f64,
    seed: u64,
    binary: PathBuf,
    memory_limit_run_s: f64,
    memory_limit_mib: u64,
    warm_up_s: f64,
    /// Limits given to the server (`--limit NAME=VALUE`, as `MNEMOSYNE_<NAME>`).
    server_limits: Vec<(String, String)>,
    /// Memories of the workload kept before it forgets the oldest; `None`:
    /// it forgets nothing and the store grows (`--grow-store`).
    store_window: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Phase {
    name: String,
    limit: Option<String>,
    /// How long the workload ran before sampling started, seconds.
    warm_up_s: f64,
    samples: Vec<Sample>,
    verdict: Verdict,
}

#[derive(Debug, Serialize)]
struct ReportFile {
    started_at: String,
    config: Config,
    phases: Vec<Phase>,
    passed: bool,
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("soak: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// `text` as seconds: a number with unit s (or none), m, min or h.
fn parse_seconds(text: &str) -> Result<f64> {
    let text = text.trim();
    let (number, unit) = text.split_at(
        text.find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(text.len()),
    );
    let value: f64 = number
        .parse()
        .with_context(|| format!("bad duration {text:?}"))?;
    Ok(match unit {
        "" | "s" => value,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => bail!("bad duration unit {other:?} in {text:?}; use s, m or h"),
    })
}

fn parse_duration(text: &str) -> Result<f64> {
    let seconds = parse_seconds(text)?;
    if seconds < 10.0 {
        bail!("a soak needs at least 10 s, got {text:?}");
    }
    Ok(seconds)
}

/// A sampling interval: a duration of 0.1 s to 10 minutes.
fn parse_interval(text: &str) -> Result<f64> {
    let seconds = parse_seconds(text).context("--sample-interval")?;
    if !(0.1..=600.0).contains(&seconds) {
        bail!("--sample-interval must be 0.1 s to 10 minutes, got {text:?}");
    }
    Ok(seconds)
}

fn run() -> Result<bool> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut duration_s = 60.0;
    let mut out: Option<PathBuf> = None;
    let mut rate_per_s = 200;
    let mut remembers_per_s = REMEMBERS_PER_S_MAX;
    let mut memories = 10_000;
    let mut preload_vectors = PreloadVectors::Each;
    let mut binary: Option<PathBuf> = None;
    let mut memory_limit_mib = 512;
    let mut limit_run = true;
    let mut warm_up_s: Option<f64> = None;
    let mut server_limits = Vec::new();
    let mut store_window = Some(STORE_WINDOW);
    let mut sample_interval_s: Option<f64> = None;
    let mut rest = args.iter();
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--duration" => duration_s = parse_duration(value()?)?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "--rate" => rate_per_s = value()?.parse().context("--rate")?,
            "--remember-rate" => {
                remembers_per_s = value()?.parse().context("--remember-rate")?;
                if !(remembers_per_s >= 0.0 && remembers_per_s.is_finite()) {
                    bail!("--remember-rate must be a number of remembers a second, 0 or more");
                }
            }
            "--memories" => memories = value()?.parse().context("--memories")?,
            "--preload-without-vectors" => preload_vectors = PreloadVectors::None,
            "--preload-distinct-vectors" => {
                let distinct: usize = value()?.parse().context("--preload-distinct-vectors")?;
                if distinct == 0 {
                    bail!("--preload-distinct-vectors needs at least 1 text to embed");
                }
                preload_vectors = PreloadVectors::Recycled { distinct };
            }
            "--bin" => binary = Some(PathBuf::from(value()?)),
            "--memory-limit-mib" => {
                memory_limit_mib = value()?.parse().context("--memory-limit-mib")?
            }
            "--no-memory-limit-run" => limit_run = false,
            "--warm-up" => warm_up_s = Some(parse_duration(value()?)?),
            "--limit" => server_limits.push(parse_limit(value()?)?),
            "--grow-store" => store_window = None,
            "--sample-interval" => {
                let seconds = parse_interval(value()?)?;
                sample_interval_s = Some(seconds);
            }
            other => bail!(
                "unknown argument {other:?}; usage: soak [--duration 60s|30m|24h] [--out DIR] [--rate OPS_PER_S] \
                 [--remember-rate PER_S] [--memories N] [--preload-without-vectors | --preload-distinct-vectors N] [--bin PATH] [--memory-limit-mib N] [--no-memory-limit-run] [--warm-up 60s] \
                 [--limit NAME=VALUE]... [--grow-store] [--sample-interval 5s]"
            ),
        }
    }
    // Bounded caches (embeddings, SQLite pages) fill first: the run starts
    // once they had time to, then its first 20% is discarded as well.
    let warm_up_s = warm_up_s.unwrap_or((duration_s / 2.0).clamp(10.0, 120.0));
    let binary = match binary {
        Some(path) => path,
        None => std::env::current_exe()?.with_file_name("mnemosyne"),
    };
    if !binary.exists() {
        bail!(
            "no server binary at {} (build mnemosyne-cli first, or pass --bin)",
            binary.display()
        );
    }
    let out = out.unwrap_or_else(|| {
        PathBuf::from(format!(
            "target/soak-{}",
            Utc::now().format("%Y%m%d-%H%M%S")
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let config = Config {
        duration_s,
        rate_per_s,
        remembers_per_s,
        memories,
        preload_vectors,
        // At least 1 s: a one-minute run gets ~5 samples in each of the
        // 10 spans its RSS floor is taken from; a 2-hour one (5 s) ~115,
        // so each span's floor is near its true lowest point.
        sample_interval_s: sample_interval_s.unwrap_or((duration_s / 1_440.0).clamp(1.0, 30.0)),
        seed: SEED,
        binary,
        memory_limit_run_s: if limit_run {
            (duration_s / 4.0).clamp(20.0, 600.0)
        } else {
            0.0
        },
        memory_limit_mib,
        warm_up_s,
        server_limits,
        store_window,
    };
    println!("soak: writing into {}", out.display());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started_at = Utc::now().to_rfc3339();
    let phases = runtime.block_on(soak(&config, &out))?;
    let passed = phases.iter().all(|p| p.verdict.passed);
    for phase in &phases {
        for c in &phase.verdict.criteria {
            println!(
                "{}  {}/{}: {}",
                match (c.passed, c.skipped) {
                    (_, true) => "skip",
                    (true, false) => "ok  ",
                    (false, false) => "FAIL",
                },
                phase.name,
                c.name,
                c.detail
            );
        }
    }
    let main_samples = &phases[0].samples;
    std::fs::write(
        out.join("soak-report.svg"),
        svg(main_samples, config.duration_s),
    )?;
    let report = ReportFile {
        started_at,
        config,
        phases,
        passed,
    };
    std::fs::write(
        out.join("soak-report.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!(
        "soak: {} ({}/soak-report.json, {}/soak-report.svg)",
        if passed { "passed" } else { "FAILED" },
        out.display(),
        out.display()
    );
    Ok(passed)
}

async fn soak(config: &Config, out: &Path) -> Result<Vec<Phase>> {
    let db = out.join("soak.db");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    preload(&db, config.memories, config.preload_vectors).await?;
    let mut phases = vec![phase("steady", config, out, &db, config.duration_s, None).await?];
    if config.memory_limit_run_s > 0.0 {
        let limit = memory_limiter(config.memory_limit_mib);
        phases.push(
            phase(
                "memory_limited",
                config,
                out,
                &db,
                config.memory_limit_run_s,
                Some(limit),
            )
            .await?,
        );
    }
    Ok(phases)
}

/// How the preload gives its memories their vectors.
#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "snake_case")]
enum PreloadVectors {
    /// Each memory's own vector, from the model: 100k memories take about
    /// 35 minutes on both cores of this machine.
    Each,
    /// Real vectors of the model, made for the first `distinct` memories and
    /// given in turn to the others (`--preload-distinct-vectors N`). Each
    /// memory holds a vector of the right model and size, so the store, its
    /// vector index and a recall cost what they cost with their own; only the
    /// ranking is meaningless, which the soak does not judge.
    Recycled { distinct: usize },
    /// None (`--preload-without-vectors`): the server's embedding worker
    /// embeds them during the run, alternating them with what the workload
    /// remembers, and is busy for the whole run.
    None,
}

/// Writes `count` memories of the standard workload, with vectors as
/// `vectors` says.
async fn preload(db: &Path, count: u32, vectors: PreloadVectors) -> Result<()> {
    let limits = Limits::default();
    let mut store = MemoryStore::open(&Location::File(db.to_owned()), limits.clone()).await?;
    match vectors {
        PreloadVectors::Each => {
            store = store.with_embedder(build_embedder(&EmbedderConfig::default(), &limits)?);
        }
        PreloadVectors::Recycled { distinct } => {
            let model = build_embedder(&EmbedderConfig::default(), &limits)?;
            store = store.with_embedder(Arc::new(RecycledVectors::new(model, distinct)));
        }
        PreloadVectors::None => {}
    }
    let mut workload = Workload::new(SEED);
    let now = Utc::now();
    let started = Instant::now();
    let mut written = 0u32;
    while written < count {
        let batch: Vec<_> = (0..(count - written).min(limits.import_batch_rows))
            .map(|_| {
                let mut memory = workload.memory(now);
                memory.links.clear();
                memory
            })
            .collect();
        written += batch.len() as u32;
        store
            .import_batch(&batch, mnemosyne_core::OnConflict::Fail)
            .await?;
    }
    store.close().await;
    println!(
        "soak: preloaded {count} memories {} in {:.1} s",
        match vectors {
            PreloadVectors::Each => "with their vectors".to_owned(),
            PreloadVectors::Recycled { distinct } =>
                format!("with {distinct} distinct vectors of the model, given in turn"),
            PreloadVectors::None => "without vectors".to_owned(),
        },
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// An embedder for the preload that asks `model` for the vectors of the
/// first `distinct` texts it is given, and answers every later text with a
/// copy of one of those, in turn.
#[derive(Debug)]
struct RecycledVectors {
    model: Arc<dyn Embedder>,
    distinct: usize,
    made: Mutex<Vec<Vec<f32>>>,
    next: AtomicU64,
}

impl RecycledVectors {
    fn new(model: Arc<dyn Embedder>, distinct: usize) -> Self {
        Self {
            model,
            distinct,
            made: Mutex::new(Vec::with_capacity(distinct)),
            next: AtomicU64::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Embedder for RecycledVectors {
    fn model_id(&self) -> &str {
        self.model.model_id()
    }

    fn dims(&self) -> usize {
        self.model.dims()
    }

    async fn embed(&self, texts: &[&str]) -> mnemosyne_core::Result<Vec<Vec<f32>>> {
        let made_count = self.made.lock().expect("made vectors").len();
        if made_count < self.distinct {
            let vectors = self.model.embed_for_storage(texts).await?;
            let mut made = self.made.lock().expect("made vectors");
            let room = self.distinct.saturating_sub(made.len());
            made.extend(vectors.iter().take(room).cloned());
            return Ok(vectors);
        }
        let made = self.made.lock().expect("made vectors");
        Ok(texts
            .iter()
            .map(|_| {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) as usize % made.len();
                made[turn].clone()
            })
            .collect())
    }
}

/// How to wrap the server in a memory limit: a systemd scope when systemd
/// runs here, else an address-space limit with prlimit.
fn memory_limiter(mib: u64) -> Vec<String> {
    let systemd = Command::new("systemd-run")
        .args([
            "--user",
            "--scope",
            "--quiet",
            "-p",
            "MemoryMax=64M",
            "true",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if systemd {
        vec![
            "systemd-run".into(),
            "--user".into(),
            "--scope".into(),
            "--quiet".into(),
            "-p".into(),
            format!("MemoryMax={mib}M"),
            "--".into(),
        ]
    } else {
        // Address space, not RSS: it must cover thread stacks and the
        // allocator's reservations, so it is the RSS budget times 6.
        vec![
            "prlimit".into(),
            format!("--as={}", mib * 6 * 1024 * 1024),
            "--".into(),
        ]
    }
}

struct Counters {
    ok: AtomicU64,
    overloaded: AtomicU64,
    failed: AtomicU64,
    sent: AtomicU64,
    events_read: AtomicU64,
}

async fn phase(
    name: &str,
    config: &Config,
    out: &Path,
    db: &Path,
    duration_s: f64,
    limiter: Option<Vec<String>>,
) -> Result<Phase> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let log = std::fs::File::create(out.join(format!("server-{name}.log")))?;
    let mut command = match &limiter {
        Some(wrapper) => {
            let mut command = Command::new(&wrapper[0]);
            command.args(&wrapper[1..]).arg(&config.binary);
            command
        }
        None => Command::new(&config.binary),
    };
    command
        .arg("--db")
        .arg(db)
        .args(["serve", "http", "--bind", &format!("127.0.0.1:{port}")])
        .envs(config.server_limits.iter().map(|(name, value)| {
            (
                format!("{}{}", mnemosyne_core::ENV_PREFIX, name.to_uppercase()),
                value,
            )
        }))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start {}", config.binary.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
        .build()?;
    wait_healthy(&client, &base, &mut child).await?;
    let pid = server_pid(&child)?;
    println!(
        "soak: phase {name}: server pid {pid} on {base} for {duration_s:.0} s{}",
        limiter
            .as_ref()
            .map(|l| format!(" under `{}`", l.join(" ")))
            .unwrap_or_default()
    );

    let counters = Arc::new(Counters {
        ok: AtomicU64::new(0),
        overloaded: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        events_read: AtomicU64::new(0),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for i in 0..READING_SUBSCRIBERS {
        tasks.push(tokio::spawn(read_events(
            port,
            Arc::clone(&counters),
            Arc::clone(&stop),
            i,
        )));
    }
    let mut stalled = Vec::new();
    for _ in 0..STALLED_SUBSCRIBERS {
        stalled.push(stalled_subscriber(port).await?);
    }
    tasks.push(tokio::spawn(drive(
        base.clone(),
        client.clone(),
        config.clone(),
        Arc::clone(&counters),
        Arc::clone(&stop),
    )));

    // Warm-up: the workload runs, nothing is sampled.
    let warm_started = Instant::now();
    let warm_min = Duration::from_secs_f64(config.warm_up_s);
    let warm_max = warm_min.mul_f64(WARM_UP_STRETCH_MAX);
    let cache_share = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if let Some(status) = child.try_wait()? {
            stop.store(true, Ordering::Relaxed);
            bail!("the server died during the warm-up of phase {name}: {status}");
        }
        let elapsed = warm_started.elapsed();
        if elapsed < warm_min {
            continue;
        }
        let share = cache_fill_share(&client, &base).await;
        if share >= CACHE_FULL_SHARE || elapsed >= warm_max {
            break share;
        }
    };
    let warm_up_s = warm_started.elapsed().as_secs_f64();
    println!(
        "soak: phase {name}: warmed up for {warm_up_s:.0} s (embedding cache {:.0}% of its cap)",
        cache_share * 100.0
    );
    let started = Instant::now();
    let mut samples = Vec::new();
    let interval = Duration::from_secs_f64(config.sample_interval_s.min(duration_s / 10.0));
    while started.elapsed().as_secs_f64() < duration_s {
        tokio::time::sleep(interval).await;
        if let Some(status) = child.try_wait()? {
            stop.store(true, Ordering::Relaxed);
            bail!("the server died during phase {name}: {status} (see server-{name}.log)");
        }
        samples.push(
            sample(
                &client,
                &base,
                pid,
                db,
                started.elapsed().as_secs_f64(),
                &counters,
            )
            .await,
        );
    }
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    drop(stalled);
    let exit = stop_server(&mut child, pid).await;
    let verdict = judge(&samples, duration_s, exit);
    let mib = |bytes: u64| bytes as f64 / f64::from(1u32 << 20);
    let (first, last) = (samples.first(), samples.last());
    println!(
        "soak: phase {name}: {} requests answered, {} events read by subscribers; \
         database {:.1} -> {:.1} MiB, finished work items stored {} -> {}",
        counters.ok.load(Ordering::Relaxed),
        counters.events_read.load(Ordering::Relaxed),
        mib(first.map_or(0, |s| s.db_bytes)),
        mib(last.map_or(0, |s| s.db_bytes)),
        first.map_or(0, |s| s.work_finished_stored),
        last.map_or(0, |s| s.work_finished_stored),
    );
    Ok(Phase {
        name: name.into(),
        limit: limiter.map(|l| l.join(" ")),
        warm_up_s,
        samples,
        verdict,
    })
}

async fn wait_healthy(client: &reqwest::Client, base: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited at start: {status}");
        }
        if let Ok(response) = client.get(format!("{base}/health")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the server did not answer /health within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's pid: the child itself, or (under a wrapper that execs) the
/// same pid; systemd-run --scope and prlimit both exec the command.
fn server_pid(child: &Child) -> Result<u32> {
    Ok(child.id())
}

async fn stop_server(child: &mut Child, pid: u32) -> Result<(), String> {
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(STOP_GRACE_S);
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("server exited with {status} after SIGTERM")),
            Ok(None) if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "server still running {STOP_GRACE_S} s after SIGTERM; killed"
                ));
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => return Err(format!("cannot wait for the server: {e}")),
        }
    }
}

/// Sends the mixed workload at `rate_per_s` (at most `remembers_per_s`
/// of it remembers) until `stop`.
async fn drive(
    base: String,
    client: reqwest::Client,
    config: Config,
    counters: Arc<Counters>,
    stop: Arc<AtomicBool>,
) {
    let Config {
        rate_per_s,
        remembers_per_s,
        memories: preloaded,
        store_window,
        ..
    } = config;
    // Replay the preload so queries are drawn from stored memories and new
    // remembers continue the same sequence.
    let mut workload = Workload::new(SEED);
    let now = Utc::now();
    for _ in 0..preloaded.max(1) {
        workload.memory(now);
    }
    let mut rng = StdRng::seed_from_u64(SEED + 2);
    let in_flight = Arc::new(Semaphore::new(IN_FLIGHT_MAX));
    let remembered = Arc::new(Remembered {
        ids: Mutex::new(VecDeque::new()),
        window: store_window,
    });
    let mut docs: Vec<Vec<String>> = (0..DOCS)
        .map(|doc| {
            (0..DOC_LINES)
                .map(|line| format!("doc {doc} line {line}: first draft"))
                .collect()
        })
        .collect();
    // Create the documents first: concurrent first writes would race to create.
    for (doc, lines) in docs.iter().enumerate() {
        let body = serde_json::json!({"text": lines.join("\n"), "actor": "soak-agent-0"});
        if let Err(Failure::Failed(message)) = Op::DocWrite(format!("soak-doc-{doc}"), body)
            .send(&client, &base)
            .await
        {
            eprintln!("soak: request failed: {message}");
            counters.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut ticks =
        tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate_per_s.max(1))));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sequence = 0u64;
    // A token bucket of remembers: refilled at `remembers_per_s`, holding at
    // most one second's worth, so a slow spell is not made up in a burst.
    let mut remember_tokens = 0.0f64;
    let mut refilled_at = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        ticks.tick().await;
        let now = Instant::now();
        remember_tokens = (remember_tokens
            + remembers_per_s * now.duration_since(refilled_at).as_secs_f64())
        .min(remembers_per_s.max(1.0));
        refilled_at = now;
        let Ok(permit) = Arc::clone(&in_flight).try_acquire_owned() else {
            continue; // the server is behind: skip rather than pile up
        };
        sequence += 1;
        let client = if sequence.is_multiple_of(CHURN_EVERY) {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(0)
                .build()
                .unwrap_or_else(|_| client.clone())
        } else {
            client.clone()
        };
        let roll: f64 = rng.random();
        let op = if roll < 0.30 && remember_tokens >= 1.0 {
            remember_tokens -= 1.0;
            let memory = workload.memory(Utc::now());
            Op::Remember(
                serde_json::json!({
                    "content": memory.content,
                    "namespace": memory.namespace.to_string(),
                    "tags": memory.tags,
                    "importance": memory.importance.get(),
                }),
                Arc::clone(&remembered),
            )
        } else if roll < 0.78 {
            Op::Recall(serde_json::json!({"query": workload.query().text, "limit": 10}))
        } else if roll < 0.83 {
            Op::List
        } else if roll < 0.86 {
            let doc = (sequence as usize) % DOCS;
            let line = rng.random_range(0..DOC_LINES);
            docs[doc][line] = format!("doc {doc} line {line}: revision {sequence}");
            Op::DocWrite(
                format!("soak-doc-{doc}"),
                serde_json::json!({
                    "text": docs[doc].join("\n"),
                    "actor": format!("soak-agent-{}", sequence % 8),
                }),
            )
        } else {
            Op::Work(sequence)
        };
        let base = base.clone();
        let counters = Arc::clone(&counters);
        tokio::spawn(async move {
            let _permit = permit;
            let outcome = op.send(&client, &base).await;
            counters.sent.fetch_add(1, Ordering::Relaxed);
            match outcome {
                Ok(()) => counters.ok.fetch_add(1, Ordering::Relaxed),
                Err(Failure::Overloaded) => counters.overloaded.fetch_add(1, Ordering::Relaxed),
                Err(Failure::Failed(message)) => {
                    if counters.failed.fetch_add(1, Ordering::Relaxed) < 5 {
                        eprintln!("soak: request failed: {message}");
                    }
                    0
                }
            };
        });
    }
    // Let the requests in flight finish.
    let _ = in_flight.acquire_many(IN_FLIGHT_MAX as u32).await;
}

/// Ids of the memories the workload remembered, oldest first, and how many
/// it keeps (`None`: all).
struct Remembered {
    ids: Mutex<VecDeque<String>>,
    window: Option<usize>,
}

impl Remembered {
    /// Records a new id; returns the oldest one when over the window.
    fn push(&self, id: String) -> Option<String> {
        let window = self.window?;
        let mut ids = self.ids.lock().unwrap_or_else(|e| e.into_inner());
        ids.push_back(id);
        if ids.len() > window {
            ids.pop_front()
        } else {
            None
        }
    }
}

enum Op {
    Remember(serde_json::Value, Arc<Remembered>),
    Recall(serde_json::Value),
    List,
    DocWrite(String, serde_json::Value),
    Work(u64),
}

enum Failure {
    Overloaded,
    Failed(String),
}

async fn call(request: reqwest::RequestBuilder, what: &str) -> Result<serde_json::Value, Failure> {
    let response = request
        .send()
        .await
        .map_err(|e| Failure::Failed(format!("{what}: {e}")))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| Failure::Failed(format!("{what}: {e}")))?;
    if status.as_u16() == 503 || status.as_u16() == 429 {
        return Err(Failure::Overloaded);
    }
    if !status.is_success() {
        return Err(Failure::Failed(format!(
            "{what}: {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    if body.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    serde_json::from_slice(&body).map_err(|e| Failure::Failed(format!("{what}: bad JSON: {e}")))
}

impl Op {
    async fn send(self, client: &reqwest::Client, base: &str) -> Result<(), Failure> {
        let json = |url: String, body: &serde_json::Value| {
            client
                .post(url)
                .header("content-type", "application/json")
                .body(body.to_string())
        };
        match self {
            Op::Remember(body, remembered) => {
                let memory = call(json(format!("{base}/v1/memories"), &body), "remember").await?;
                let id = memory["id"]
                    .as_str()
                    .ok_or_else(|| Failure::Failed(format!("remember: no id in {memory}")))?;
                if let Some(oldest) = remembered.push(id.to_owned()) {
                    call(
                        client.delete(format!("{base}/v1/memories/{oldest}?hard=true")),
                        "forget",
                    )
                    .await?;
                }
            }
            Op::Recall(body) => {
                call(json(format!("{base}/v1/recall"), &body), "recall").await?;
            }
            Op::List => {
                call(client.get(format!("{base}/v1/memories?limit=20")), "list").await?;
            }
            Op::DocWrite(name, body) => {
                let request = client
                    .put(format!("{base}/v1/docs/{name}"))
                    .header("content-type", "application/json")
                    .body(body.to_string());
                call(request, "doc write").await?;
            }
            Op::Work(n) => {
                let agent = format!("soak-agent-{}", n % 8);
                let body = serde_json::json!({"description": format!("soak job {n}")});
                call(json(format!("{base}/v1/work/items"), &body), "work submit").await?;
                let claimed = call(
                    json(
                        format!("{base}/v1/work/claim"),
                        &serde_json::json!({"agent": agent}),
                    ),
                    "work claim",
                )
                .await?;
                if let Some(id) = claimed["item"]["id"].as_str() {
                    let done = serde_json::json!({"agent": agent});
                    call(
                        json(format!("{base}/v1/work/items/{id}/complete"), &done),
                        "work complete",
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// An SSE subscriber that reads everything and reconnects every 10 s.
async fn read_events(port: u16, counters: Arc<Counters>, stop: Arc<AtomicBool>, index: usize) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; 16 * 1024];
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let request = format!(
            "GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nX-Subscriber: {index}\r\n\r\n"
        );
        if stream.write_all(request.as_bytes()).await.is_err() {
            continue;
        }
        let until = Instant::now() + Duration::from_secs(10);
        while Instant::now() < until && !stop.load(Ordering::Relaxed) {
            match tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break,
                Ok(Ok(n)) => {
                    let events = buffer[..n].windows(6).filter(|w| w == b"event:").count();
                    counters
                        .events_read
                        .fetch_add(events as u64, Ordering::Relaxed);
                }
                Err(_) => {}
            }
        }
    }
}

/// An SSE subscriber that never reads: the server must not buffer for it.
async fn stalled_subscriber(port: u16) -> Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream
        .write_all(
            b"GET /v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n",
        )
        .await?;
    Ok(stream)
}

async fn sample(
    client: &reqwest::Client,
    base: &str,
    pid: u32,
    db: &Path,
    t_s: f64,
    counters: &Counters,
) -> Sample {
    let process = mnemosyne_diagnostics::ProcessStats::of_pid(pid);
    let metrics = fetch_metrics(client, base).await;
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0) as u64;
    Sample {
        t_s,
        rss_bytes: process.rss_bytes.unwrap_or(0),
        fds: process.open_fds.unwrap_or(0),
        threads: process.threads.unwrap_or(0),
        pool_readers_open: metric("mnemosyne_pool_readers_open"),
        pool_readers_max: metric("mnemosyne_pool_readers_open_max"),
        tasks_alive: metric("mnemosyne_tasks_alive"),
        work_items_active: metric("mnemosyne_work_items_active"),
        work_items_max: metric("mnemosyne_work_items_active_max"),
        cache_bytes: metric("mnemosyne_embedding_cache_bytes"),
        cache_bytes_max: metric("mnemosyne_embedding_cache_bytes_max"),
        event_subscribers: metric("mnemosyne_event_subscribers"),
        sqlite_heap_bytes: metric("mnemosyne_sqlite_heap_bytes"),
        allocated_bytes: metric("mnemosyne_allocator_allocated_bytes"),
        allocator_resident_bytes: metric("mnemosyne_allocator_resident_bytes"),
        work_finished_stored: metric("mnemosyne_work_finished_stored"),
        work_finished_stored_max: metric("mnemosyne_work_finished_stored_max"),
        db_bytes: db_bytes(db),
        embedding_backlog: metric("mnemosyne_embedding_backlog"),
        embedding_backlog_max: metric("mnemosyne_embedding_backlog_max"),
        embeddings_missing: metric("mnemosyne_embeddings_missing"),
        requests_ok: counters.ok.load(Ordering::Relaxed),
        requests_overloaded: counters.overloaded.load(Ordering::Relaxed),
        requests_failed: counters.failed.load(Ordering::Relaxed),
    }
}

/// Bytes of the database file and its WAL (0 for a file not there).
fn db_bytes(db: &Path) -> u64 {
    ["", "-wal"]
        .iter()
        .filter_map(|suffix| std::fs::metadata(format!("{}{suffix}", db.display())).ok())
        .map(|meta| meta.len())
        .sum()
}

/// `NAME=VALUE` of `--limit`: a limit the server knows, with a value it accepts.
fn parse_limit(spec: &str) -> Result<(String, String)> {
    let (name, value) = spec
        .split_once('=')
        .with_context(|| format!("--limit takes NAME=VALUE, not {spec:?}"))?;
    let known = serde_json::to_value(Limits::default())?;
    if known.get(name).is_none() {
        bail!("--limit {name}: no such limit (see `mnemosyne config`)");
    }
    let variable = format!("{}{}", mnemosyne_core::ENV_PREFIX, name.to_uppercase());
    Limits::default()
        .with_env_overrides([(variable, value.to_owned())])
        .with_context(|| format!("--limit {spec}"))?;
    Ok((name.to_owned(), value.to_owned()))
}

/// The embedding cache's weight as a share of its byte cap (0 if unknown).
async fn cache_fill_share(client: &reqwest::Client, base: &str) -> f64 {
    let metrics = fetch_metrics(client, base).await;
    let metric = |name: &str| metrics.get(name).copied().unwrap_or(0.0);
    let cap = metric("mnemosyne_embedding_cache_bytes_max");
    if cap > 0.0 {
        metric("mnemosyne_embedding_cache_bytes") / cap
    } else {
        0.0
    }
}

/// The server's `/metrics`, parsed (empty when it does not answer).
async fn fetch_metrics(client: &reqwest::Client, base: &str) -> HashMap<String, f64> {
    match client.get(format!("{base}/metrics")).send().await {
        Ok(response) => parse_metrics(&response.text().await.unwrap_or_default()),
        Err(_) => HashMap::new(),
    }
}

/// `name value` lines of Prometheus text (labelled series are skipped).
fn parse_metrics(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.split_once(' ')?;
            if name.contains('{') {
                return None;
            }
            Some((name.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}
