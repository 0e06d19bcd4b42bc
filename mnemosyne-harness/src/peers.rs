//! Peer MCP memory servers of `cargo xtask bench`, installed from their
//! registries at run time (nothing vendored, nothing committed) under a
//! directory of the build (`target/peers`), and launched directly (node,
//! the venv's console script) so the child pid is the server itself.
//!
//! - `@modelcontextprotocol/server-memory` (npm), the official knowledge
//!   graph memory server: `npm install --prefix DIR/npm`, run with `node`.
//! - `basic-memory` (PyPI; needs Python 3.12 or newer): a venv in `DIR/py`.
//!
//! An existing install is reused (delete the directory to upgrade).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use crate::mcp_driver::ServerCommand;

/// The npm package of the knowledge graph memory server.
pub const KNOWLEDGE_GRAPH_PACKAGE: &str = "@modelcontextprotocol/server-memory";
/// The PyPI package of basic-memory.
pub const BASIC_MEMORY_PACKAGE: &str = "basic-memory";
/// Oldest Python basic-memory installs on.
pub const BASIC_MEMORY_PYTHON_MIN: (u32, u32) = (3, 12);
/// Environment variable naming a Python interpreter for basic-memory.
pub const PYTHON_ENV: &str = "MNEMOSYNE_BENCH_PYTHON";
/// A `python --version` probe.
pub const PROBE_TIMEOUT_S: u64 = 10;

/// A peer server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Peer {
    /// `@modelcontextprotocol/server-memory` from npm.
    KnowledgeGraph,
    /// `basic-memory` from PyPI.
    BasicMemory,
}

impl Peer {
    /// Both peers.
    pub const ALL: [Peer; 2] = [Self::KnowledgeGraph, Self::BasicMemory];

    /// The registry package name.
    pub fn package(self) -> &'static str {
        match self {
            Self::KnowledgeGraph => KNOWLEDGE_GRAPH_PACKAGE,
            Self::BasicMemory => BASIC_MEMORY_PACKAGE,
        }
    }

    /// The registry it comes from.
    pub fn registry(self) -> &'static str {
        match self {
            Self::KnowledgeGraph => "npm",
            Self::BasicMemory => "PyPI",
        }
    }
}

/// A peer ready to launch.
#[derive(Clone, Debug)]
pub struct Installed {
    /// Which peer.
    pub peer: Peer,
    /// Its installed version.
    pub version: String,
    /// Whether an earlier install was reused.
    pub reused: bool,
    program: PathBuf,
    args: Vec<String>,
}

impl Installed {
    /// `package version`, for the table.
    pub fn label(&self) -> String {
        format!("{} {}", self.peer.package(), self.version)
    }

    /// The command serving MCP on stdio with its data in `data_dir` (a
    /// fresh directory per run; `HOME` too, so no user config is read).
    pub fn command(&self, data_dir: &Path) -> ServerCommand {
        let home = data_dir.display().to_string();
        let mut env = vec![("HOME".to_owned(), home)];
        match self.peer {
            Peer::KnowledgeGraph => env.push((
                "MEMORY_FILE_PATH".into(),
                data_dir.join("memory.jsonl").display().to_string(),
            )),
            Peer::BasicMemory => {
                // No network during the run: no update checks, no embedding
                // model download (the bench compares keyword search).
                for (key, value) in [
                    ("BASIC_MEMORY_AUTO_UPDATE", "false"),
                    ("BASIC_MEMORY_CLOUD_PROMO_OPT_OUT", "true"),
                    ("FASTMCP_CHECK_FOR_UPDATES", "off"),
                    ("HF_HUB_OFFLINE", "1"),
                ] {
                    env.push((key.into(), value.into()));
                }
            }
        }
        ServerCommand {
            program: self.program.clone(),
            args: self.args.clone(),
            env,
            stderr_log: data_dir.join("server-stderr.log"),
            working_dir: data_dir.to_owned(),
        }
    }
}

