//! The plugin with the real Claude Code (`claude`, installed by `.ci/run`;
//! required when `CI` is set, skipped with a message otherwise). None of
//! this needs a login: `plugin validate`, the plugin commands, `mcp list`,
//! `--init-only` (which runs the SessionStart hooks), and a prompt sent to a
//! closed API port (UserPromptSubmit hooks run before any API call).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::Sandbox;

/// Polls of the debug log while a prompt's hooks run (the prompt itself
/// never gets an answer: its API port is closed).
const DEBUG_LOG_POLLS_MAX: u32 = 600;
const DEBUG_LOG_POLL_MS: u64 = 100;

/// The `claude` to test with: `MNEMOSYNE_TEST_CLAUDE`, else one on PATH.
fn claude() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("MNEMOSYNE_TEST_CLAUDE") {
        return Some(PathBuf::from(path));
    }
    let found = Command::new("claude").arg("--version").output();
    match found {
        Ok(output) if output.status.success() => Some(PathBuf::from("claude")),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI needs Claude Code: .ci/run installs it and sets MNEMOSYNE_TEST_CLAUDE"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipped: no `claude` (npm install -g @anthropic-ai/claude-code)");
            }
            None
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Claude Code with its home, and ours, in the sandbox, and the built
/// `mnemosyne` first on PATH (as `cargo install` would put it).
struct ClaudeHome<'a> {
    claude: PathBuf,
    sandbox: &'a Sandbox,
    path: String,
}

impl<'a> ClaudeHome<'a> {
    fn new(claude: PathBuf, sandbox: &'a Sandbox) -> Self {
        let bin = sandbox.path("bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_mnemosyne"), bin.join("mnemosyne")).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Self {
            claude,
            sandbox,
            path,
        }
    }

    fn command(&self, dir: &Path) -> Command {
        let mut command = Command::new(&self.claude);
        for (name, _) in std::env::vars_os() {
            let text = name.to_string_lossy();
            if text.starts_with("MNEMOSYNE_")
                || text.starts_with("ANTHROPIC_")
                || text.starts_with("CLAUDE")
            {
                command.env_remove(&name);
            }
        }
        command
            .env("HOME", self.sandbox.path("home"))
            .env("XDG_CONFIG_HOME", self.sandbox.path("home/config"))
            .env("XDG_DATA_HOME", self.sandbox.path("home/data"))
            .env("PATH", &self.path)
            .env("MNEMOSYNE_DB", &self.sandbox.db)
            .env("DISABLE_AUTOUPDATER", "1")
            .current_dir(dir)
            .stdin(Stdio::null());
        command
    }

    fn run(&self, dir: &Path, args: &[&str]) -> Output {
        self.command(dir).args(args).output().expect("run claude")
    }

    fn ok(&self, dir: &Path, args: &[&str]) -> String {
        let output = self.run(dir, args);
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "claude {args:?}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }
}

#[test]
fn the_plugin_and_its_marketplace_validate() {
    let Some(claude) = claude() else { return };
    let sandbox = Sandbox::new();
    let home = ClaudeHome::new(claude, &sandbox);
    let root = repo_root();
    for target in ["claude-plugin", "."] {
        let out = home.ok(&root, &["plugin", "validate", target, "--strict"]);
        assert!(out.contains("Validation passed"), "{target}: {out}");
    }
    let provides = home.ok(&root, &["plugin", "validate", "claude-plugin"]);
    for part in [
        "hooks: SessionStart command \"mnemosyne hook SessionStart\"",
        "hooks: UserPromptSubmit command \"mnemosyne hook UserPromptSubmit\"",
        "mcpServers: mnemosyne stdio mnemosyne [\"serve\",\"mcp\"]",
        "skills: mnemosyne:memory",
        "commands: mnemosyne:remember",
        "commands: mnemosyne:recall",
        "commands: mnemosyne:forget",
        "commands: mnemosyne:memory",
    ] {
        assert!(provides.contains(part), "{part} missing: {provides}");
    }
}

