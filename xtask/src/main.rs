//! Project automation, run as `cargo xtask <task>` (alias in `.cargo/config.toml`).
//!
//! - `ci`: format check, clippy with warnings denied, every test and the
//!   stress harness, once per storage backend (`sqlite`, `libsql`: they
//!   bundle SQLite and cannot be built into one binary, so each gets its own
//!   build), then the short soak. The sqlite pass builds with jemalloc, the
//!   binary's default allocator (its diagnostics too, by feature
//!   unification); the libsql pass (`--no-default-features`) with the
//!   system allocator, so both code paths of the diagnostics are tested.
//! - `soak`: the soak harness (`mnemosyne-harness`, bin `soak`) against the
//!   real server binary; without options, the short soak `ci` runs.
//! - `stress`: the stress harness (`mnemosyne-harness`, bin `stress`): every
//!   bounded structure pushed past its limit; one line per check.
//! - `eval`: recall@5 and MRR of keyword, vector and hybrid recall on the
//!   labelled set in `eval/recall-eval.json`, per embedder (`hash`,
//!   `minilm`; `--embedder` picks one), per query kind, for all queries and
//!   each half of the tuning split (report in `target/eval-report.json`).
//!   `--tune` adds the grid search behind the semantic fusion preset,
//!   `--failures` the ranks behind each hybrid miss, `--fusion SPEC`
//!   evaluates other fusion settings (see `eval/README.md`).
//! - `serve-bench`: the servers under load on a 10k-memory store (release
//!   build): MCP `recall` over stdio from one client, HTTP `/v1/recall` from
//!   64 concurrent loopback clients (driver: `mnemosyne-cli/examples/serve_bench.rs`).
//! - `bench`: the criterion benches (storage `store` and `recall`,
//!   orchestration `work_queue`, `ics`; `--skip-criterion` to reuse the last
//!   figures), then one release `mnemosyne` per backend and the comparison
//!   driver (`mnemosyne-harness`, bin `bench`): our MCP server against the
//!   peer MCP memory servers it installs from npm and PyPI at run time, and
//!   the store against raw rusqlite. Prints one table and writes
//!   `target/bench/bench-report.{json,md}`. `--quick` shrinks every size for
//!   a smoke run; `--no-peers` skips the peers. Not in `ci`: slow, and it
//!   needs the network the first time.
//! - `hook-eval`: the Claude Code hook (`mnemosyne hook`) against issue 18's
//!   targets on a release build (harness: `mnemosyne-harness`, bin
//!   `hook_eval`): UserPromptSubmit's relevance on the recall eval set's
//!   paraphrase and keyword queries, its silence on
//!   `eval/unrelated-prompts.json`, both for a sweep of similarity floors
//!   (`--floors`), and the latency of both hooks at 10k memories (`--runs`,
//!   `--memories`). Report in `target/hook-eval.json`. Not in `ci`: the
//!   10k store takes minutes to embed.
//! - `fuzz`: the cargo-fuzz targets of `fuzz/` (libFuzzer), each for
//!   `--seconds N` (default 60), with the executions per target; `ci` runs
//!   a short pass (see [`fuzz`]).
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod fuzz;
mod hook_eval;

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Cargo feature arguments for each backend; the rest of the workspace is feature-neutral.
const BACKENDS: &[(&str, &[&str])] = &[
    ("sqlite", &[]),
    ("libsql", &["--no-default-features", "--features", "libsql"]),
];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("ci") => ci(&args[1..]),
        Some("eval") => eval(&args[1..]),
        Some("stress") => stress(&args[1..]),
        Some("soak") => soak(&args[1..]),
        Some("serve-bench") => serve_bench(&args[1..]),
        Some("bench") => bench(&args[1..]),
        Some("fuzz") => fuzz::fuzz(&args[1..]),
        Some("hook-eval") => hook_eval::hook_eval(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            println!(
                "usage: cargo xtask ci [--backend sqlite|libsql]\n       cargo xtask eval [--backend sqlite|libsql] [--embedder hash|minilm|all] [--tune] [--failures] [--fusion SPEC]\n       cargo xtask stress [--backend sqlite|libsql] [--only CHECK]...\n       cargo xtask serve-bench [--backend sqlite|libsql]\n       cargo xtask bench [--quick] [--skip-criterion] [--no-peers]\n       cargo xtask soak [--release] [--duration 60s|30m|24h] [soak options]\n       {}\n       {}",
                hook_eval::USAGE,
                fuzz::USAGE
            );
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(anyhow::anyhow!(
            "unknown task {other:?}; try `cargo xtask help`"
        )),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with_env(args, &[])
}

