//! `mnemosyne hook`: Claude Code's hook inputs (fixtures captured from a real
//! `claude`) in, the hook output JSON out, checked against its schema; the
//! byte budgets at their boundary; and every way it fails open.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use common::Sandbox;
use serde_json::Value;

/// Generous: a debug binary loads the local model in about 1.5 s, slower
/// on a busy machine; the budget's own test sets a small one.
const TEST_TIME_BUDGET_MS: &str = "60000";

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/hooks")
        .join(name);
    serde_json::from_slice(&std::fs::read(&path).expect("fixture")).expect("fixture JSON")
}

/// A project directory (a git repository named `name`) in the sandbox.
fn project(sandbox: &Sandbox, name: &str) -> PathBuf {
    let dir = sandbox.path(name);
    std::fs::create_dir_all(dir.join(".git")).expect("a repository");
    dir
}

struct Hooked {
    output: Output,
}

impl Hooked {
    fn stdout(&self) -> String {
        String::from_utf8(self.output.stdout.clone()).expect("UTF-8 stdout")
    }
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
    /// The context added, after checking the output's schema: one object
    /// `{"hookSpecificOutput": {"hookEventName": EVENT, "additionalContext": TEXT}}`.
    fn context(&self, event: &str) -> Option<String> {
        assert_eq!(self.output.status.code(), Some(0), "{}", self.stderr());
        let stdout = self.stdout();
        if stdout.is_empty() {
            return None;
        }
        assert_eq!(stdout.lines().count(), 1, "one line of JSON: {stdout}");
        let value: Value = serde_json::from_str(&stdout).expect("JSON on stdout");
        let object = value.as_object().expect("an object");
        assert_eq!(
            object.keys().collect::<Vec<_>>(),
            ["hookSpecificOutput"],
            "{value}"
        );
        let specific = object["hookSpecificOutput"].as_object().expect("an object");
        let mut keys: Vec<&String> = specific.keys().collect();
        keys.sort();
        assert_eq!(keys, ["additionalContext", "hookEventName"], "{value}");
        assert_eq!(specific["hookEventName"], event);
        let text = specific["additionalContext"].as_str().expect("a string");
        assert!(!text.is_empty(), "an empty context is printed as nothing");
        Some(text.to_owned())
    }
    /// Nothing on stdout, exit 0, one line on stderr containing `why`.
    fn failed_open(&self, why: &str) {
        assert_eq!(self.output.status.code(), Some(0), "{}", self.stderr());
        assert_eq!(self.stdout(), "", "nothing on stdout");
        let stderr = self.stderr();
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.starts_with("mnemosyne hook: "), "{stderr}");
        assert!(stderr.contains(why), "{why:?} not in {stderr}");
    }
}

fn hook_raw(sandbox: &Sandbox, args: &[&str], stdin: &[u8], env: &[(&str, &str)]) -> Hooked {
    let mut command = sandbox.command();
    command
        .arg("hook")
        .args(args)
        .env("MNEMOSYNE_HOOK_TIME_BUDGET_MS", TEST_TIME_BUDGET_MS)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, value) in env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("spawn mnemosyne hook");
    // A hook that refuses its input early may close stdin first.
    let _ = child.stdin.take().expect("stdin").write_all(stdin);
    Hooked {
        output: child.wait_with_output().expect("wait mnemosyne hook"),
    }
}

/// Sends `fixture` with `cwd` (and `prompt`, `session_id` when given) set.
fn hook(
    sandbox: &Sandbox,
    event: &str,
    fixture_name: &str,
    cwd: &Path,
    changes: &[(&str, &str)],
    env: &[(&str, &str)],
) -> Hooked {
    let mut input = fixture(fixture_name);
    input["cwd"] = Value::String(cwd.to_string_lossy().into_owned());
    for (field, value) in changes {
        input[*field] = Value::String((*value).to_owned());
    }
    hook_raw(sandbox, &[event], input.to_string().as_bytes(), env)
}

fn prompt(sandbox: &Sandbox, cwd: &Path, session: &str, text: &str) -> Option<String> {
    hook(
        sandbox,
        "UserPromptSubmit",
        "user_prompt_submit.json",
        cwd,
        &[("prompt", text), ("session_id", session)],
        &[],
    )
    .context("UserPromptSubmit")
}

