//! `cargo xtask hook-eval`: the Claude Code hook (`mnemosyne hook`) measured
//! against issue 18's targets, through the real binary, one process per
//! hook as Claude Code runs it:
//!
//! 1. **Relevance**: the corpus of `eval/recall-eval.json` imported into a
//!    fresh database; every `paraphrase` and `keyword` query sent as a
//!    prompt to `hook UserPromptSubmit` (a fresh session each, `--namespace`
//!    the query's, else its first relevant memory's). A query passes when
//!    the context names a relevant memory's id. Target: a share of 0.8.
//! 2. **Silence**: every prompt of `eval/unrelated-prompts.json` in each
//!    project namespace of the corpus. A prompt passes when nothing is
//!    added. Target: a share of 0.9.
//! 3. **Floor sweep**: 1 and 2 for each `--floors` value of
//!    `MNEMOSYNE_HOOK_SIMILARITY_MIN_PERCENT`. Beside it, one `recall
//!    --json` per prompt with the hook's own query (hybrid, the prompt's
//!    namespace, `hook_prompt_hits_max x 4` candidates) gives each
//!    candidate's similarity: the best relevant and the best unrelated one
//!    per prompt, and what the sweep predicts from them, checked against
//!    what the hook did.
//! 4. **Latency**: a store of `--memories` memories (the corpus and the
//!    standard workload's, every one embedded by `import`), then `hook
//!    SessionStart` and `hook UserPromptSubmit` `--runs` times each, wall
//!    time from spawn to exit at the default limits (time budget included).
//!
//! The hooks run with a clean environment (no `MNEMOSYNE_*` of the caller,
//! `HOME` and the XDG directories inside `--out`), so no user config
//! changes a limit. Prints the report and writes it as JSON to `--json`.
//!
//! Usage: hook_eval --bin PATH [--corpus FILE] [--unrelated FILE] [--out DIR]
//!   [--json FILE] [--floors 30,35,...] [--runs N] [--memories N]
//!   [--skip-relevance] [--skip-latency] [--reuse-store]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use chrono::Utc;
use mnemosyne_core::workload::Workload;
use mnemosyne_core::{Importance, Limits, Link, LinkType, Memory, MemoryId, MemoryType, Namespace};
use mnemosyne_harness::bench_report::percentile_ms;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Seed of the synthetic memories (the bench and the soak use the same).
const SEED: u64 = 42;
/// Query kinds of the relevance pass.
const KINDS: [&str; 2] = ["paraphrase", "keyword"];
/// Project namespaces the unrelated prompts are sent in.
const PROJECTS: [&str; 3] = ["project:atlas", "project:borealis", "project:cinder"];
/// Targets of issue 18.
const RELEVANT_SHARE_MIN: f64 = 0.8;
const SILENT_SHARE_MIN: f64 = 0.9;
const P50_MS_MAX: f64 = 300.0;
const P99_MS_MAX: f64 = 1_000.0;
/// Floors swept when `--floors` is not given.
const FLOORS_DEFAULT: [u8; 7] = [30, 35, 40, 45, 50, 55, 60];
/// Hook runs per event in the latency pass when `--runs` is not given.
const RUNS_DEFAULT: usize = 50;
/// Memories in the latency store when `--memories` is not given.
const MEMORIES_DEFAULT: usize = 10_000;
/// Runs, and memories of the latency store, at most.
const RUNS_MAX: usize = 10_000;
const MEMORIES_MAX: usize = 200_000;
/// The hook's recall asks for this many candidates per hit wanted
/// (`PROMPT_CANDIDATES_PER_HIT` of the hook; the harness cannot import the
/// binary crate, and a change there shows up as predictions that disagree).
const HOOK_CANDIDATES_PER_HIT: u32 = 4;
/// Time budget the relevance passes give each hook (the latency pass keeps
/// the default): a hook timed out on a busy machine would read as silence.
const RELEVANCE_TIME_BUDGET_MS: &str = "60000";
/// One hook or recall process, spawn to exit, before it is killed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(120);
/// One import (the latency store embeds every memory: minutes).
const IMPORT_TIMEOUT: Duration = Duration::from_secs(3 * 3_600);
/// Unmeasured runs of each hook before the latency runs (page cache).
const WARM_UP_RUNS: usize = 2;
/// Examples of each failure listed in the printed report.
const EXAMPLES_PRINTED_MAX: usize = 40;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("hook_eval: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

#[derive(Debug, Serialize)]
struct Args {
    binary: PathBuf,
    corpus: PathBuf,
    unrelated: PathBuf,
    out: PathBuf,
    json: PathBuf,
    floors: Vec<u8>,
    runs: usize,
    memories: usize,
    relevance: bool,
    latency: bool,
    reuse_store: bool,
}

const USAGE: &str = "usage: hook_eval --bin PATH [--corpus FILE] [--unrelated FILE] [--out DIR] [--json FILE] \
[--floors 30,35,...] [--runs N] [--memories N] [--skip-relevance] [--skip-latency] [--reuse-store]";

fn parse_args() -> Result<Args> {
    let mut args = Args {
        binary: PathBuf::new(),
        corpus: PathBuf::from("eval/recall-eval.json"),
        unrelated: PathBuf::from("eval/unrelated-prompts.json"),
        out: PathBuf::from("target/hook-eval"),
        json: PathBuf::from("target/hook-eval.json"),
        floors: FLOORS_DEFAULT.to_vec(),
        runs: RUNS_DEFAULT,
        memories: MEMORIES_DEFAULT,
        relevance: true,
        latency: true,
        reuse_store: false,
    };
    let mut rest = std::env::args().skip(1);
    while let Some(flag) = rest.next() {
        let mut value = || rest.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--bin" => args.binary = PathBuf::from(value()?),
            "--corpus" => args.corpus = PathBuf::from(value()?),
            "--unrelated" => args.unrelated = PathBuf::from(value()?),
            "--out" => args.out = PathBuf::from(value()?),
            "--json" => args.json = PathBuf::from(value()?),
            "--floors" => {
                args.floors = value()?
                    .split(',')
                    .map(|f| f.trim().parse::<u8>().context("--floors"))
                    .collect::<Result<_>>()?;
                if args.floors.is_empty() || args.floors.iter().any(|f| *f > 100) {
                    bail!("--floors takes percentages 0 to 100, comma-separated");
                }
            }
            "--runs" => args.runs = value()?.parse().context("--runs")?,
            "--memories" => args.memories = value()?.parse().context("--memories")?,
            "--skip-relevance" => args.relevance = false,
            "--skip-latency" => args.latency = false,
            "--reuse-store" => args.reuse_store = true,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown option {other:?}; {USAGE}"),
        }
    }
    if args.binary.as_os_str().is_empty() {
        bail!("--bin is required; {USAGE}");
    }
    if !(1..=RUNS_MAX).contains(&args.runs) {
        bail!("--runs must be 1 to {RUNS_MAX}");
    }
    if args.memories > MEMORIES_MAX {
        bail!("--memories must be at most {MEMORIES_MAX}");
    }
    args.floors.sort_unstable();
    args.floors.dedup();
    Ok(args)
}