/// [`cargo`] with extra environment variables for it and what it runs.
fn cargo_with_env(args: &[&str], env: &[(&str, String)]) -> Result<()> {
    let started = Instant::now();
    println!("xtask: cargo {}", args.join(" "));
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .status()
        .with_context(|| format!("cannot run cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    println!(
        "xtask: ok in {:.0} s: cargo {}",
        started.elapsed().as_secs_f64(),
        args.join(" ")
    );
    Ok(())
}

/// The backend named by `--backend NAME`, if any.
fn backend_arg(
    task: &str,
    args: &[String],
) -> Result<Option<&'static (&'static str, &'static [&'static str])>> {
    let name = match args {
        [] => return Ok(None),
        [flag, backend] if flag == "--backend" => backend.as_str(),
        _ => bail!("usage: cargo xtask {task} [--backend sqlite|libsql]"),
    };
    match BACKENDS.iter().find(|(backend, _)| *backend == name) {
        Some(found) => Ok(Some(found)),
        None => bail!("unknown backend {name:?}; expected sqlite or libsql"),
    }
}

fn stress(args: &[String]) -> Result<()> {
    let (backend_args, rest): (Vec<String>, Vec<String>) = match args {
        [flag, backend, rest @ ..] if flag == "--backend" => {
            (vec![flag.clone(), backend.clone()], rest.to_vec())
        }
        rest => (Vec::new(), rest.to_vec()),
    };
    let (backend, features) = backend_arg("stress", &backend_args)?.unwrap_or(&BACKENDS[0]);
    println!("xtask: stress on the {backend} backend");
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    run_stress(features, &rest)
}

/// The soak harness against the real `mnemosyne` binary: dev profile by
/// default (it shares the test build; CI runs it), `--release` for the
/// figures worth reporting. Other arguments go to the harness.
fn soak(args: &[String]) -> Result<()> {
    let release = args.iter().any(|a| a == "--release");
    let mut rest: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| *a != "--release")
        .collect();
    if rest.is_empty() {
        // No soak options: the short soak, exactly as `ci` runs it.
        rest = CI_SOAK.to_vec();
    }
    let profile: &[&str] = if release { &["--release"] } else { &[] };
    build_server_and_harness("soak", profile)?;
    // Where cargo just built them: CARGO_TARGET_DIR when set (CI may share one).
    let target_dir = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".to_owned());
    let bin_dir = format!("{target_dir}/{}", if release { "release" } else { "debug" });
    let server = format!("{bin_dir}/mnemosyne");
    let harness = format!("{bin_dir}/soak");
    println!("xtask: {harness} --bin {server} {}", rest.join(" "));
    let status = Command::new(&harness)
        .args(["--bin", &server])
        .args(&rest)
        .status()
        .with_context(|| format!("cannot run {harness}"))?;
    if !status.success() {
        bail!("the soak failed ({status})");
    }
    Ok(())
}

/// The stress binary in the dev profile: it shares the test build.
fn run_stress(features: &[&str], args: &[&str]) -> Result<()> {
    let mut run = vec!["run", "--locked", "-p", "mnemosyne-harness"];
    run.extend_from_slice(features);
    run.extend_from_slice(&["--bin", "stress", "--"]);
    run.extend_from_slice(args);
    cargo(&run)
}

/// Options of `eval` passed through to the `recall_eval` example, and
/// whether each takes a value.
const EVAL_OPTIONS: &[(&str, bool)] = &[
    ("--embedder", true),
    ("--fusion", true),
    ("--tune", false),
    ("--failures", false),
];

const EVAL_USAGE: &str = "usage: cargo xtask eval [--backend sqlite|libsql] [--embedder hash|minilm|all] [--tune] [--failures] [--fusion SPEC]";