fn session_start(sandbox: &Sandbox, cwd: &Path, session: &str, source: &str) -> String {
    hook(
        sandbox,
        "SessionStart",
        "session_start_startup.json",
        cwd,
        &[("source", source), ("session_id", session)],
        &[],
    )
    .context("SessionStart")
    .expect("SessionStart always adds context")
}

#[test]
fn a_session_starts_with_its_projects_memories_work_and_documents() {
    let sandbox = Sandbox::new();
    let atlas = project(&sandbox, "atlas");
    let decision = sandbox.remember(&[
        "--namespace",
        "project:atlas",
        "--importance",
        "9",
        "--type",
        "decision",
        "--summary",
        "Atlas stores jobs in SQLite through rusqlite",
        "Atlas storage: chose rusqlite over sqlx because we need FTS5.\nSecond line.",
    ]);
    let preference = sandbox.remember(&[
        "--importance",
        "8",
        "--type",
        "preference",
        "The user wants tabs, never spaces",
    ]);
    let elsewhere =
        sandbox.remember(&["--namespace", "project:zephyr", "zephyr's own secret note"]);
    sandbox.ok(&["work", "submit", "port the lease reaper to the new clock"]);
    sandbox.run_stdin(
        &[
            "doc",
            "write",
            "design-notes",
            "--namespace",
            "project:atlas",
        ],
        b"notes",
    );

    // From a directory below the repository's root: the project is atlas.
    let below = atlas.join("src");
    std::fs::create_dir_all(&below).unwrap();
    let context = session_start(&sandbox, &below, "s1", "startup");
    assert!(context.contains("project:atlas"), "{context}");
    assert!(context.contains(&format!("- decision: Atlas stores jobs in SQLite through rusqlite (id {decision}, project:atlas, importance 9, today)")), "{context}");
    assert!(
        !context.contains("Second line"),
        "summaries, not contents: {context}"
    );
    assert!(
        context.contains(&preference),
        "global preferences come along: {context}"
    );
    assert!(
        !context.contains(&elsewhere),
        "another project's memory: {context}"
    );
    assert!(
        context.contains("port the lease reaper to the new clock"),
        "{context}"
    );
    assert!(
        context.contains("design-notes (project:atlas)"),
        "{context}"
    );

    // The resume fixture (its extra fields) is read as well.
    let resumed = hook(
        &sandbox,
        "SessionStart",
        "session_start_resume.json",
        &atlas,
        &[],
        &[],
    )
    .context("SessionStart")
    .expect("context");
    assert!(resumed.contains(&decision));

    // An empty project says so, and how memory is filled.
    let empty = project(&sandbox, "fresh");
    let context = session_start(&sandbox, &empty, "s2", "startup");
    assert!(
        context.contains("No memories are stored for project:fresh yet"),
        "{context}"
    );
}

#[test]
fn prompts_bring_relevant_memories_once_per_session_and_unrelated_ones_nothing() {
    let sandbox = Sandbox::new();
    let atlas = project(&sandbox, "atlas");
    let lock = sandbox.remember(&[
        "--namespace",
        "project:atlas",
        "When two atlas workers write at once SQLite answers 'database is locked'; \
         the fix was busy_timeout = 5000 and one writer connection.",
    ]);
    sandbox.remember(&[
        "--namespace",
        "project:atlas",
        "The release checklist lives in RELEASING.md",
    ]);
    let question = "why do we get database is locked errors when two workers write?";

    let context = prompt(&sandbox, &atlas, "p1", question).expect("a relevant memory");
    assert!(context.contains(&lock), "{context}");
    assert!(
        !context.contains("RELEASING"),
        "only what bears on the prompt: {context}"
    );
    assert_eq!(
        prompt(&sandbox, &atlas, "p1", question),
        None,
        "given once per session"
    );
    assert!(
        prompt(&sandbox, &atlas, "p2", question).is_some(),
        "another session gets it"
    );

    for unrelated in [
        "thanks, looks good",
        "ok",
        "run the tests again",
        "what time is it in Tokyo?",
    ] {
        assert_eq!(
            prompt(&sandbox, &atlas, "p3", unrelated),
            None,
            "{unrelated}"
        );
    }

    // Memories given at session start are not repeated beside a prompt.
    let start = session_start(&sandbox, &atlas, "p4", "startup");
    assert!(start.contains(&lock));
    assert_eq!(
        prompt(&sandbox, &atlas, "p4", question),
        None,
        "given at session start"
    );

    // A compacted context lost what it was given: the session starts over
    // (here with a SessionStart budget too small for any memory line).
    let tiny = [("MNEMOSYNE_HOOK_SESSION_START_BYTES_MAX", "256")];
    let restart = |source: &str| {
        hook(
            &sandbox,
            "SessionStart",
            "session_start_startup.json",
            &atlas,
            &[("source", source), ("session_id", "p1")],
            &tiny,
        )
        .context("SessionStart")
        .expect("context")
    };
    assert!(
        !restart("resume").contains(&lock),
        "no room for memory lines"
    );
    assert_eq!(
        prompt(&sandbox, &atlas, "p1", question),
        None,
        "a resumed context keeps them"
    );
    restart("compact");
    assert!(
        prompt(&sandbox, &atlas, "p1", question).is_some(),
        "compacted: given again"
    );
    restart("clear");
    assert!(
        prompt(&sandbox, &atlas, "p1", question).is_some(),
        "cleared: given again"
    );

    // --namespace overrides the directory.
    let mut input = fixture("user_prompt_submit.json");
    input["cwd"] = Value::String(atlas.to_string_lossy().into_owned());
    input["prompt"] = Value::String(question.into());
    input["session_id"] = Value::String("p7".into());
    let other = hook_raw(
        &sandbox,
        &["UserPromptSubmit", "--namespace", "project:zephyr"],
        input.to_string().as_bytes(),
        &[],
    );
    assert_eq!(
        other.context("UserPromptSubmit"),
        None,
        "zephyr holds nothing"
    );
}