// ---------------------------------------------------------------- inputs

/// `eval/recall-eval.json`.
#[derive(Debug, Deserialize)]
struct EvalSet {
    memories: Vec<EvalMemory>,
    queries: Vec<EvalQuery>,
}

#[derive(Debug, Deserialize)]
struct EvalMemory {
    key: String,
    namespace: Namespace,
    memory_type: MemoryType,
    importance: Importance,
    tags: Vec<String>,
    links: Vec<EvalLink>,
    content: String,
}

#[derive(Debug, Deserialize)]
struct EvalLink {
    target: String,
    link_type: LinkType,
}

#[derive(Debug, Deserialize)]
struct EvalQuery {
    kind: String,
    namespace: Option<Namespace>,
    text: String,
    relevant: Vec<String>,
}

/// `eval/unrelated-prompts.json`.
#[derive(Debug, Deserialize)]
struct UnrelatedSet {
    prompts: Vec<UnrelatedPrompt>,
}

#[derive(Debug, Deserialize)]
struct UnrelatedPrompt {
    kind: String,
    text: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("bad JSON in {}", path.display()))
}

/// The corpus as memories with new ids, and the id of each key.
fn corpus_memories(set: &EvalSet) -> Result<(Vec<Memory>, HashMap<String, MemoryId>)> {
    let now = Utc::now();
    let ids: HashMap<String, MemoryId> = set
        .memories
        .iter()
        .map(|m| (m.key.clone(), MemoryId::new()))
        .collect();
    if ids.len() != set.memories.len() {
        bail!("the corpus has duplicate keys");
    }
    let mut memories = Vec::with_capacity(set.memories.len());
    for m in &set.memories {
        let mut links = Vec::with_capacity(m.links.len());
        for link in &m.links {
            let target = *ids
                .get(&link.target)
                .with_context(|| format!("{} links to unknown key {}", m.key, link.target))?;
            links.push(Link {
                target,
                link_type: link.link_type,
            });
        }
        memories.push(Memory {
            id: ids[&m.key],
            namespace: m.namespace.clone(),
            content: m.content.clone(),
            summary: None,
            memory_type: m.memory_type,
            importance: m.importance,
            tags: m.tags.clone(),
            links,
            created_at: now,
            updated_at: now,
            accessed_at: now,
            access_count: 0,
            archived: false,
        });
    }
    Ok((memories, ids))
}

fn write_jsonl(path: &Path, memories: &[Memory]) -> Result<()> {
    let mut file = std::io::BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?,
    );
    for memory in memories {
        serde_json::to_writer(&mut file, memory)?;
        file.write_all(b"\n")?;
    }
    file.flush()?;
    Ok(())
}

// ---------------------------------------------------------------- processes

/// The binary under test with a clean environment, on one database.
struct Mnemosyne {
    binary: PathBuf,
    home: PathBuf,
    cwd: PathBuf,
}