fn eval(args: &[String]) -> Result<()> {
    let mut backend_args = Vec::new();
    let mut passed = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        if arg == "--backend" {
            backend_args.push(arg.clone());
            backend_args.push(rest.next().context(EVAL_USAGE)?.clone());
            continue;
        }
        let Some((_, takes_value)) = EVAL_OPTIONS.iter().find(|(name, _)| name == arg) else {
            bail!("unknown eval option {arg:?}; {EVAL_USAGE}");
        };
        passed.push(arg.clone());
        if *takes_value {
            passed.push(rest.next().context(EVAL_USAGE)?.clone());
        }
    }
    let (backend, features) = backend_arg("eval", &backend_args)?.unwrap_or(&BACKENDS[0]);
    println!("xtask: recall evaluation on the {backend} backend");
    let mut run = vec!["run", "--release", "--locked", "-p", "mnemosyne-storage"];
    run.extend_from_slice(features);
    run.extend_from_slice(&[
        "--example",
        "recall_eval",
        "--",
        "eval/recall-eval.json",
        "--json",
        "target/eval-report.json",
    ]);
    run.extend(passed.iter().map(String::as_str));
    cargo(&run)
}

/// `cargo build --release` of the `mnemosyne` binary with a backend's features.
fn build_release_server(features: &[&str]) -> Result<()> {
    let mut build = vec![
        "build",
        "--release",
        "--locked",
        "-p",
        "mnemosyne-cli",
        "--bin",
        "mnemosyne",
    ];
    build.extend_from_slice(features);
    cargo(&build)
}

fn serve_bench(args: &[String]) -> Result<()> {
    let (backend, features) = backend_arg("serve-bench", args)?.unwrap_or(&BACKENDS[0]);
    println!("xtask: server load on the {backend} backend (release build)");
    build_release_server(features)?;
    let mut run = vec!["run", "--release", "--locked", "-p", "mnemosyne-cli"];
    run.extend_from_slice(features);
    run.extend_from_slice(&["--example", "serve_bench"]);
    cargo(&run)
}

/// The criterion benches of `bench`: package and bench target.
const CRITERION_BENCHES: &[(&str, &[&str])] = &[
    ("mnemosyne-storage", &["store", "recall"]),
    ("mnemosyne-orchestration", &["work_queue"]),
    ("mnemosyne-ics", &["ics"]),
];

/// Cargo's target directory (`CARGO_TARGET_DIR`, else `target`).
/// Builds `mnemosyne` and the harness binary `harness_bin` in one cargo
/// run: built apart, cargo unifies their features differently and rebuilds
/// the shared crates twice.
fn build_server_and_harness(harness_bin: &str, profile: &[&str]) -> Result<()> {
    cargo(
        &[
            &[
                "build",
                "--locked",
                "-p",
                "mnemosyne-cli",
                "-p",
                "mnemosyne-harness",
                "--bin",
                "mnemosyne",
                "--bin",
                harness_bin,
            ],
            profile,
        ]
        .concat(),
    )
}

fn target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| "target".into(), Into::into)
}