/// Why a peer could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    /// A tool it needs is not on this machine.
    #[error("{0}")]
    Missing(String),
    /// An install command failed.
    #[error("`{command}` failed ({status}): {stderr_tail}")]
    Failed {
        /// The command.
        command: String,
        /// Its exit status.
        status: String,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// An install command took too long.
    #[error("`{command}` took longer than {timeout_s} s")]
    Timeout {
        /// The command.
        command: String,
        /// The limit.
        timeout_s: u64,
    },
    /// A file of the install could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Installs `peer` under `peers_dir` (or reuses an earlier install), each
/// install command limited to `install_timeout`.
pub async fn install(
    peer: Peer,
    peers_dir: &Path,
    install_timeout: Duration,
) -> Result<Installed, PeerError> {
    match peer {
        Peer::KnowledgeGraph => {
            install_knowledge_graph(&peers_dir.join("npm"), install_timeout).await
        }
        Peer::BasicMemory => install_basic_memory(&peers_dir.join("py"), install_timeout).await,
    }
}

async fn install_knowledge_graph(dir: &Path, timeout: Duration) -> Result<Installed, PeerError> {
    let package_dir = dir.join("node_modules").join(KNOWLEDGE_GRAPH_PACKAGE);
    let entry = package_dir.join("dist").join("index.js");
    let reused = entry.exists();
    if !reused {
        std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
        let prefix = dir.display().to_string();
        run(
            "npm",
            &[
                "install",
                "--prefix",
                &prefix,
                "--no-audit",
                "--no-fund",
                "--loglevel=error",
                KNOWLEDGE_GRAPH_PACKAGE,
            ],
            timeout,
        )
        .await?;
    }
    let manifest_path = package_dir.join("package.json");
    let manifest = std::fs::read_to_string(&manifest_path)
        .map_err(|source| io_error(&manifest_path, source))?;
    let version = serde_json::from_str::<serde_json::Value>(&manifest)
        .ok()
        .and_then(|value| value["version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    Ok(Installed {
        peer: Peer::KnowledgeGraph,
        version,
        reused,
        program: PathBuf::from("node"),
        args: vec![entry.display().to_string()],
    })
}

async fn install_basic_memory(venv: &Path, timeout: Duration) -> Result<Installed, PeerError> {
    let python = venv.join("bin").join("python");
    let script = venv.join("bin").join("basic-memory");
    let reused = script.exists();
    if !reused {
        let base = find_python().await?;
        let venv_arg = venv.display().to_string();
        run(
            &base.display().to_string(),
            &["-m", "venv", &venv_arg],
            timeout,
        )
        .await?;
        run(
            &python.display().to_string(),
            &[
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                BASIC_MEMORY_PACKAGE,
            ],
            timeout,
        )
        .await?;
    }
    let version = run(
        &python.display().to_string(),
        &[
            "-c",
            "import importlib.metadata as m; print(m.version('basic-memory'))",
        ],
        Duration::from_secs(PROBE_TIMEOUT_S),
    )
    .await?
    .trim()
    .to_owned();
    Ok(Installed {
        peer: Peer::BasicMemory,
        version,
        reused,
        program: script,
        args: vec!["mcp".into(), "--transport".into(), "stdio".into()],
    })
}

/// `(major, minor)` of a `Python 3.13.0` / `3.13.0` text.
pub fn parse_python_version(text: &str) -> Option<(u32, u32)> {
    let version = text.trim().trim_start_matches("Python").trim();
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Interpreters to try for basic-memory, in order: `$MNEMOSYNE_BENCH_PYTHON`,
/// the versioned names on PATH, `python3`, then pyenv's installed versions
/// (newest first; pyenv shims only run the selected version).
pub fn python_candidates(
    env_override: Option<PathBuf>,
    pyenv_versions: &[String],
    pyenv_root: &Path,
) -> Vec<PathBuf> {
    let mut candidates: Vec<PathBuf> = env_override.into_iter().collect();
    for name in ["python3.14", "python3.13", "python3.12", "python3"] {
        candidates.push(PathBuf::from(name));
    }
    let mut versions: Vec<(&String, (u32, u32))> = pyenv_versions
        .iter()
        .filter_map(|version| parse_python_version(version).map(|parsed| (version, parsed)))
        .filter(|(_, parsed)| *parsed >= BASIC_MEMORY_PYTHON_MIN)
        .collect();
    versions.sort_by_key(|(_, parsed)| std::cmp::Reverse(*parsed));
    for (version, _) in versions {
        candidates.push(
            pyenv_root
                .join("versions")
                .join(version)
                .join("bin")
                .join("python3"),
        );
    }
    candidates
}

async fn find_python() -> Result<PathBuf, PeerError> {
    let pyenv_root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".pyenv")))
        .unwrap_or_default();
    let pyenv_versions: Vec<String> = std::fs::read_dir(pyenv_root.join("versions"))
        .map(|entries| {
            entries
                .flatten()
                .map(|entry| entry.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    let env_override = std::env::var_os(PYTHON_ENV).map(PathBuf::from);
    for candidate in python_candidates(env_override, &pyenv_versions, &pyenv_root) {
        let probe = run(
            &candidate.display().to_string(),
            &["--version"],
            Duration::from_secs(PROBE_TIMEOUT_S),
        )
        .await;
        if let Ok(output) = probe
            && parse_python_version(&output).is_some_and(|v| v >= BASIC_MEMORY_PYTHON_MIN)
        {
            return Ok(candidate);
        }
    }
    let (major, minor) = BASIC_MEMORY_PYTHON_MIN;
    Err(PeerError::Missing(format!(
        "no python >= {major}.{minor} found (set {PYTHON_ENV})"
    )))
}

fn io_error(path: &Path, source: std::io::Error) -> PeerError {
    PeerError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Runs `program args` to completion within `timeout`; its stdout.
async fn run(program: &str, args: &[&str], timeout: Duration) -> Result<String, PeerError> {
    let command = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|error| PeerError::Missing(format!("cannot run {program}: {error}")))?;
    let output = match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(source)) => {
            return Err(PeerError::Io {
                path: program.to_owned(),
                source,
            });
        }
        Err(_) => {
            return Err(PeerError::Timeout {
                command,
                timeout_s: timeout.as_secs(),
            });
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        return Err(PeerError::Failed {
            command,
            status: output.status.to_string(),
            stderr_tail: tail.into_iter().rev().collect::<Vec<_>>().join(" / "),
        });
    }
    // `python --version` wrote to stderr before Python 3.4; both are read.
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_python_versions() {
        assert_eq!(parse_python_version("Python 3.13.0\n"), Some((3, 13)));
        assert_eq!(parse_python_version("3.12.1"), Some((3, 12)));
        assert_eq!(parse_python_version("system"), None);
    }

    #[test]
    fn candidates_put_the_override_first_and_newest_pyenv_last() {
        let versions = ["3.11.7", "3.12.1", "system", "3.13.0"].map(String::from);
        let candidates = python_candidates(
            Some(PathBuf::from("/opt/py/bin/python")),
            &versions,
            Path::new("/root/.pyenv"),
        );
        assert_eq!(candidates[0], PathBuf::from("/opt/py/bin/python"));
        let pyenv: Vec<&PathBuf> = candidates
            .iter()
            .filter(|c| c.starts_with("/root/.pyenv"))
            .collect();
        assert_eq!(
            pyenv,
            [
                &PathBuf::from("/root/.pyenv/versions/3.13.0/bin/python3"),
                &PathBuf::from("/root/.pyenv/versions/3.12.1/bin/python3"),
            ]
        );
    }

    #[test]
    fn commands_keep_each_peer_in_its_data_dir() {
        let installed = Installed {
            peer: Peer::KnowledgeGraph,
            version: "1.0.0".into(),
            reused: true,
            program: PathBuf::from("node"),
            args: vec!["index.js".into()],
        };
        let command = installed.command(Path::new("/tmp/run"));
        assert!(
            command
                .env
                .contains(&("MEMORY_FILE_PATH".into(), "/tmp/run/memory.jsonl".into()))
        );
        assert!(command.env.contains(&("HOME".into(), "/tmp/run".into())));
        assert_eq!(
            installed.label(),
            "@modelcontextprotocol/server-memory 1.0.0"
        );
    }
}
