//! The effective configuration: where the database is, every limit, and the embedder.
//!
//! Precedence, highest first: `--db` / `MNEMOSYNE_DB`, then `db` in the config
//! file, then the platform data dir. Limits: defaults, then the `[limits]`
//! table of the config file, then `MNEMOSYNE_<LIMIT>` environment variables.
//! The config file is `--config` / `MNEMOSYNE_CONFIG`, else `config.toml` in
//! the platform config dir when it exists.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use directories::ProjectDirs;
use mnemosyne_core::Limits;
use mnemosyne_embed::EmbedderConfig;
use mnemosyne_storage::Location;
use serde::Deserialize;

/// Environment variable holding the bearer token of a remote database.
pub const AUTH_TOKEN_ENV: &str = "MNEMOSYNE_AUTH_TOKEN";

/// Environment variable holding the bearer token of the HTTP API (wins over
/// `token` in the `[server]` table).
pub const SERVER_TOKEN_ENV: &str = "MNEMOSYNE_TOKEN";

/// Where `serve http` listens when neither `--bind` nor `[server] bind` say.
pub const SERVER_BIND_DEFAULT: &str = "127.0.0.1:7077";

/// File name of the database in the platform data dir.
pub const DB_FILE_NAME: &str = "mnemosyne.db";

/// File name of the config file in the platform config dir.
pub const CONFIG_FILE_NAME: &str = "config.toml";

/// A config file larger than this is refused (it holds a path and some numbers).
pub const CONFIG_FILE_BYTES_MAX: u64 = 1024 * 1024;

/// Where the database location came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DbSource {
    /// `--db`.
    Flag,
    /// `MNEMOSYNE_DB`.
    Env,
    /// `db` in the config file.
    ConfigFile,
    /// The platform data dir.
    Default,
}

impl fmt::Display for DbSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Flag => "--db",
            Self::Env => "MNEMOSYNE_DB",
            Self::ConfigFile => "config file",
            Self::Default => "default",
        })
    }
}

/// Everything a command needs to open the store.
#[derive(Debug)]
pub struct Settings {
    /// The database.
    pub location: Location,
    /// Where `location` came from.
    pub db_source: DbSource,
    /// The config file that was read, if any.
    pub config_file: Option<PathBuf>,
    /// Limits after the config file and environment overrides.
    pub limits: Limits,
    /// The `[embedder]` table (default: the local model, `minilm`).
    pub embedder: EmbedderConfig,
    /// The `[server]` table, with `MNEMOSYNE_TOKEN` applied.
    pub server: ServerSettings,
}

/// The `[server]` table of the config file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Where `serve http` listens, unless `--bind` says.
    pub bind: Option<std::net::SocketAddr>,
    /// Bearer token of the HTTP API (`MNEMOSYNE_TOKEN` wins).
    pub token: Option<Secret>,
    /// `Host` values answered besides loopback names and the bound address
    /// (a reverse proxy's name; `name` for any port, `name:port` for one).
    #[serde(default)]
    pub http_allowed_hosts: Vec<String>,
    /// Origins (`https://app.example`) whose pages may call the API
    /// cross-origin: they get CORS headers; any other origin is refused.
    #[serde(default)]
    pub http_allowed_origins: Vec<String>,
}

/// A secret: never printed, not even in debug logs.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The config file: a database location and a `[limits]` table, nothing else.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    db: Option<String>,
    limits: Option<toml::Table>,
    embedder: Option<EmbedderConfig>,
    server: Option<ServerSettings>,
}

/// What the command line said about the configuration.
#[derive(Debug)]
pub struct ConfigInputs {
    /// `--db` or `MNEMOSYNE_DB` (empty counts as not given).
    pub db: Option<(String, DbSource)>,
    /// `--config` or `MNEMOSYNE_CONFIG`.
    pub config: Option<PathBuf>,
}

/// Resolves the effective settings from the command line, the config file
/// and the process environment.
pub fn load(inputs: ConfigInputs) -> Result<Settings> {
    let dirs = ProjectDirs::from("", "", "mnemosyne");
    let config_file = match inputs.config {
        Some(path) => Some(path),
        None => dirs
            .as_ref()
            .map(|dirs| dirs.config_dir().join(CONFIG_FILE_NAME))
            .filter(|path| path.is_file()),
    };
    let file = match &config_file {
        Some(path) => read_config_file(path)?,
        None => ConfigFile::default(),
    };
    let limits = match &file.limits {
        Some(table) => {
            let text = toml::to_string(table).context("cannot re-read the [limits] table")?;
            Limits::from_toml_str(&text).map_err(|e| {
                anyhow!(
                    "config file {}: [limits]: {e}",
                    display(config_file.as_deref())
                )
            })?
        }
        None => Limits::default(),
    };
    let limits = limits.with_env_overrides(env_vars()?)?;

    let auth_token = std::env::var(AUTH_TOKEN_ENV).ok().filter(|t| !t.is_empty());
    let (location, db_source) = match (inputs.db, file.db) {
        (Some((text, source)), _) => (Location::parse(&text, auth_token), source),
        (None, Some(text)) => {
            let base = config_file.as_deref().and_then(Path::parent);
            (config_db(&text, base, auth_token)?, DbSource::ConfigFile)
        }
        (None, None) => {
            let dirs = dirs.ok_or_else(|| {
                anyhow!("cannot find a home directory for the default database; give --db PATH")
            })?;
            let path = dirs.data_dir().join(DB_FILE_NAME);
            (Location::File(path), DbSource::Default)
        }
    };
    let embedder = file.embedder.unwrap_or_default();
    embedder.validate().map_err(|e| {
        anyhow!(
            "config file {}: [embedder]: {e}",
            display(config_file.as_deref())
        )
    })?;
    let mut server = file.server.unwrap_or_default();
    if let Some(token) = std::env::var(SERVER_TOKEN_ENV)
        .ok()
        .filter(|t| !t.is_empty())
    {
        server.token = Some(Secret(token));
    }
    Ok(Settings {
        location,
        db_source,
        config_file,
        limits,
        embedder,
        server,
    })
}

