//! The side-by-side comparison of `cargo xtask bench` (which runs the
//! criterion benches and builds one `mnemosyne` binary per backend first).
//!
//! - Our MCP server over stdio (`mnemosyne serve mcp`, each backend) and the
//!   peer MCP memory servers (installed at run time, see
//!   `mnemosyne_harness::peers`), all through one rmcp driver: N stores then
//!   M searches of the standard workload at 1k and 10k items, per-op median
//!   and p99, ops/s, peak RSS of the server process tree.
//! - The raw SQLite ceiling, read from what the storage `store` bench wrote:
//!   criterion's estimates (`remember_durable`, `import_batch`) and
//!   `target/bench-store.json` (keyword recall latency at 10k and 100k).
//! - The targets of issue 8 judged against those figures.
//!
//! Prints the table (Markdown) and writes `bench-report.json` and
//! `bench-report.md` into `--out`.
//!
//! Usage: bench --mnemosyne BACKEND=PATH [--mnemosyne BACKEND=PATH]...
//!   [--quick] [--no-peers] [--out DIR] [--peers-dir DIR]
//!   [--criterion-dir DIR] [--store-json PATH] [--command TEXT]

#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use chrono::Utc;
use mnemosyne_core::Memory;
use mnemosyne_core::workload::{Workload, WorkloadQuery};
use mnemosyne_harness::bench_report::{Machine, Report, Row, TargetCheck};
use mnemosyne_harness::mcp_driver::{self, Budget, RunFigures, ServerCommand, ToolMapping};
use mnemosyne_harness::peers::{self, Peer};

/// Seed of the workload (the storage benches and serve-bench use the same).
const SEED: u64 = 42;
/// One install command of a peer (npm install, venv, pip install).
const INSTALL_TIMEOUT_S: u64 = 600;
/// Spawn to answered `tools/list` (basic-memory takes several seconds).
const START_TIMEOUT_S: u64 = 120;
/// One tool call.
const CALL_TIMEOUT_S: u64 = 30;
/// Targets of issue 8.
const PEER_SPEEDUP_MIN: f64 = 10.0;
const PEER_RSS_RATIO_MIN: f64 = 4.0;
const DURABLE_WRITE_OF_RAW_MIN: f64 = 0.7;
const KEYWORD_P50_100K_MS_MAX: f64 = 1.0;

/// Sizes and limits of one mode.
#[derive(Clone, Copy, Debug)]
struct Plan {
    sizes: &'static [usize],
    searches: usize,
    store_phase_s: u64,
    search_phase_s: u64,
}

const FULL: Plan = Plan {
    sizes: &[1_000, 10_000],
    searches: 1_000,
    store_phase_s: 300,
    search_phase_s: 45,
};

const QUICK: Plan = Plan {
    sizes: &[100, 500],
    searches: 50,
    store_phase_s: 20,
    search_phase_s: 10,
};

#[derive(Debug)]
struct Args {
    quick: bool,
    peers: bool,
    ours: Vec<(String, PathBuf)>,
    out: PathBuf,
    peers_dir: PathBuf,
    criterion_dir: PathBuf,
    store_json: PathBuf,
    command: String,
}

fn parse_args() -> Result<Args> {
    let mut args = Args {
        quick: false,
        peers: true,
        ours: Vec::new(),
        out: PathBuf::from("target/bench"),
        peers_dir: PathBuf::from("target/peers"),
        criterion_dir: PathBuf::from("target/criterion"),
        store_json: PathBuf::from("target/bench-store.json"),
        command: std::env::args().collect::<Vec<_>>().join(" "),
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--quick" => args.quick = true,
            "--no-peers" => args.peers = false,
            "--mnemosyne" => {
                let pair = value()?;
                let Some((backend, path)) = pair.split_once('=') else {
                    bail!("--mnemosyne takes BACKEND=PATH, got {pair:?}");
                };
                args.ours.push((backend.to_owned(), PathBuf::from(path)));
            }
            "--out" => args.out = PathBuf::from(value()?),
            "--peers-dir" => args.peers_dir = PathBuf::from(value()?),
            "--criterion-dir" => args.criterion_dir = PathBuf::from(value()?),
            "--store-json" => args.store_json = PathBuf::from(value()?),
            "--command" => args.command = value()?,
            other => bail!("unknown argument {other:?} (see the doc comment of bench.rs)"),
        }
    }
    if args.ours.is_empty() {
        bail!("name at least one server binary: --mnemosyne sqlite=target/release/mnemosyne");
    }
    Ok(args)
}