/// What one process did.
struct Ran {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    wall: Duration,
}

impl Mnemosyne {
    fn command(&self, db: &Path, env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(&self.binary);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("MNEMOSYNE_") || text.starts_with("XDG_") || text == "RUST_LOG" {
                command.env_remove(&name);
            }
        }
        command
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join("config"))
            .env("XDG_DATA_HOME", self.home.join("data"))
            .current_dir(&self.cwd)
            .arg("--db")
            .arg(db);
        for (name, value) in env {
            command.env(name, value);
        }
        command
    }

    /// Runs `command` with `stdin`, reading its output as it comes, killed
    /// after `timeout`; the wall time is spawn to exit.
    fn run(mut command: Command, stdin: &[u8], timeout: Duration) -> Result<Ran> {
        command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().context("cannot spawn mnemosyne")?;
        let mut out = child.stdout.take().context("stdout")?;
        let mut err = child.stderr.take().context("stderr")?;
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = out.read_to_string(&mut text);
            text
        });
        let err_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = err.read_to_string(&mut text);
            text
        });
        if let Some(mut pipe) = child.stdin.take() {
            // A process that refuses its input early may close stdin first.
            let _ = pipe.write_all(stdin);
        }
        let deadline = started + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_micros(500));
        };
        let wall = started.elapsed();
        let stdout = out_reader.join().unwrap_or_default();
        let stderr = err_reader.join().unwrap_or_default();
        Ok(Ran {
            code: status.and_then(|s| s.code()),
            stdout,
            stderr,
            wall,
        })
    }

    /// `mnemosyne import FILE --json`: the report, after checking it is complete.
    fn import(&self, db: &Path, file: &Path) -> Result<Value> {
        let mut command = self.command(db, &[]);
        command.arg("--json").arg("import").arg(file);
        let ran = Self::run(command, b"", IMPORT_TIMEOUT)?;
        if ran.code != Some(0) {
            bail!(
                "import failed ({:?}): {}{}",
                ran.code,
                ran.stdout,
                ran.stderr
            );
        }
        let report: Value = serde_json::from_str(ran.stdout.trim())
            .with_context(|| format!("import printed no JSON: {}", ran.stdout))?;
        if report["complete"] != Value::Bool(true) {
            bail!("import incomplete: {report}");
        }
        Ok(report)
    }

    /// One hook process: `event` with `input` on stdin, `--namespace`.
    fn hook(
        &self,
        db: &Path,
        event: &str,
        namespace: &Namespace,
        input: &Value,
        env: &[(&str, &str)],
    ) -> Result<Hooked> {
        let mut command = self.command(db, env);
        command
            .arg("hook")
            .arg(event)
            .arg("--namespace")
            .arg(namespace.to_string());
        let ran = Self::run(command, input.to_string().as_bytes(), HOOK_TIMEOUT)?;
        Hooked::read(event, ran)
    }

    /// The hook's recall, with every candidate's similarity.
    fn candidates(&self, db: &Path, namespace: &Namespace, text: &str) -> Result<Vec<Candidate>> {
        let limit = Limits::default().hook_prompt_hits_max * HOOK_CANDIDATES_PER_HIT;
        let mut command = self.command(db, &[]);
        command
            .arg("--json")
            .arg("recall")
            .arg("--namespace")
            .arg(namespace.to_string())
            .arg("--limit")
            .arg(limit.to_string())
            .arg("--")
            .arg(text);
        let ran = Self::run(command, b"", HOOK_TIMEOUT)?;
        if ran.code != Some(0) {
            bail!("recall {text:?} failed ({:?}): {}", ran.code, ran.stderr);
        }
        let answer: Value = serde_json::from_str(ran.stdout.trim())
            .with_context(|| format!("recall printed no JSON: {}", ran.stdout))?;
        if let Some(stale) = answer.get("vectors_stale") {
            bail!("{stale} memories have no vector of the embedder: the store is not ready");
        }
        if let Some(degraded) = answer.get("degraded") {
            bail!("recall lost its vectors: {degraded}");
        }
        let hits = answer["hits"]
            .as_array()
            .context("recall JSON has no hits")?;
        hits.iter()
            .map(|hit| {
                let id = hit["memory"]["id"].as_str().context("a hit without id")?;
                Ok(Candidate {
                    id: id.parse().context("a hit's id")?,
                    similarity: hit["signals"]["similarity"].as_f64(),
                })
            })
            .collect()
    }
}

/// One recall candidate of a prompt.
#[derive(Clone, Copy, Debug, Serialize)]
struct Candidate {
    id: MemoryId,
    similarity: Option<f64>,
}

/// What one hook did.
struct Hooked {
    /// The ids named in the context; `None` when nothing was added.
    context_ids: Option<Vec<MemoryId>>,
    /// A hook that failed open (a line on stderr) or exited badly.
    error: Option<String>,
    wall: Duration,
}

