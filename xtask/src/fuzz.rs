//! `cargo xtask fuzz [--seconds N] [--target NAME]... [--backend sqlite|libsql]`:
//! builds the cargo-fuzz targets of `fuzz/` once (libFuzzer, no sanitizer:
//! that runs on a stable toolchain), runs each for N seconds, and prints
//! the executions per target. A crash fails the task; libFuzzer's log and
//! the crashing input are named.
//!
//! Everything it writes stays under the target directory (`fuzz/` below
//! it): the build, the corpus each run grows (the committed seeds in
//! `fuzz/corpus/<target>` are only read), crash artifacts, logs, and the
//! targets' temp databases.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::{BACKENDS, target_dir};

/// Every fuzz target (`fuzz/fuzz_targets/<name>.rs`).
pub const TARGETS: &[&str] = &[
    "namespace",
    "fts_query",
    "import_line",
    "crdt_load",
    "mcp_message",
    "http_request",
];

/// The cargo-fuzz `.ci/run` installs (under `target/tools`).
pub const CARGO_FUZZ_VERSION: &str = "0.13.2";

/// Seconds per target when `--seconds` is not given.
const SECONDS_DEFAULT: u64 = 60;

/// libFuzzer's bounds on one input: a slower input, or one process holding
/// more memory, or one allocation over the malloc limit, is a crash.
const INPUT_TIMEOUT_S: u64 = 60;
const RSS_LIMIT_MB: u64 = 2_048;
const MALLOC_LIMIT_MB: u64 = 512;

pub const USAGE: &str =
    "cargo xtask fuzz [--seconds N] [--target NAME]... [--backend sqlite|libsql]";

/// What one target's run did.
#[derive(Debug)]
struct Run {
    target: &'static str,
    executions: Option<u64>,
    seconds: f64,
    crash: Option<String>,
}