fn main() -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench: error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// The standard workload at one size: its memories (without links: their
/// targets are workload ids no server knows) and queries drawn from them.
fn workload(size: usize, searches: usize) -> (Vec<Memory>, Vec<WorkloadQuery>) {
    let mut workload = Workload::new(SEED);
    let now = Utc::now();
    let memories = (0..size)
        .map(|_| {
            let mut memory = workload.memory(now);
            memory.links.clear();
            memory
        })
        .collect();
    let queries = (0..searches).map(|_| workload.query()).collect();
    (memories, queries)
}

/// One server's run at one size.
struct Measured {
    system: String,
    ours: bool,
    size: usize,
    figures: RunFigures,
}

async fn run() -> Result<()> {
    let args = parse_args()?;
    let plan = if args.quick { QUICK } else { FULL };
    let budget = Budget {
        start_timeout: Duration::from_secs(START_TIMEOUT_S),
        call_timeout: Duration::from_secs(CALL_TIMEOUT_S),
        store_phase: Duration::from_secs(plan.store_phase_s),
        search_phase: Duration::from_secs(plan.search_phase_s),
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let started_at = Utc::now().to_rfc3339();
    let mut notes = vec![format!(
        "MCP rows: one client, one call at a time over stdio; N stores then {} searches of the \
         standard workload (seed {SEED}); store phase capped at {} s, search phase at {} s, \
         each call at {CALL_TIMEOUT_S} s; a fresh server and data directory per size; peak RSS \
         is VmHWM of the server process (and any children) from procfs",
        plan.searches, plan.store_phase_s, plan.search_phase_s
    )];
    let mut measured = Vec::new();
    for (backend, binary) in &args.ours {
        let binary = std::fs::canonicalize(binary)
            .with_context(|| format!("no server binary at {}", binary.display()))?;
        for &size in plan.sizes {
            let system = format!("mnemosyne ({backend})");
            let dir = tempfile::tempdir().context("cannot create a temp dir")?;
            let command = ServerCommand {
                program: binary.clone(),
                args: vec![
                    "--db".into(),
                    dir.path().join("bench.db").display().to_string(),
                    "serve".into(),
                    "mcp".into(),
                ],
                env: vec![("HOME".into(), dir.path().display().to_string())],
                stderr_log: dir.path().join("server-stderr.log"),
                working_dir: dir.path().to_owned(),
            };
            if let Some(run) = drive(&system, &command, size, plan, &budget).await {
                measured.push(Measured {
                    system,
                    ours: true,
                    size,
                    figures: run,
                });
            }
        }
    }
    notes.push(format!("mnemosyne: {}", ToolMapping::Mnemosyne.describe()));
    if args.peers {
        for peer in Peer::ALL {
            eprintln!(
                "bench: installing {} from {}",
                peer.package(),
                peer.registry()
            );
            let installed = match peers::install(
                peer,
                &args.peers_dir,
                Duration::from_secs(INSTALL_TIMEOUT_S),
            )
            .await
            {
                Ok(installed) => installed,
                Err(error) => {
                    let line = format!(
                        "peer {} ({}) not measured: cannot install: {error}",
                        peer.package(),
                        peer.registry()
                    );
                    eprintln!("bench: {line}");
                    notes.push(line);
                    continue;
                }
            };
            let system = installed.label();
            let mut mapped = None;
            for &size in plan.sizes {
                let dir = tempfile::tempdir().context("cannot create a temp dir")?;
                let command = installed.command(dir.path());
                if let Some(run) = drive(&system, &command, size, plan, &budget).await {
                    mapped = Some(run.mapping);
                    measured.push(Measured {
                        system: system.clone(),
                        ours: false,
                        size,
                        figures: run,
                    });
                }
            }
            if let Some(mapping) = mapped {
                notes.push(format!("{system}: {}", mapping.describe()));
            }
        }
    } else {
        notes.push("peers not run (--no-peers)".into());
    }
    let mut rows: Vec<Row> = measured.iter().flat_map(mcp_rows).collect();
    let mut targets = peer_targets(&measured);
    let ceiling = ceiling_rows(&args.criterion_dir, &args.store_json, &mut notes);
    rows.extend(ceiling.rows);
    targets.extend(ceiling.targets);
    let report = Report {
        started_at,
        command: args.command.clone(),
        quick: args.quick,
        machine: machine(),
        rows,
        targets,
        notes,
    };
    let markdown = document(&report);
    let json_path = args.out.join("bench-report.json");
    let md_path = args.out.join("bench-report.md");
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)?)
        .with_context(|| format!("cannot write {}", json_path.display()))?;
    std::fs::write(&md_path, &markdown)
        .with_context(|| format!("cannot write {}", md_path.display()))?;
    println!("{}", report.to_markdown());
    println!(
        "bench: report written to {} and {}",
        json_path.display(),
        md_path.display()
    );
    Ok(())
}