impl Hooked {
    fn read(event: &str, ran: Ran) -> Result<Self> {
        let mut error = None;
        if ran.code != Some(0) {
            error = Some(format!("exit {:?}", ran.code));
        } else if !ran.stderr.trim().is_empty() {
            error = Some(ran.stderr.trim().to_owned());
        }
        let stdout = ran.stdout.trim();
        let context_ids = if stdout.is_empty() {
            None
        } else {
            let value: Value = serde_json::from_str(stdout)
                .with_context(|| format!("hook printed something other than JSON: {stdout}"))?;
            let specific = &value["hookSpecificOutput"];
            if specific["hookEventName"] != event {
                bail!("hook answered another event: {stdout}");
            }
            let text = specific["additionalContext"]
                .as_str()
                .with_context(|| format!("no additionalContext: {stdout}"))?;
            Some(ids_in(text))
        };
        Ok(Self {
            context_ids,
            error,
            wall: ran.wall,
        })
    }
}

/// The memory ids a context names, as `(id <uuid>, ...)`.
fn ids_in(text: &str) -> Vec<MemoryId> {
    text.match_indices("(id ")
        .filter_map(|(at, marker)| text.get(at + marker.len()..at + marker.len() + 36))
        .filter_map(|id| id.parse().ok())
        .collect()
}

fn prompt_input(session: &str, cwd: &Path, prompt: &str) -> Value {
    serde_json::json!({
        "session_id": session,
        "transcript_path": cwd.join(format!("{session}.jsonl")),
        "cwd": cwd,
        "permission_mode": "default",
        "hook_event_name": "UserPromptSubmit",
        "prompt": prompt,
    })
}

fn session_start_input(session: &str, cwd: &Path) -> Value {
    serde_json::json!({
        "session_id": session,
        "transcript_path": cwd.join(format!("{session}.jsonl")),
        "cwd": cwd,
        "hook_event_name": "SessionStart",
        "source": "startup",
    })
}