/// Criterion benches, one release `mnemosyne` per backend, then the
/// comparison driver, which prints the table and writes the report.
fn bench(args: &[String]) -> Result<()> {
    let mut quick = false;
    let mut skip_criterion = false;
    let mut peers = true;
    for arg in args {
        match arg.as_str() {
            "--quick" => quick = true,
            "--skip-criterion" => skip_criterion = true,
            "--no-peers" => peers = false,
            other => bail!(
                "unknown bench option {other:?}; usage: cargo xtask bench [--quick] [--skip-criterion] [--no-peers]"
            ),
        }
    }
    let quick_env: Vec<(&str, String)> = if quick {
        vec![("MNEMOSYNE_BENCH_QUICK", "1".into())]
    } else {
        Vec::new()
    };
    if !skip_criterion {
        for (package, benches) in CRITERION_BENCHES {
            let mut run = vec!["bench", "--locked", "-p", package];
            for bench in *benches {
                run.extend_from_slice(&["--bench", bench]);
            }
            cargo_with_env(&run, &quick_env)?;
        }
    }
    let target = target_dir();
    let bin_dir = target.join("bench").join("bin");
    std::fs::create_dir_all(&bin_dir)
        .with_context(|| format!("cannot create {}", bin_dir.display()))?;
    // The backends bundle SQLite and exclude each other: one build each,
    // the binary copied aside before the next build overwrites it.
    let mut servers = Vec::new();
    for (backend, features) in BACKENDS {
        build_release_server(features)?;
        let built = target.join("release").join("mnemosyne");
        let copy = bin_dir.join(format!("mnemosyne-{backend}"));
        std::fs::copy(&built, &copy)
            .with_context(|| format!("cannot copy {} to {}", built.display(), copy.display()))?;
        servers.push(format!("{backend}={}", copy.display()));
    }
    let mut command = String::from("cargo xtask bench");
    for arg in args {
        command.push(' ');
        command.push_str(arg);
    }
    let out = target.join("bench").display().to_string();
    let peers_dir = target.join("peers").display().to_string();
    let criterion_dir = target.join("criterion").display().to_string();
    let mut run = vec![
        "run",
        "--release",
        "--locked",
        "-p",
        "mnemosyne-harness",
        "--bin",
        "bench",
        "--",
        "--out",
        &out,
        "--peers-dir",
        &peers_dir,
        "--criterion-dir",
        &criterion_dir,
        // Where the storage `store` bench writes its latency pass.
        "--store-json",
        "target/bench-store.json",
        "--command",
        &command,
    ];
    for server in &servers {
        run.extend_from_slice(&["--mnemosyne", server]);
    }
    if quick {
        run.push("--quick");
    }
    if !peers {
        run.push("--no-peers");
    }
    cargo(&run)
}

/// The short soak of `ci` and of `cargo xtask soak` without options: one
/// minute judged after a 20 s warm-up, with an
/// embedding cache small enough to be full before the judged window (a
/// cache still filling would read as growth); then the memory-limited phase.
/// 2 000 preloaded memories: the preload embeds each with the default local
/// model (tens of texts a second here), and 10 000 took minutes of CI.
const CI_SOAK: [&str; 8] = [
    "--memories",
    "2000",
    "--duration",
    "60s",
    "--warm-up",
    "20s",
    "--limit",
    "embedding_cache_bytes_max=2097152",
];

/// Where `.ci/run` installs the Python `mcp` SDK for the MCP end-to-end test.
const PYTHON_VENV: &str = "target/py/bin/python";

/// Seconds `ci` fuzzes each target: a smoke pass (the seeds and what a
/// short run finds), not a search; `cargo xtask fuzz` runs longer.
const CI_FUZZ_SECONDS: u64 = 10;

fn ci(args: &[String]) -> Result<()> {
    let only = backend_arg("ci", args)?.map(|(name, _)| *name);
    cargo(&["fmt", "--all", "--check"])?;
    // The Python MCP client test runs when a python with the `mcp` package is
    // named; `.ci/run` installs one and also requires it.
    let mut env = Vec::new();
    if std::env::var_os("MNEMOSYNE_TEST_PYTHON").is_none()
        && std::path::Path::new(PYTHON_VENV).exists()
    {
        let python = std::fs::canonicalize(PYTHON_VENV)?;
        env.push(("MNEMOSYNE_TEST_PYTHON", python.display().to_string()));
    }
    for (backend, features) in BACKENDS
        .iter()
        .filter(|(b, _)| only.is_none_or(|o| o == *b))
    {
        println!("xtask: backend {backend}");
        let mut clippy = vec!["clippy", "--workspace", "--all-targets", "--locked"];
        clippy.extend_from_slice(features);
        clippy.extend_from_slice(&["--", "-D", "warnings"]);
        cargo(&clippy)?;
        let mut test = vec!["test", "--workspace", "--locked"];
        test.extend_from_slice(features);
        cargo_with_env(&test, &env)?;
        run_stress(features, &[])?;
    }
    if only.is_none_or(|o| o == "sqlite") {
        soak(&[])?;
        fuzz::fuzz(&["--seconds".into(), CI_FUZZ_SECONDS.to_string()])?;
    }
    println!("xtask: ci passed");
    Ok(())
}
