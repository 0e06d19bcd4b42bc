//! Where the database lives: a local file, or a remote libsql server.

use std::fmt;
use std::path::PathBuf;

/// A database location as the user writes it (`--db`, `MNEMOSYNE_DB`).
#[derive(Clone, PartialEq, Eq)]
pub enum Location {
    /// A local SQLite file, created on first use.
    File(PathBuf),
    /// A libsql server (`libsql://`, `https://` or `http://` URL), libsql backend only.
    Remote {
        /// The URL.
        url: String,
        /// Bearer token for the server (for Turso, the database token).
        auth_token: Option<String>,
    },
}

impl Location {
    /// A remote location for URLs with a libsql, https or http scheme, else a file path.
    pub fn parse(text: &str, auth_token: Option<String>) -> Self {
        let is_url = ["libsql://", "https://", "http://"]
            .iter()
            .any(|scheme| text.starts_with(scheme));
        if is_url {
            Self::Remote {
                url: text.to_owned(),
                auth_token,
            }
        } else {
            Self::File(PathBuf::from(text))
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => f.debug_tuple("File").field(path).finish(),
            Self::Remote { url, auth_token } => f
                .debug_struct("Remote")
                .field("url", url)
                .field("auth_token", &auth_token.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => path.display().fmt(f),
            Self::Remote { url, .. } => f.write_str(url),
        }
    }
}
