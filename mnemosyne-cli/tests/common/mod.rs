//! Runs the real `mnemosyne` binary against a database in its own temp dir,
//! with an environment cleaned of anything that could point it elsewhere.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use tempfile::TempDir;

pub mod http;

/// A temp dir holding a database, a fake home and whatever files a test writes.
pub struct Sandbox {
    pub dir: TempDir,
    pub db: PathBuf,
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("test.db");
        Self { dir, db }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The binary with a clean environment: HOME and XDG dirs inside the
    /// sandbox, no MNEMOSYNE_* or RUST_LOG from the caller, stdin empty, and
    /// the sandbox as working directory (outside any git repository, so
    /// `serve mcp` detects no project).
    pub fn bare_command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_mnemosyne"));
        for (name, _) in std::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("MNEMOSYNE_")
                || name_text.starts_with("XDG_")
                || name_text == "RUST_LOG"
                || name_text == "COLUMNS"
            {
                command.env_remove(&name);
            }
        }
        command
            .env("HOME", self.path("home"))
            .env("XDG_CONFIG_HOME", self.path("home/config"))
            .env("XDG_DATA_HOME", self.path("home/data"))
            .current_dir(self.dir.path())
            .stdin(Stdio::null());
        command
    }

    /// [`Sandbox::bare_command`] on this sandbox's database.
    pub fn command(&self) -> Command {
        let mut command = self.bare_command();
        command.arg("--db").arg(&self.db);
        command
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.command().args(args).output().expect("run mnemosyne")
    }

    pub fn run_with(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = self.command();
        command.args(args);
        for (name, value) in env {
            command.env(name, value);
        }
        command.output().expect("run mnemosyne")
    }

    pub fn run_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self
            .command()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mnemosyne");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin)
            .expect("write stdin");
        child.wait_with_output().expect("wait mnemosyne")
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        ok(self.run(args), args)
    }

    /// Runs with `--json` and expects success; returns stdout parsed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut with_json = args.to_vec();
        with_json.push("--json");
        parse_json(&self.ok(&with_json))
    }

    /// Runs and expects failure; returns the one line on stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        fail(self.run(args), args)
    }

    /// Memories stored, archived ones included.
    pub fn count(&self) -> u64 {
        let value = self.json(&["count", "--include-archived"]);
        value["count"].as_u64().expect("count is a number")
    }

    /// Everything stored, as export writes it (reading does not change it).
    pub fn dump(&self) -> String {
        self.ok(&["export", "--include-archived"])
    }

    /// Stores a memory and returns its id.
    pub fn remember(&self, args: &[&str]) -> String {
        let mut full = vec!["remember"];
        full.extend_from_slice(args);
        self.ok(&full).trim().to_owned()
    }
}

pub fn ok(output: Output, what: &[&str]) -> String {
    let stdout = String::from_utf8(output.stdout).expect("utf-8 stdout");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{what:?} failed with {}: {stderr}",
        output.status
    );
    stdout
}

pub fn fail(output: Output, what: &[&str]) -> String {
    let stderr = String::from_utf8(output.stderr).expect("utf-8 stderr");
    assert!(
        !output.status.success(),
        "{what:?} should fail; stdout: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what:?}: want one line on stderr, got {stderr:?}"
    );
    assert!(lines[0].starts_with("error: "), "{what:?}: {stderr:?}");
    lines[0].to_owned()
}

pub fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// One memory as a JSONL line, with a fixed id built from `n`.
pub fn memory_line(n: u32, content: &str) -> String {
    serde_json::json!({
        "id": id(n),
        "namespace": "project:import",
        "content": content,
        "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
        "accessed_at": "2024-01-01T00:00:00Z",
    })
    .to_string()
}

/// A fixed, valid memory id.
pub fn id(n: u32) -> String {
    format!("01900000-0000-7000-8000-{n:012}")
}

pub fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(path, text).expect("write file");
}

/// A config file whose `[embedder]` is an HTTP endpoint on a closed port of
/// 127.0.0.1 (no retries); returns the file and the port.
pub fn unreachable_http_embedder(sandbox: &Sandbox) -> (String, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = sandbox.path("config.toml");
    std::fs::write(
        &config,
        format!(
            "[embedder]\nkind = \"http\"\nbase_url = \"http://127.0.0.1:{port}\"\nmodel = \"m\"\ndims = 8\n\
             [limits]\nembedder_retries_max = 0\n"
        ),
    )
    .unwrap();
    (config.to_str().unwrap().to_owned(), port)
}
