//! `config`: the effective configuration, as TOML a config file could hold,
//! or JSON. Does not open the database.

use std::path::PathBuf;

use anyhow::Result;
use mnemosyne_core::Limits;
use mnemosyne_storage::embed::EmbedderConfig;
use serde::Serialize;

use crate::config::Settings;
use crate::output::Output;

/// What `config` prints with `--json`.
#[derive(Debug, Serialize)]
struct Effective<'a> {
    backend: &'static str,
    config_file: Option<&'a PathBuf>,
    db: String,
    db_source: String,
    limits: &'a Limits,
    embedder: &'a EmbedderConfig,
}

/// The part that is valid config file TOML.
#[derive(Debug, Serialize)]
struct AsToml<'a> {
    db: String,
    limits: &'a Limits,
    embedder: &'a EmbedderConfig,
}

pub fn run(settings: &Settings, out: Output) -> Result<()> {
    let effective = Effective {
        backend: mnemosyne_storage::BACKEND,
        config_file: settings.config_file.as_ref(),
        db: settings.location.to_string(),
        db_source: settings.db_source.to_string(),
        limits: &settings.limits,
        embedder: &settings.embedder,
    };
    let toml = toml::to_string(&AsToml {
        db: effective.db.clone(),
        limits: &settings.limits,
        embedder: &settings.embedder,
    })?;
    out.emit(&effective, |w| {
        writeln!(w, "# backend: {}", effective.backend)?;
        match effective.config_file {
            Some(path) => writeln!(w, "# config file: {}", path.display())?,
            None => writeln!(w, "# config file: none")?,
        }
        writeln!(w, "# db from: {}", effective.db_source)?;
        write!(w, "{toml}")
    })
}