/// The environment as text; a `MNEMOSYNE_*` variable that is not UTF-8 is an
/// error, any other one is ignored (`std::env::vars` would panic on it).
fn env_vars() -> Result<Vec<(String, String)>> {
    let mut vars = Vec::new();
    for (name, value) in std::env::vars_os() {
        let Ok(name) = name.into_string() else {
            continue;
        };
        match value.into_string() {
            Ok(value) => vars.push((name, value)),
            Err(_) if name.starts_with("MNEMOSYNE_") => {
                bail!("environment variable {name} is not valid UTF-8")
            }
            Err(_) => {}
        }
    }
    Ok(vars)
}

/// `db` from the config file; a relative path is relative to the file's directory.
fn config_db(text: &str, base: Option<&Path>, auth_token: Option<String>) -> Result<Location> {
    if text.is_empty() {
        bail!("config file: `db` is empty");
    }
    Ok(match Location::parse(text, auth_token) {
        Location::File(path) if path.is_relative() => {
            Location::File(base.map(|base| base.join(&path)).unwrap_or(path))
        }
        other => other,
    })
}

fn display(path: Option<&Path>) -> String {
    path.map(|p| p.display().to_string()).unwrap_or_default()
}

fn read_config_file(path: &Path) -> Result<ConfigFile> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let mut text = String::new();
    file.take(CONFIG_FILE_BYTES_MAX + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    if text.len() as u64 > CONFIG_FILE_BYTES_MAX {
        bail!(
            "config file {} is over {CONFIG_FILE_BYTES_MAX} bytes",
            path.display()
        );
    }
    parse_config_file(&text).map_err(|e| anyhow!("config file {}: {e}", path.display()))
}

/// Parses the config file text; the error is one line with the line number.
fn parse_config_file(text: &str) -> Result<ConfigFile, String> {
    toml::from_str(text).map_err(|e: toml::de::Error| {
        let message = e.message().replace('\n', " ");
        match e.span() {
            Some(span) => {
                let line = text[..span.start.min(text.len())].matches('\n').count() + 1;
                format!("line {line}: {message}")
            }
            None => message,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_file_holds_db_and_limits_only() {
        let file = parse_config_file("db = \"x.db\"\n[limits]\npool_readers_max = 2\n").unwrap();
        assert_eq!(file.db.as_deref(), Some("x.db"));
        assert!(file.limits.unwrap().contains_key("pool_readers_max"));
        let err = parse_config_file("db = \"x.db\"\nport = 1\n").unwrap_err();
        assert!(err.starts_with("line 2: ") && err.contains("port"), "{err}");
        assert!(!err.contains('\n'), "{err}");
        let err = parse_config_file("db = 3\n").unwrap_err();
        assert!(err.starts_with("line 1: "), "{err}");
    }

    #[test]
    fn the_server_table_holds_allow_lists() {
        let file = parse_config_file(
            "[server]\nhttp_allowed_hosts = [\"memory.example\"]\n\
             http_allowed_origins = [\"https://app.example\"]\n",
        )
        .unwrap();
        let server = file.server.unwrap();
        assert_eq!(server.http_allowed_hosts, ["memory.example"]);
        assert_eq!(server.http_allowed_origins, ["https://app.example"]);
        let err = parse_config_file("[server]\nhttp_allowed_hosts = \"one\"\n").unwrap_err();
        assert!(err.starts_with("line 2: "), "{err}");
    }

    #[test]
    fn relative_db_in_config_is_relative_to_the_file() {
        let location = config_db("data/m.db", Some(Path::new("/etc/mn")), None).unwrap();
        assert_eq!(location, Location::File(PathBuf::from("/etc/mn/data/m.db")));
        let location = config_db("/abs/m.db", Some(Path::new("/etc/mn")), None).unwrap();
        assert_eq!(location, Location::File(PathBuf::from("/abs/m.db")));
        let location = config_db("libsql://db.example", Some(Path::new("/etc")), None).unwrap();
        assert!(matches!(location, Location::Remote { .. }));
        assert!(config_db("", None, None).is_err());
    }
}