/// One run, with a line of progress; `None` (and the reason on stderr) if it failed.
async fn drive(
    system: &str,
    command: &ServerCommand,
    size: usize,
    plan: Plan,
    budget: &Budget,
) -> Option<RunFigures> {
    let (memories, queries) = workload(size, plan.searches);
    eprintln!(
        "bench: {system}: {size} stores, then {} searches",
        queries.len()
    );
    match mcp_driver::run(command, &memories, &queries, budget).await {
        Ok(run) => {
            eprintln!(
                "bench: {system} at {size}: stored {} ({:.0}/s), searched {} (median {:.2} ms), peak RSS {:.1} MiB{}",
                run.items_stored,
                run.store.as_ref().map_or(0.0, |s| s.ops_per_s),
                run.search.as_ref().map_or(0, |s| s.ops),
                run.search.as_ref().map_or(0.0, |s| s.median_ms),
                run.peak_rss_mib.unwrap_or(0.0),
                run.first_error
                    .as_ref()
                    .map_or(String::new(), |e| format!("; first error: {e}"))
            );
            Some(run)
        }
        Err(error) => {
            eprintln!(
                "bench: {system} at {size}: not measured: {error} (server stderr: {})",
                command.stderr_log.display()
            );
            None
        }
    }
}

fn errors_note(errors: u64, first_error: Option<&String>) -> String {
    match (errors, first_error) {
        (0, _) => String::new(),
        (n, Some(first)) => format!("{n} errors, first: {}", truncate(first, 120)),
        (n, None) => format!("{n} errors"),
    }
}

fn truncate(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let head: String = text.chars().take(chars_max).collect();
    format!("{head}...")
}

fn join_notes(parts: &[String]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .cloned()
        .collect::<Vec<_>>()
        .join("; ")
}

/// The store and search rows of one run.
fn mcp_rows(measured: &Measured) -> Vec<Row> {
    let run = &measured.figures;
    let mut rows = Vec::new();
    let capped = if run.store_capped {
        format!(
            "store phase capped: {} of {} stored",
            run.items_stored, run.items_wanted
        )
    } else {
        String::new()
    };
    if let Some(store) = &run.store {
        rows.push(Row {
            system: measured.system.clone(),
            work: format!("store via MCP `{}`", run.mapping.store_tool()),
            items: run.items_stored,
            ops: store.ops,
            median_ms: Some(store.median_ms),
            p99_ms: Some(store.p99_ms),
            ops_per_s: Some(store.ops_per_s),
            peak_rss_mib: run.peak_rss_mib,
            note: join_notes(&[
                format!("size {}", measured.size),
                capped.clone(),
                errors_note(store.errors, run.first_error.as_ref()),
            ]),
        });
    }
    if let Some(search) = &run.search {
        let search_capped = if run.search_capped {
            "search phase capped".to_owned()
        } else {
            String::new()
        };
        rows.push(Row {
            system: measured.system.clone(),
            work: format!("search via MCP `{}`", run.mapping.search_tool()),
            items: run.items_stored,
            ops: search.ops,
            median_ms: Some(search.median_ms),
            p99_ms: Some(search.p99_ms),
            ops_per_s: Some(search.ops_per_s),
            peak_rss_mib: run.peak_rss_mib,
            note: join_notes(&[
                format!("size {}", measured.size),
                capped,
                search_capped,
                errors_note(search.errors, run.first_error.as_ref()),
            ]),
        });
    }
    rows
}