#[test]
fn no_output_ever_passes_its_byte_budget() {
    let sandbox = Sandbox::new();
    let atlas = project(&sandbox, "atlas");
    // Long multi-byte memories: summaries at their limit of 1 024 bytes
    // (3-byte characters), contents of 60 KiB, all about the same thing.
    let summary = "データベースがロックされた".repeat(26);
    let summary = &summary[..summary
        .char_indices()
        .take_while(|(i, _)| *i < 1_000)
        .last()
        .unwrap()
        .0];
    let content = "database is locked when two writers ".repeat(1_600);
    let lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({
                "namespace": "project:atlas",
                "content": format!("{i} {content}"),
                "summary": format!("{i} {summary}"),
                "importance": 1 + i % 10,
            })
            .to_string()
        })
        .collect();
    let file = sandbox.path("long.jsonl");
    common::write_lines(&file, &lines);
    sandbox.ok(&["import", file.to_str().unwrap()]);
    for i in 0..6 {
        sandbox.ok(&[
            "work",
            "submit",
            &format!("{i} {}", "長い作業の説明 ".repeat(400)),
        ]);
    }

    for budget in ["256", "1000", "6144", "9000"] {
        let start = hook(
            &sandbox,
            "SessionStart",
            "session_start_startup.json",
            &atlas,
            &[("session_id", &format!("b{budget}"))],
            &[("MNEMOSYNE_HOOK_SESSION_START_BYTES_MAX", budget)],
        )
        .context("SessionStart")
        .expect("context");
        let bytes: usize = budget.parse().unwrap();
        assert!(
            start.len() <= bytes,
            "{} bytes over a budget of {bytes}",
            start.len()
        );
        assert!(
            start.len() > bytes / 2,
            "the budget is used: {} of {bytes}",
            start.len()
        );
        assert!(start.chars().count() < 10_000);

        let text = hook(
            &sandbox,
            "UserPromptSubmit",
            "user_prompt_submit.json",
            &atlas,
            &[
                ("prompt", "database is locked when two writers write"),
                ("session_id", &format!("q{budget}")),
            ],
            &[
                ("MNEMOSYNE_HOOK_PROMPT_BYTES_MAX", budget),
                ("MNEMOSYNE_HOOK_SIMILARITY_MIN_PERCENT", "0"),
            ],
        )
        .context("UserPromptSubmit");
        if let Some(text) = text {
            assert!(
                text.len() <= bytes,
                "{} bytes over a budget of {bytes}",
                text.len()
            );
            // Whole lines only: every memory line keeps its id.
            assert!(text.lines().skip(1).all(|l| l.contains("(id ")), "{text}");
        } else {
            assert_eq!(budget, "256", "only the smallest budget fits no whole line");
        }
    }
    let refused = hook_raw(
        &sandbox,
        &["SessionStart"],
        b"{}",
        &[("MNEMOSYNE_HOOK_SESSION_START_BYTES_MAX", "9001")],
    );
    refused.failed_open("hook_session_start_bytes_max");
}