/// Removes a database, its WAL files and the hooks' session state.
fn remove_db(db: &Path) -> Result<()> {
    for suffix in ["", "-wal", "-shm"] {
        let path = PathBuf::from(format!("{}{suffix}", db.display()));
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- relevance

/// The namespace of each memory key.
fn key_namespaces(set: &EvalSet) -> HashMap<&str, &Namespace> {
    set.memories
        .iter()
        .map(|m| (m.key.as_str(), &m.namespace))
        .collect()
}

/// Where a query is asked: its namespace, else its first relevant memory's.
fn query_namespace(query: &EvalQuery, keys: &HashMap<&str, &Namespace>) -> Result<Namespace> {
    if let Some(namespace) = &query.namespace {
        return Ok(namespace.clone());
    }
    let first = query
        .relevant
        .first()
        .context("a query without relevant keys")?;
    keys.get(first.as_str())
        .map(|n| (*n).clone())
        .with_context(|| format!("unknown key {first}"))
}

/// A prompt of the relevance or silence pass.
#[derive(Debug, Serialize)]
struct Prompt {
    /// `paraphrase`, `keyword`, or the unrelated prompt's kind.
    kind: String,
    text: String,
    namespace: String,
    /// Keys of the relevant memories; empty for an unrelated prompt.
    relevant: Vec<String>,
    #[serde(skip)]
    relevant_ids: Vec<MemoryId>,
    /// The best similarity of a relevant memory among the candidates.
    best_relevant_similarity: Option<f64>,
    /// The best similarity of any other candidate.
    best_other_similarity: Option<f64>,
    /// The hook's candidates.
    candidates: Vec<Candidate>,
    /// Per floor: whether the hook did what it should.
    passed: Vec<bool>,
    /// Per floor: memories the hook added.
    added: Vec<usize>,
}

impl Prompt {
    fn unrelated(&self) -> bool {
        self.relevant.is_empty()
    }

    /// Whether the hook, at `floor` percent, would pass, from its candidates
    /// (fresh session: nothing given before).
    fn predicted(&self, floor: u8) -> bool {
        let floor = f64::from(floor) / 100.0;
        let given: Vec<MemoryId> = self
            .candidates
            .iter()
            .filter(|c| c.similarity.is_some_and(|s| s >= floor))
            .take(Limits::default().hook_prompt_hits_max as usize)
            .map(|c| c.id)
            .collect();
        if self.unrelated() {
            given.is_empty()
        } else {
            given.iter().any(|id| self.relevant_ids.contains(id))
        }
    }
}

/// The share of one group at one floor.
#[derive(Debug, Serialize)]
struct Share {
    group: String,
    passed: usize,
    of: usize,
    share: f64,
}

fn share(group: &str, prompts: &[&Prompt], floor_index: usize) -> Share {
    let passed = prompts.iter().filter(|p| p.passed[floor_index]).count();
    Share {
        group: group.to_owned(),
        passed,
        of: prompts.len(),
        share: if prompts.is_empty() {
            0.0
        } else {
            passed as f64 / prompts.len() as f64
        },
    }
}

#[derive(Debug, Serialize)]
struct FloorRow {
    floor_percent: u8,
    relevant: Share,
    relevant_by_kind: Vec<Share>,
    silent: Share,
    silent_by_kind: Vec<Share>,
    /// Prompts where the prediction from the candidates' similarities
    /// disagrees with what the hook did (should be none).
    predictions_wrong: usize,
    /// Mean memories added per relevance query, and per unrelated prompt.
    mean_added_relevant: f64,
    mean_added_unrelated: f64,
}

#[derive(Debug, Serialize)]
struct RelevanceReport {
    memories: usize,
    import_s: f64,
    default_floor_percent: u8,
    floors: Vec<FloorRow>,
    /// Hooks that failed open or exited badly (the error is on each).
    hook_errors: Vec<String>,
    prompts: Vec<Prompt>,
}

fn relevance(args: &Args, mnemosyne: &Mnemosyne) -> Result<RelevanceReport> {
    let set: EvalSet = read_json(&args.corpus)?;
    let unrelated: UnrelatedSet = read_json(&args.unrelated)?;
    let (memories, ids) = corpus_memories(&set)?;
    let db = args.out.join("relevance.db");
    remove_db(&db)?;
    let file = args.out.join("corpus.jsonl");
    write_jsonl(&file, &memories)?;
    let started = Instant::now();
    let report = mnemosyne.import(&db, &file)?;
    let import_s = started.elapsed().as_secs_f64();
    println!(
        "hook-eval: imported the corpus ({} memories, {} links, {} embedded) in {import_s:.1} s",
        report["inserted"], report["links_added"], report["embedded"]
    );
    if report["inserted"].as_u64() != Some(memories.len() as u64)
        || report["embedded"].as_u64() < Some(memories.len() as u64)
    {
        bail!("the corpus did not import whole: {report}");
    }

    let key_namespace = key_namespaces(&set);
    let mut prompts = Vec::new();
    for query in set
        .queries
        .iter()
        .filter(|q| KINDS.contains(&q.kind.as_str()))
    {
        let namespace = query_namespace(query, &key_namespace)?;
        let relevant_ids = query
            .relevant
            .iter()
            .map(|k| {
                ids.get(k)
                    .copied()
                    .with_context(|| format!("unknown key {k}"))
            })
            .collect::<Result<_>>()?;
        prompts.push(Prompt {
            kind: query.kind.clone(),
            text: query.text.clone(),
            namespace: namespace.to_string(),
            relevant: query.relevant.clone(),
            relevant_ids,
            best_relevant_similarity: None,
            best_other_similarity: None,
            candidates: Vec::new(),
            passed: Vec::new(),
            added: Vec::new(),
        });
    }
    for project in PROJECTS {
        for prompt in &unrelated.prompts {
            prompts.push(Prompt {
                kind: prompt.kind.clone(),
                text: prompt.text.clone(),
                namespace: project.to_owned(),
                relevant: Vec::new(),
                relevant_ids: Vec::new(),
                best_relevant_similarity: None,
                best_other_similarity: None,
                candidates: Vec::new(),
                passed: Vec::new(),
                added: Vec::new(),
            });
        }
    }

    // The candidates and their similarities, once per prompt.
    let started = Instant::now();
    for prompt in &mut prompts {
        let namespace: Namespace = prompt.namespace.parse()?;
        prompt.candidates = mnemosyne.candidates(&db, &namespace, &prompt.text)?;
        let best = |relevant: bool| {
            prompt
                .candidates
                .iter()
                .filter(|c| prompt.relevant_ids.contains(&c.id) == relevant)
                .filter_map(|c| c.similarity)
                .fold(None, |best: Option<f64>, s| {
                    Some(best.map_or(s, |b| b.max(s)))
                })
        };
        let (relevant, other) = (best(true), best(false));
        prompt.best_relevant_similarity = relevant;
        prompt.best_other_similarity = other;
    }
    println!(
        "hook-eval: recalled the candidates of {} prompts in {:.1} s",
        prompts.len(),
        started.elapsed().as_secs_f64()
    );

    let mut hook_errors = Vec::new();
    let mut floors = Vec::new();
    for (floor_index, &floor) in args.floors.iter().enumerate() {
        let started = Instant::now();
        let floor_text = floor.to_string();
        let env = [
            ("MNEMOSYNE_HOOK_SIMILARITY_MIN_PERCENT", floor_text.as_str()),
            ("MNEMOSYNE_HOOK_TIME_BUDGET_MS", RELEVANCE_TIME_BUDGET_MS),
        ];
        let mut predictions_wrong = 0;
        for (i, prompt) in prompts.iter_mut().enumerate() {
            let session = format!("eval-f{floor}-p{i}");
            let namespace: Namespace = prompt.namespace.parse()?;
            let input = prompt_input(&session, &args.out, &prompt.text);
            let hooked = mnemosyne.hook(&db, "UserPromptSubmit", &namespace, &input, &env)?;
            if let Some(error) = &hooked.error {
                hook_errors.push(format!(
                    "floor {floor}, {:?} in {}: {error}",
                    prompt.text, prompt.namespace
                ));
            }
            let added = hooked.context_ids.as_ref().map_or(0, Vec::len);
            let passed = if prompt.unrelated() {
                hooked.context_ids.is_none()
            } else {
                hooked
                    .context_ids
                    .as_ref()
                    .is_some_and(|given| given.iter().any(|id| prompt.relevant_ids.contains(id)))
            };
            if passed != prompt.predicted(floor) {
                predictions_wrong += 1;
            }
            prompt.passed.push(passed);
            prompt.added.push(added);
        }
        let by = |unrelated: bool, kind: Option<&str>| -> Vec<&Prompt> {
            prompts
                .iter()
                .filter(|p| p.unrelated() == unrelated && kind.is_none_or(|k| p.kind == k))
                .collect()
        };
        let mut unrelated_kinds: Vec<&str> = Vec::new();
        for prompt in &unrelated.prompts {
            if !unrelated_kinds.contains(&prompt.kind.as_str()) {
                unrelated_kinds.push(&prompt.kind);
            }
        }
        let mean_added = |unrelated: bool| {
            let group = by(unrelated, None);
            group.iter().map(|p| p.added[floor_index]).sum::<usize>() as f64
                / group.len().max(1) as f64
        };
        let row = FloorRow {
            floor_percent: floor,
            relevant: share("all", &by(false, None), floor_index),
            relevant_by_kind: KINDS
                .iter()
                .map(|k| share(k, &by(false, Some(k)), floor_index))
                .collect(),
            silent: share("all", &by(true, None), floor_index),
            silent_by_kind: unrelated_kinds
                .iter()
                .map(|k| share(k, &by(true, Some(k)), floor_index))
                .collect(),
            predictions_wrong,
            mean_added_relevant: mean_added(false),
            mean_added_unrelated: mean_added(true),
        };
        println!(
            "hook-eval: floor {floor}%: relevant {}/{}, silent {}/{} ({:.0} s)",
            row.relevant.passed,
            row.relevant.of,
            row.silent.passed,
            row.silent.of,
            started.elapsed().as_secs_f64()
        );
        floors.push(row);
    }
    Ok(RelevanceReport {
        memories: memories.len(),
        import_s,
        default_floor_percent: Limits::default().hook_similarity_min_percent,
        floors,
        hook_errors,
        prompts,
    })
}

// ---------------------------------------------------------------- latency

#[derive(Debug, Serialize)]
struct Latency {
    event: String,
    runs: usize,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    min_ms: f64,
    /// Runs that added context.
    with_context: usize,
    /// Runs that failed open (time budget passed, ...) or exited badly.
    errors: Vec<String>,
}

#[derive(Debug, Serialize)]
struct LatencyReport {
    memories: usize,
    /// Seconds `import` took to store and embed them (`None`: reused).
    import_s: Option<f64>,
    /// `/proc/loadavg` before and after the runs.
    load_before: String,
    load_after: String,
    hooks: Vec<Latency>,
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn latency(args: &Args, mnemosyne: &Mnemosyne) -> Result<LatencyReport> {
    let set: EvalSet = read_json(&args.corpus)?;
    let db = args.out.join(format!("latency-{}.db", args.memories));
    let import_s = if args.reuse_store && db.exists() {
        println!("hook-eval: reusing {}", db.display());
        None
    } else {
        remove_db(&db)?;
        let (mut memories, _) = corpus_memories(&set)?;
        memories.truncate(args.memories);
        let mut workload = Workload::new(SEED);
        let now = Utc::now();
        while memories.len() < args.memories {
            memories.push(workload.memory(now));
        }
        let file = args.out.join(format!("latency-{}.jsonl", args.memories));
        write_jsonl(&file, &memories)?;
        println!(
            "hook-eval: importing {} memories (every one embedded: minutes)",
            memories.len()
        );
        let started = Instant::now();
        let report = mnemosyne.import(&db, &file)?;
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "hook-eval: imported {} memories, {} embedded, in {seconds:.0} s",
            report["inserted"], report["embedded"]
        );
        if report["inserted"].as_u64() != Some(args.memories as u64)
            || report["embedded"].as_u64() < Some(args.memories as u64)
        {
            bail!("the latency store did not import whole: {report}");
        }
        Some(seconds)
    };
    // Prompts as a user would type them: the eval queries, in turn.
    let key_namespace = key_namespaces(&set);
    let queries: Vec<(&EvalQuery, Namespace)> = set
        .queries
        .iter()
        .filter(|q| KINDS.contains(&q.kind.as_str()))
        .map(|q| Ok((q, query_namespace(q, &key_namespace)?)))
        .collect::<Result<_>>()?;
    if queries.is_empty() {
        bail!("the corpus has no paraphrase or keyword queries");
    }
    let load_before = load_average();
    let mut hooks = Vec::new();
    for event in ["SessionStart", "UserPromptSubmit"] {
        let mut walls = Vec::with_capacity(args.runs);
        let mut with_context = 0;
        let mut errors = Vec::new();
        for i in 0..WARM_UP_RUNS + args.runs {
            let session = format!("latency-{event}-{i}");
            let (namespace, input) = if event == "SessionStart" {
                let project: Namespace = PROJECTS[i % PROJECTS.len()].parse()?;
                (project, session_start_input(&session, &args.out))
            } else {
                let (query, namespace) = &queries[i % queries.len()];
                (
                    namespace.clone(),
                    prompt_input(&session, &args.out, &query.text),
                )
            };
            let hooked = mnemosyne.hook(&db, event, &namespace, &input, &[])?;
            if i < WARM_UP_RUNS {
                continue;
            }
            walls.push(hooked.wall);
            if hooked.context_ids.is_some() {
                with_context += 1;
            }
            if let Some(error) = hooked.error {
                errors.push(error);
            }
        }
        walls.sort_unstable();
        let latency = Latency {
            event: event.to_owned(),
            runs: walls.len(),
            p50_ms: percentile_ms(&walls, 0.50),
            p90_ms: percentile_ms(&walls, 0.90),
            p99_ms: percentile_ms(&walls, 0.99),
            max_ms: percentile_ms(&walls, 1.0),
            min_ms: percentile_ms(&walls, 0.0),
            with_context,
            errors,
        };
        println!(
            "hook-eval: {event} x{}: p50 {:.0} ms, p99 {:.0} ms",
            latency.runs, latency.p50_ms, latency.p99_ms
        );
        hooks.push(latency);
    }
    Ok(LatencyReport {
        memories: args.memories,
        import_s,
        load_before,
        load_after: load_average(),
        hooks,
    })
}

// ---------------------------------------------------------------- report

#[derive(Debug, Serialize)]
struct ReportFile {
    started_at: String,
    args: Args,
    relevance: Option<RelevanceReport>,
    latency: Option<LatencyReport>,
}

fn verdict(ok: bool) -> &'static str {
    if ok { "ok" } else { "MISSED" }
}

fn print_relevance(report: &RelevanceReport) {
    println!(
        "\n## UserPromptSubmit on the recall eval set ({} memories)\n",
        report.memories
    );
    let kinds: Vec<&str> = report
        .floors
        .first()
        .map(|f| f.silent_by_kind.iter().map(|s| s.group.as_str()).collect())
        .unwrap_or_default();
    print!("| floor % | relevant | paraphrase | keyword | silent |");
    for kind in &kinds {
        print!(" silent {kind} |");
    }
    println!(" mean added (rel / unrel) | predicted wrong |");
    print!("|---|---|---|---|---|");
    for _ in &kinds {
        print!("---|");
    }
    println!("---|---|");
    for row in &report.floors {
        let marker = if row.floor_percent == report.default_floor_percent {
            " (default)"
        } else {
            ""
        };
        print!(
            "| {}{marker} | {:.3} ({}/{}) | {:.3} | {:.3} | {:.3} ({}/{}) |",
            row.floor_percent,
            row.relevant.share,
            row.relevant.passed,
            row.relevant.of,
            row.relevant_by_kind[0].share,
            row.relevant_by_kind[1].share,
            row.silent.share,
            row.silent.passed,
            row.silent.of
        );
        for share in &row.silent_by_kind {
            print!(" {:.2} |", share.share);
        }
        println!(
            " {:.2} / {:.2} | {} |",
            row.mean_added_relevant, row.mean_added_unrelated, row.predictions_wrong
        );
    }
    let default = report
        .floors
        .iter()
        .position(|r| r.floor_percent == report.default_floor_percent);
    if let Some(index) = default {
        let row = &report.floors[index];
        println!(
            "\nAt the default floor ({}%): relevant {:.3} (target >= {RELEVANT_SHARE_MIN}: {}), silent {:.3} (target >= {SILENT_SHARE_MIN}: {})",
            row.floor_percent,
            row.relevant.share,
            verdict(row.relevant.share >= RELEVANT_SHARE_MIN),
            row.silent.share,
            verdict(row.silent.share >= SILENT_SHARE_MIN)
        );
        println!(
            "\nQueries the hook misses at the default floor (best relevant / best other similarity among its candidates; '-' = not a candidate):"
        );
        for prompt in report
            .prompts
            .iter()
            .filter(|p| !p.unrelated() && !p.passed[index])
            .take(EXAMPLES_PRINTED_MAX)
        {
            println!(
                "- [{}] {:?} in {} (relevant {}): {} / {}",
                prompt.kind,
                prompt.text,
                prompt.namespace,
                prompt.relevant.join(","),
                similarity(prompt.best_relevant_similarity),
                similarity(prompt.best_other_similarity),
            );
        }
        println!(
            "\nUnrelated prompts that add context at the default floor (best similarity among the candidates):"
        );
        for prompt in report
            .prompts
            .iter()
            .filter(|p| p.unrelated() && !p.passed[index])
            .take(EXAMPLES_PRINTED_MAX)
        {
            println!(
                "- [{}] {:?} in {}: {} added, best {}",
                prompt.kind,
                prompt.text,
                prompt.namespace,
                prompt.added[index],
                similarity(prompt.best_other_similarity)
            );
        }
    } else {
        println!(
            "\n(the default floor {}% was not swept)",
            report.default_floor_percent
        );
    }
    let never: Vec<&Prompt> = report
        .prompts
        .iter()
        .filter(|p| !p.unrelated() && p.passed.iter().all(|ok| !ok))
        .collect();
    println!(
        "\nQueries that pass at no swept floor: {} ({})",
        never.len(),
        never
            .iter()
            .map(|p| format!("{:?}", p.text))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let always: Vec<&Prompt> = report
        .prompts
        .iter()
        .filter(|p| p.unrelated() && p.passed.iter().all(|ok| !ok))
        .collect();
    println!(
        "Unrelated prompts that add context at every swept floor: {} ({})",
        always.len(),
        always
            .iter()
            .map(|p| format!("{:?} in {}", p.text, p.namespace))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut relevant: Vec<f64> = report
        .prompts
        .iter()
        .filter(|p| !p.unrelated())
        .filter_map(|p| p.best_relevant_similarity)
        .collect();
    let mut unrelated: Vec<f64> = report
        .prompts
        .iter()
        .filter(|p| p.unrelated())
        .filter_map(|p| p.best_other_similarity)
        .collect();
    relevant.sort_by(f64::total_cmp);
    unrelated.sort_by(f64::total_cmp);
    println!(
        "\nSimilarity of the best relevant candidate per query: min {}, p10 {}, p25 {}, median {} ({} of {} queries have one among the candidates)",
        quantile(&relevant, 0.0),
        quantile(&relevant, 0.10),
        quantile(&relevant, 0.25),
        quantile(&relevant, 0.5),
        relevant.len(),
        report.prompts.iter().filter(|p| !p.unrelated()).count()
    );
    println!(
        "Similarity of the best candidate per unrelated prompt: median {}, p75 {}, p90 {}, max {}",
        quantile(&unrelated, 0.5),
        quantile(&unrelated, 0.75),
        quantile(&unrelated, 0.90),
        quantile(&unrelated, 1.0)
    );
    if !report.hook_errors.is_empty() {
        println!(
            "\n{} hooks failed open or exited badly, for example: {}",
            report.hook_errors.len(),
            report.hook_errors[0]
        );
    }
}

fn similarity(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), |s| format!("{s:.3}"))
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> String {
    if sorted.is_empty() {
        return "-".to_owned();
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    format!("{:.3}", sorted[rank.clamp(1, sorted.len()) - 1])
}

fn print_latency(report: &LatencyReport) {
    println!(
        "\n## Hook latency at {} memories (process spawn to exit, release binary)\n",
        report.memories
    );
    if let Some(seconds) = report.import_s {
        println!(
            "Store built by `import` (every memory embedded) in {seconds:.0} s ({:.0} memories/s).",
            report.memories as f64 / seconds.max(1e-9)
        );
    }
    println!(
        "Load average before {}, after {}.\n",
        report.load_before, report.load_after
    );
    println!(
        "| hook | runs | p50 ms | p90 ms | p99 ms | max ms | min ms | with context | errors | targets (p50 < {P50_MS_MAX:.0}, p99 < {P99_MS_MAX:.0}) |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for hook in &report.hooks {
        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {} | {} | {} |",
            hook.event,
            hook.runs,
            hook.p50_ms,
            hook.p90_ms,
            hook.p99_ms,
            hook.max_ms,
            hook.min_ms,
            hook.with_context,
            hook.errors.len(),
            verdict(hook.p50_ms < P50_MS_MAX && hook.p99_ms < P99_MS_MAX && hook.errors.is_empty())
        );
    }
    for hook in &report.hooks {
        if let Some(error) = hook.errors.first() {
            println!("{}: first error: {error}", hook.event);
        }
    }
}

fn run() -> Result<()> {
    let mut args = parse_args()?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    // Absolute: the processes run in it, and take paths inside it.
    let out = std::fs::canonicalize(&args.out)?;
    args.out = out.clone();
    let home = out.join("home");
    std::fs::create_dir_all(&home)?;
    let mnemosyne = Mnemosyne {
        binary: std::fs::canonicalize(&args.binary)
            .with_context(|| format!("no binary at {}", args.binary.display()))?,
        home,
        cwd: out.clone(),
    };
    let started_at = Utc::now().to_rfc3339();
    let relevance = if args.relevance {
        Some(relevance(&args, &mnemosyne)?)
    } else {
        None
    };
    let latency = if args.latency {
        Some(latency(&args, &mnemosyne)?)
    } else {
        None
    };
    println!("\n# mnemosyne hook evaluation ({started_at})");
    if let Some(report) = &relevance {
        print_relevance(report);
    }
    if let Some(report) = &latency {
        print_latency(report);
    }
    let report = ReportFile {
        started_at,
        args,
        relevance,
        latency,
    };
    if let Some(parent) = report.args.json.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&report.args.json, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", report.args.json.display()))?;
    println!("\nhook-eval: report in {}", report.args.json.display());
    Ok(())
}
