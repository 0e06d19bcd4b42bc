//! `cargo xtask hook-eval`: the Claude Code hook against issue 18's targets
//! (relevance on the recall eval set, silence on unrelated prompts, a sweep
//! of the similarity floor, latency at 10k memories), measured on a release
//! build by the `hook_eval` harness (`mnemosyne-harness`).
//!
//! The `mnemosyne` binary is copied to `target/hook-eval/bin/` before the
//! harness runs it: another build may replace `target/release/mnemosyne`
//! at any moment, and the harness spawns it thousands of times.

use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{build_server_and_harness, target_dir};

pub const USAGE: &str = "cargo xtask hook-eval [--floors 30,35,40,45,50,55,60] [--runs N] [--memories N] [--skip-relevance] [--skip-latency] [--reuse-store]";

/// Options passed through to the harness, and whether each takes a value.
const OPTIONS: &[(&str, bool)] = &[
    ("--floors", true),
    ("--runs", true),
    ("--memories", true),
    ("--skip-relevance", false),
    ("--skip-latency", false),
    ("--reuse-store", false),
];

pub fn hook_eval(args: &[String]) -> Result<()> {
    let mut passed = Vec::new();
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some((_, takes_value)) = OPTIONS.iter().find(|(name, _)| name == arg) else {
            bail!("unknown hook-eval option {arg:?}; usage: {USAGE}");
        };
        passed.push(arg.clone());
        if *takes_value {
            passed.push(
                rest.next()
                    .with_context(|| format!("{arg} needs a value; usage: {USAGE}"))?
                    .clone(),
            );
        }
    }
    build_server_and_harness("hook_eval", &["--release"])?;
    let target = target_dir();
    let out = target.join("hook-eval");
    let bin_dir = out.join("bin");
    std::fs::create_dir_all(&bin_dir)
        .with_context(|| format!("cannot create {}", bin_dir.display()))?;
    let built = target.join("release").join("mnemosyne");
    let server = bin_dir.join("mnemosyne");
    std::fs::copy(&built, &server)
        .with_context(|| format!("cannot copy {} to {}", built.display(), server.display()))?;
    let harness_built = target.join("release").join("hook_eval");
    let harness = bin_dir.join("hook_eval");
    std::fs::copy(&harness_built, &harness).with_context(|| {
        format!(
            "cannot copy {} to {}",
            harness_built.display(),
            harness.display()
        )
    })?;
    let json = target.join("hook-eval.json");
    println!(
        "xtask: {} --bin {} --out {} --json {} {}",
        harness.display(),
        server.display(),
        out.display(),
        json.display(),
        passed.join(" ")
    );
    let status = Command::new(&harness)
        .arg("--bin")
        .arg(&server)
        .arg("--out")
        .arg(&out)
        .arg("--json")
        .arg(&json)
        .args(&passed)
        .status()
        .with_context(|| format!("cannot run {}", harness.display()))?;
    if !status.success() {
        bail!("the hook evaluation failed ({status})");
    }
    Ok(())
}