/// Ours against each peer at the largest size both measured.
fn peer_targets(measured: &[Measured]) -> Vec<TargetCheck> {
    let mut checks = Vec::new();
    let Some(size) = measured.iter().map(|m| m.size).max() else {
        return checks;
    };
    let at_size = |ours: bool| {
        measured
            .iter()
            .filter(move |m| m.ours == ours && m.size == size)
    };
    for ours in at_size(true) {
        for peer in at_size(false) {
            let versus = if peer.figures.items_stored < peer.figures.items_wanted {
                format!(
                    "{} vs {} at {size} (peer held {} items)",
                    ours.system, peer.system, peer.figures.items_stored
                )
            } else {
                format!("{} vs {} at {size}", ours.system, peer.system)
            };
            let (o, p) = (&ours.figures, &peer.figures);
            if let (Some(o_store), Some(p_store)) = (&o.store, &p.store) {
                checks.push(TargetCheck::at_least(
                    format!("store ops/s >= {PEER_SPEEDUP_MIN}x peer: {versus}"),
                    o_store.ops_per_s / p_store.ops_per_s.max(f64::EPSILON),
                    PEER_SPEEDUP_MIN,
                    "x",
                ));
            }
            if let (Some(o_search), Some(p_search)) = (&o.search, &p.search) {
                checks.push(TargetCheck::at_least(
                    format!("search median latency <= 1/{PEER_SPEEDUP_MIN} of peer: {versus}"),
                    p_search.median_ms / o_search.median_ms.max(f64::EPSILON),
                    PEER_SPEEDUP_MIN,
                    "x faster",
                ));
            }
            if let (Some(o_rss), Some(p_rss)) = (o.peak_rss_mib, p.peak_rss_mib) {
                checks.push(TargetCheck::at_least(
                    format!("peak RSS <= 1/{PEER_RSS_RATIO_MIN} of peer: {versus}"),
                    p_rss / o_rss.max(f64::EPSILON),
                    PEER_RSS_RATIO_MIN,
                    "x smaller",
                ));
            }
        }
    }
    checks
}

struct Ceiling {
    rows: Vec<Row>,
    targets: Vec<TargetCheck>,
}

