//! `config`: the effective configuration, as TOML a config file could hold,
//! or JSON. Does not open the database. The HTTP token is never printed:
//! only whether one is set.

use std::path::PathBuf;

use anyhow::Result;
use mnemosyne_core::Limits;
use mnemosyne_embed::EmbedderConfig;
use serde::Serialize;

use crate::config::{SERVER_BIND_DEFAULT, Settings};
use crate::output::Output;
use crate::project::{self, Project};

/// What `config` prints with `--json`.
#[derive(Debug, Serialize)]
struct Effective<'a> {
    backend: &'static str,
    config_file: Option<&'a PathBuf>,
    db: String,
    db_source: String,
    limits: &'a Limits,
    embedder: &'a EmbedderConfig,
    server: ServerView,
    project: ProjectView,
}

/// The project detected from the working directory, or why none could be.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum ProjectView {
    Detected(Project),
    Failed { error: String },
}

impl ProjectView {
    fn of_current_dir() -> Self {
        let detected = std::env::current_dir()
            .map_err(anyhow::Error::from)
            .and_then(|cwd| project::detect(&cwd));
        match detected {
            Ok(found) => Self::Detected(found),
            Err(e) => Self::Failed {
                error: format!("{e:#}"),
            },
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Detected(project) => format!("{} ({})", project.namespace, project.reason()),
            Self::Failed { error } => format!("none: {error}"),
        }
    }
}

/// The `[server]` table as `serve http` uses it.
#[derive(Debug, Serialize)]
struct ServerView {
    /// Where `serve http` listens unless `--bind` says.
    bind: String,
    /// Whether a bearer token is set (`[server] token` or `MNEMOSYNE_TOKEN`).
    token_set: bool,
}

/// The part that is valid config file TOML.
#[derive(Debug, Serialize)]
struct AsToml<'a> {
    db: String,
    limits: &'a Limits,
    embedder: &'a EmbedderConfig,
    server: ServerToml<'a>,
}

/// `[server]` without the token.
#[derive(Debug, Serialize)]
struct ServerToml<'a> {
    bind: &'a str,
}

pub fn run(settings: &Settings, out: Output) -> Result<()> {
    let effective = Effective {
        backend: mnemosyne_storage::BACKEND,
        config_file: settings.config_file.as_ref(),
        db: settings.location.to_string(),
        db_source: settings.db_source.to_string(),
        limits: &settings.limits,
        embedder: &settings.embedder,
        server: ServerView {
            bind: settings
                .server
                .bind
                .map_or_else(|| SERVER_BIND_DEFAULT.to_owned(), |bind| bind.to_string()),
            token_set: settings.server.token.is_some(),
        },
        project: ProjectView::of_current_dir(),
    };
    let toml = toml::to_string(&AsToml {
        db: effective.db.clone(),
        limits: &settings.limits,
        embedder: &settings.embedder,
        server: ServerToml {
            bind: &effective.server.bind,
        },
    })?;
    out.emit(&effective, |w| {
        writeln!(w, "# backend: {}", effective.backend)?;
        match effective.config_file {
            Some(path) => writeln!(w, "# config file: {}", path.display())?,
            None => writeln!(w, "# config file: none")?,
        }
        writeln!(w, "# db from: {}", effective.db_source)?;
        writeln!(w, "# project: {}", effective.project.describe())?;
        writeln!(
            w,
            "# HTTP token: {} (never printed)",
            if effective.server.token_set {
                "set"
            } else {
                "none"
            }
        )?;
        write!(w, "{toml}")
    })
}