#[test]
fn every_failure_prints_nothing_and_exits_0() {
    let sandbox = Sandbox::new();
    let atlas = project(&sandbox, "atlas");
    let cwd = atlas.to_string_lossy().into_owned();

    // No database yet: nothing is created.
    hook(
        &sandbox,
        "SessionStart",
        "session_start_startup.json",
        &atlas,
        &[],
        &[],
    )
    .failed_open("no database at");
    assert!(!sandbox.db.exists(), "a hook does not create a database");
    sandbox.remember(&["--namespace", "project:atlas", "a memory"]);

    hook_raw(&sandbox, &["SessionStart"], b"", &[]).failed_open("empty");
    hook_raw(&sandbox, &["SessionStart"], b"{\"cwd\": ", &[])
        .failed_open("not a hook's JSON object");
    hook_raw(&sandbox, &["SessionStart"], b"\xff\xfe{}", &[]).failed_open("not UTF-8");
    hook_raw(&sandbox, &[], b"{}", &[]).failed_open("no event");
    let pre_compact = format!(r#"{{"hook_event_name":"PreCompact","cwd":"{cwd}"}}"#);
    hook_raw(&sandbox, &[], pre_compact.as_bytes(), &[])
        .failed_open("\"PreCompact\" is not one mnemosyne answers");
    hook_raw(&sandbox, &["Stop"], b"{}", &[]).failed_open("\"Stop\" is not one");
    let start = format!(r#"{{"hook_event_name":"SessionStart","cwd":"{cwd}"}}"#);
    hook_raw(&sandbox, &["UserPromptSubmit"], start.as_bytes(), &[])
        .failed_open("check the hook's configuration");
    hook_raw(
        &sandbox,
        &["SessionStart", "--namespace", "project:a b"],
        start.as_bytes(),
        &[],
    )
    .failed_open("--namespace");
    let big = format!(
        r#"{{"hook_event_name":"UserPromptSubmit","prompt":"{}"}}"#,
        "x".repeat(5_000)
    );
    hook_raw(
        &sandbox,
        &[],
        big.as_bytes(),
        &[("MNEMOSYNE_HOOK_INPUT_BYTES_MAX", "4096")],
    )
    .failed_open("hook_input_bytes_max");
    std::fs::write(atlas.join(".mnemosyne.toml"), "namespace = 7\n").unwrap();
    hook_raw(&sandbox, &[], start.as_bytes(), &[]).failed_open(".mnemosyne.toml");
    std::fs::remove_file(atlas.join(".mnemosyne.toml")).unwrap();
    let config = sandbox.path("bad.toml");
    std::fs::write(&config, "[limits\n").unwrap();
    hook_raw(
        &sandbox,
        &[],
        start.as_bytes(),
        &[("MNEMOSYNE_CONFIG", config.to_str().unwrap())],
    )
    .failed_open("bad.toml");
    hook_raw(
        &sandbox,
        &[],
        start.as_bytes(),
        &[("MNEMOSYNE_HOOK_TIME_BUDGET_MS", "1")],
    )
    .failed_open("hook_time_budget_ms");
    // A hostile session id is not a path; the context still comes.
    let escape =
        format!(r#"{{"hook_event_name":"SessionStart","cwd":"{cwd}","session_id":"../../etc/x"}}"#);
    let hooked = hook_raw(&sandbox, &[], escape.as_bytes(), &[]);
    assert!(hooked.context("SessionStart").is_some());
    assert!(
        hooked.stderr().contains("session_id"),
        "{}",
        hooked.stderr()
    );
    // And everything above left the database as it was.
    assert_eq!(sandbox.count(), 1);
}

#[test]
fn a_locked_database_costs_the_session_nothing() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if python.is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI needs python3 for this test"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: no python3 to hold a lock on the database");
        }
        return;
    }
    let sandbox = Sandbox::new();
    let atlas = project(&sandbox, "atlas");
    sandbox.remember(&["--namespace", "project:atlas", "a memory"]);
    let mut holder = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('PRAGMA locking_mode=EXCLUSIVE')\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(60)",
        ])
        .arg(&sandbox.db)
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let hooked = hook(
        &sandbox,
        "SessionStart",
        "session_start_startup.json",
        &atlas,
        &[],
        &[("MNEMOSYNE_HOOK_TIME_BUDGET_MS", "500")],
    );
    let _ = holder.kill();
    let _ = holder.wait();
    hooked.failed_open("hook_time_budget_ms");
}