pub fn fuzz(args: &[String]) -> Result<()> {
    let mut seconds = SECONDS_DEFAULT;
    let mut targets: Vec<&'static str> = Vec::new();
    let mut features: &[&str] = BACKENDS[0].1;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value; usage: {USAGE}"))
        };
        match arg.as_str() {
            "--seconds" => {
                let text = value()?;
                seconds = text.parse().ok().filter(|&s| s > 0).with_context(|| {
                    format!("--seconds {text:?}: expected a whole number above 0")
                })?;
            }
            "--target" => {
                let name = value()?;
                let Some(found) = TARGETS.iter().find(|t| **t == name.as_str()) else {
                    bail!(
                        "unknown fuzz target {name:?}; targets: {}",
                        TARGETS.join(", ")
                    );
                };
                targets.push(found);
            }
            "--backend" => {
                let name = value()?;
                let Some((_, found)) = BACKENDS.iter().find(|(b, _)| *b == name.as_str()) else {
                    bail!("unknown backend {name:?}; expected sqlite or libsql");
                };
                features = found;
            }
            other => bail!("unknown option {other:?}; usage: {USAGE}"),
        }
    }
    if targets.is_empty() {
        targets = TARGETS.to_vec();
    }
    let out = std::path::absolute(target_dir().join("fuzz"))?;
    // Where `.ci/run` installs cargo-fuzz (always `target/`, whatever CARGO_TARGET_DIR says).
    let tools = std::path::absolute("target/tools/bin")?;
    let path = std::env::join_paths(std::iter::once(tools).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo)
        .args(["fuzz", "--version"])
        .env("PATH", &path)
        .output()
        .is_ok_and(|o| o.status.success());
    if !installed {
        bail!(
            "cargo-fuzz is not installed: cargo install --locked cargo-fuzz@{CARGO_FUZZ_VERSION} \
             --root target/tools (what .ci/run does)"
        );
    }

    let started = Instant::now();
    let target_dir_arg = out.join("build");
    let mut build = vec![
        "fuzz".to_owned(),
        "build".into(),
        "--sanitizer".into(),
        "none".into(),
        // The default (1) makes each build several minutes longer; runs barely slow.
        "--codegen-units".into(),
        "16".into(),
        "--target-dir".into(),
        target_dir_arg.display().to_string(),
    ];
    build.extend(features.iter().map(|f| (*f).to_owned()));
    println!("xtask: cargo {}", build.join(" "));
    let status = Command::new(&cargo)
        .args(&build)
        .env("PATH", &path)
        .status()
        .context("cannot run cargo fuzz build")?;
    if !status.success() {
        bail!("cargo fuzz build failed ({status})");
    }
    println!(
        "xtask: fuzz targets built in {:.0} s",
        started.elapsed().as_secs_f64()
    );

    let mut runs = Vec::new();
    for target in targets {
        let run = run_target(
            target,
            seconds,
            &out,
            &target_dir_arg,
            features,
            &path,
            &cargo,
        )?;
        let failed = run.crash.is_some();
        runs.push(run);
        if failed {
            break;
        }
    }
    println!("xtask: fuzz results (seconds per target: {seconds})");
    println!(
        "{:<14} {:>12} {:>8} {:>10}  result",
        "target", "executions", "seconds", "exec/s"
    );
    for run in &runs {
        let executions = run.executions.map_or("?".to_owned(), |e| e.to_string());
        let rate = run.executions.map_or("?".to_owned(), |e| {
            format!("{:.0}", e as f64 / run.seconds.max(1.0))
        });
        let result = run.crash.as_deref().unwrap_or("ok");
        println!(
            "{:<14} {executions:>12} {:>8.0} {rate:>10}  {result}",
            run.target, run.seconds
        );
    }
    if let Some(run) = runs.iter().find(|r| r.crash.is_some()) {
        bail!("fuzz target {} crashed", run.target);
    }
    println!(
        "xtask: fuzzing done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Runs one target for `seconds` on its grown corpus and the committed seeds.
fn run_target(
    target: &'static str,
    seconds: u64,
    out: &Path,
    build_dir: &Path,
    features: &[&str],
    path: &std::ffi::OsStr,
    cargo: &str,
) -> Result<Run> {
    let corpus = out.join("corpus").join(target);
    let seeds = PathBuf::from("fuzz/corpus").join(target);
    let artifacts = out.join("artifacts").join(target);
    let tmp = out.join("tmp").join(target);
    let logs = out.join("logs");
    for dir in [&corpus, &artifacts, &tmp, &logs] {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_path = logs.join(format!("{target}.log"));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut run = vec![
        "fuzz".to_owned(),
        "run".into(),
        "--sanitizer".into(),
        "none".into(),
        "--codegen-units".into(),
        "16".into(),
        "--target-dir".into(),
        build_dir.display().to_string(),
    ];
    run.extend(features.iter().map(|f| (*f).to_owned()));
    run.extend([
        target.to_owned(),
        corpus.display().to_string(),
        seeds.display().to_string(),
        "--".into(),
        format!("-max_total_time={seconds}"),
        format!("-timeout={INPUT_TIMEOUT_S}"),
        format!("-rss_limit_mb={RSS_LIMIT_MB}"),
        format!("-malloc_limit_mb={MALLOC_LIMIT_MB}"),
        format!("-artifact_prefix={}/", artifacts.display()),
        "-print_final_stats=1".into(),
    ]);
    println!(
        "xtask: fuzzing {target} for {seconds} s (log: {})",
        log_path.display()
    );
    let started = Instant::now();
    let status = Command::new(cargo)
        .args(&run)
        .env("PATH", path)
        // The targets' databases (tempfile honours TMPDIR).
        .env("TMPDIR", &tmp)
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("cannot run cargo fuzz run {target}"))?;
    let seconds = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&tmp);
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    let executions = executions(&text);
    let crash = (!status.success()).then(|| {
        let artifact = text
            .lines()
            .rev()
            .find_map(|l| l.split_once("Test unit written to ").map(|(_, p)| p.trim()))
            .unwrap_or("no input saved");
        for line in text
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            eprintln!("  | {line}");
        }
        format!("CRASH ({status}): {artifact}; log {}", log_path.display())
    });
    Ok(Run {
        target,
        executions,
        seconds,
        crash,
    })
}

/// Executions libFuzzer reports at the end of a run (`-print_final_stats`),
/// else in its last status line (`#N ...`).
fn executions(log: &str) -> Option<u64> {
    let stat = log.lines().rev().find_map(|l| {
        l.strip_prefix("stat::number_of_executed_units:")
            .and_then(|n| n.trim().parse().ok())
    });
    stat.or_else(|| {
        log.lines().rev().find_map(|l| {
            l.strip_prefix('#')
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|n| n.parse().ok())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executions_come_from_the_final_stats_else_the_last_status_line() {
        let log = "#2\tINITED\n#4096\tpulse  cov: 1\nDone 5000 runs in 3 second(s)\n\
                   stat::number_of_executed_units: 5003\nstat::average_exec_per_sec: 1667\n";
        assert_eq!(executions(log), Some(5003));
        assert_eq!(executions("#2\tINITED\n#4096\tpulse  cov: 1\n"), Some(4096));
        assert_eq!(executions("no libFuzzer output"), None);
    }
}