/// Criterion's median estimate of one benchmark, in nanoseconds per iteration.
fn criterion_median_ns(criterion_dir: &Path, id: &str) -> Option<f64> {
    let path = criterion_dir.join(id).join("new").join("estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let value: serde_json::Value = serde_json::from_str(&text).ok()?;
    value["median"]["point_estimate"].as_f64()
}

fn modified(path: &Path) -> String {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .map(|t| {
            chrono::DateTime::<Utc>::from(t)
                .format("%Y-%m-%d %H:%M UTC")
                .to_string()
        })
        .unwrap_or_else(|_| "unknown time".into())
}

/// The in-process store against raw rusqlite, from the storage `store` bench's output.
fn ceiling_rows(criterion_dir: &Path, store_json: &Path, notes: &mut Vec<String>) -> Ceiling {
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    let durable: Vec<(&str, Option<f64>)> = ["store", "raw_rusqlite"]
        .into_iter()
        .map(|who| {
            (
                who,
                criterion_median_ns(criterion_dir, &format!("remember_durable/{who}")),
            )
        })
        .collect();
    let system = |who: &str| {
        if who == "store" {
            "mnemosyne store (sqlite, in-process)".to_owned()
        } else {
            "raw rusqlite (ceiling)".to_owned()
        }
    };
    for (who, median_ns) in &durable {
        if let Some(ns) = median_ns {
            rows.push(Row {
                system: system(who),
                work: "durable remember: 1 insert per transaction".into(),
                items: 0,
                ops: 0,
                median_ms: Some(ns / 1e6),
                p99_ms: None,
                ops_per_s: Some(1e9 / ns),
                peak_rss_mib: None,
                note: "criterion median (`store` bench)".into(),
            });
        }
    }
    if let [(_, Some(store_ns)), (_, Some(raw_ns))] = durable.as_slice() {
        targets.push(TargetCheck::at_least(
            "durable remember through the store >= 0.7x raw SQLite",
            raw_ns / store_ns,
            DURABLE_WRITE_OF_RAW_MIN,
            "x raw",
        ));
    }
    for who in ["store", "raw_rusqlite"] {
        if let Some(ns) = criterion_median_ns(criterion_dir, &format!("import_batch/{who}/10000")) {
            rows.push(Row {
                system: system(who),
                work: "bulk import: 10 000 rows per transaction".into(),
                items: 10_000,
                ops: 0,
                median_ms: Some(ns / 1e6 / 10_000.0),
                p99_ms: None,
                ops_per_s: Some(10_000.0 * 1e9 / ns),
                peak_rss_mib: None,
                note: "criterion median per batch / 10 000 (`store` bench)".into(),
            });
        }
    }
    if durable.iter().all(|(_, ns)| ns.is_none()) {
        notes.push(format!(
            "no criterion estimates under {} (run without --skip-criterion)",
            criterion_dir.display()
        ));
    } else {
        notes.push(format!(
            "criterion estimates read from {} (written {})",
            criterion_dir.display(),
            modified(&criterion_dir.join("remember_durable"))
        ));
    }
    let Some(report) = std::fs::read_to_string(store_json)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
    else {
        notes.push(format!(
            "no {} (the storage `store` bench writes it)",
            store_json.display()
        ));
        return Ceiling { rows, targets };
    };
    notes.push(format!(
        "keyword recall latency read from {} (written {}): 2 000 workload queries, limit 10, in-process",
        store_json.display(),
        modified(store_json)
    ));
    let mut counts: Vec<u64> = report
        .as_object()
        .map(|o| {
            o.keys()
                .filter_map(|k| k.strip_prefix("recall_")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    counts.sort_unstable();
    for &count in &counts {
        let entry = &report[format!("recall_{count}")];
        for (who, key) in [("store", "keyword"), ("raw_rusqlite", "raw")] {
            let (Some(p50), Some(p99)) =
                (entry[key]["p50_ms"].as_f64(), entry[key]["p99_ms"].as_f64())
            else {
                continue;
            };
            rows.push(Row {
                system: system(who),
                work: "keyword recall (FTS5 bm25 top 10)".into(),
                items: count,
                ops: 2_000,
                median_ms: Some(p50),
                p99_ms: Some(p99),
                ops_per_s: None,
                peak_rss_mib: None,
                note: if who == "store" {
                    format!(
                        "frequent-term p99 {:.2} ms",
                        entry[key]["frequent_p99_ms"].as_f64().unwrap_or(0.0)
                    )
                } else {
                    String::new()
                },
            });
        }
    }
    if let Some(&largest) = counts.last()
        && let Some(p50) = report[format!("recall_{largest}")]["keyword"]["p50_ms"].as_f64()
    {
        let caveat = if largest == 100_000 {
            String::new()
        } else {
            format!(" (measured at {largest}: a quick run)")
        };
        targets.push(TargetCheck::at_most(
            format!("keyword recall p50 at 100k < 1 ms{caveat}"),
            p50,
            KEYWORD_P50_100K_MS_MAX,
            "ms",
        ));
    }
    Ceiling { rows, targets }
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim_end().to_owned())
        .unwrap_or_else(|error| format!("cannot run {program}: {error}"))
}

fn machine() -> Machine {
    Machine {
        nproc: command_output("nproc", &[]),
        free_h: command_output("free", &["-h"]),
    }
}

/// The whole Markdown file: command, machine, table, targets, notes.
fn document(report: &Report) -> String {
    format!(
        "# Benchmark report\n\nCommand: `{}`{}\n\nStarted: {}\n\nMachine: `nproc` = {}\n\n```\n$ free -h\n{}\n```\n\n{}",
        report.command,
        if report.quick {
            " (quick: smoke-test sizes, figures not comparable)"
        } else {
            ""
        },
        report.started_at,
        report.machine.nproc,
        report.machine.free_h,
        report.to_markdown()
    )
}