/// Installs the plugin from this clone with the README's two commands.
fn install(home: &ClaudeHome<'_>) {
    let root = repo_root();
    let root_text = root.canonicalize().unwrap().to_string_lossy().into_owned();
    home.ok(&root, &["plugin", "marketplace", "add", &root_text]);
    home.ok(&root, &["plugin", "install", "mnemosyne@mnemosyne"]);
    let listed = home.ok(&root, &["plugin", "list"]);
    assert!(
        listed.contains("mnemosyne@mnemosyne") && listed.contains("enabled"),
        "{listed}"
    );
}

#[test]
fn an_installed_plugin_connects_and_a_new_session_receives_the_projects_memories() {
    let Some(claude) = claude() else { return };
    let sandbox = Sandbox::new();
    let home = ClaudeHome::new(claude, &sandbox);
    install(&home);
    let project = sandbox.path("atlas");
    std::fs::create_dir_all(project.join(".git")).unwrap();
    let decision = sandbox.remember(&[
        "--namespace",
        "project:atlas",
        "--importance",
        "9",
        "--type",
        "decision",
        "We deploy atlas with fly.io, never on Fridays",
    ]);
    let secret_rotation = sandbox.remember(&[
        "--namespace",
        "project:atlas",
        "--importance",
        "2",
        "The staging database password rotates monthly through vault; deploys read it from VAULT_ADDR",
    ]);
    let other = sandbox.remember(&["--namespace", "project:zephyr", "zephyr deploys on Fridays"]);

    // The plugin's MCP server, started by Claude Code in the project.
    let listed = home.ok(&project, &["mcp", "list"]);
    assert!(
        listed.contains("plugin:mnemosyne:mnemosyne: mnemosyne serve mcp - ✔ Connected"),
        "{listed}"
    );

    // A new session: the SessionStart hook adds the project's memories.
    let log = sandbox.path("start.log");
    home.ok(
        &project,
        &["--init-only", "--debug-file", log.to_str().unwrap()],
    );
    let debug = std::fs::read_to_string(&log).unwrap();
    assert!(
        debug
            .contains("Hook SessionStart (mnemosyne hook SessionStart) provided additionalContext"),
        "{debug}"
    );
    let added: Vec<&str> = debug
        .lines()
        .filter(|l| l.contains("Parsed initial response"))
        .collect();
    assert!(added.iter().any(|l| l.contains(&decision)), "{debug}");
    assert!(
        !added.iter().any(|l| l.contains(&other)),
        "another project's memory: {debug}"
    );

    // A prompt: the UserPromptSubmit hook adds what bears on it (with a
    // SessionStart budget too small for memory lines, so the memory is new
    // to the session), before the API call that never answers.
    let log = sandbox.path("prompt.log");
    let mut child = home
        .command(&project)
        .env("MNEMOSYNE_HOOK_SESSION_START_BYTES_MAX", "256")
        .env("ANTHROPIC_API_KEY", "sk-test-not-a-key")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .args([
            "-p",
            "how does the staging deploy get its database password?",
        ])
        .arg("--debug-file")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("claude -p");
    let mut prompt_lines = Vec::new();
    for _ in 0..DEBUG_LOG_POLLS_MAX {
        let debug = std::fs::read_to_string(&log).unwrap_or_default();
        if debug.contains("UserPromptSubmit [mnemosyne hook UserPromptSubmit]") {
            prompt_lines = debug
                .lines()
                .filter(|l| l.contains("\"hookEventName\":\"UserPromptSubmit\""))
                .map(str::to_owned)
                .collect();
            break;
        }
        std::thread::sleep(Duration::from_millis(DEBUG_LOG_POLL_MS));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        prompt_lines.iter().any(|l| l.contains(&secret_rotation)),
        "the prompt's hook did not add the memory: {prompt_lines:?}"
    );
    assert!(!prompt_lines.iter().any(|l| l.contains(&other)));
}
