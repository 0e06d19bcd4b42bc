//! Errors as clients see them: a stable code, an HTTP status and a plain
//! one-line message. The same mapping serves MCP and HTTP. Internal details
//! (SQL, backend messages) are logged, never sent. And [`ServerError`]: why
//! a server did not start or stopped badly.

use std::net::SocketAddr;

use mnemosyne_core::Error;
use mnemosyne_orchestration::SupervisorError;
use serde::Serialize;

/// An error answer: `{"error": {"code": "...", "message": "..."}}` in JSON.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// Stable machine-readable code (`invalid_input`, `not_found`, ...).
    pub code: &'static str,
    /// One line for a human or an agent.
    pub message: String,
}

/// The JSON body of an error.
#[derive(Debug, Serialize)]
pub struct ErrorBody<'a> {
    /// The error.
    pub error: ErrorFields<'a>,
}

/// Fields of [`ErrorBody`].
#[derive(Debug, Serialize)]
pub struct ErrorFields<'a> {
    /// Stable code.
    pub code: &'a str,
    /// Message.
    pub message: &'a str,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// 400 `invalid_input`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(400, "invalid_input", message)
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody<'_> {
        ErrorBody {
            error: ErrorFields {
                code: self.code,
                message: &self.message,
            },
        }
    }

    /// The JSON body as a value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidInput(_) => Self::invalid(error.to_string()),
            Error::NotFound(_) | Error::WorkItemNotFound(_) | Error::DocumentNotFound(_) => {
                Self::new(404, "not_found", error.to_string())
            }
            Error::AlreadyExists(_) | Error::DocumentExists(_) => {
                Self::new(409, "already_exists", error.to_string())
            }
            Error::InvalidTransition(_) | Error::DocumentConflict(_) | Error::Undo { .. } => {
                Self::new(409, "conflict", error.to_string())
            }
            Error::StaleEpoch { .. } => Self::new(409, "stale_epoch", error.to_string()),
            Error::WorkWriteBacklogFull { .. } | Error::EmbeddingBacklogFull { .. } => {
                Self::new(503, "busy", format!("server busy: {error}"))
            }
            Error::CorruptDocument { .. } => {
                tracing::error!(%error, "request failed");
                Self::new(500, "corrupt_document", error.to_string())
            }
            Error::PoolTimeout { .. } => {
                Self::new(503, "busy", format!("server busy: {error}; retry later"))
            }
            Error::WorkQueueFull { .. } => Self::new(503, "queue_full", error.to_string()),
            Error::Embedding(_) => Self::new(503, "embedder_unavailable", error.to_string()),
            // The client may free space (or ask the user to); the path tells
            // it which disk. MCP answers it as a tool error with this code.
            Error::DiskFull { .. } => {
                tracing::error!(%error, "request failed");
                Self::new(507, "disk_full", error.to_string())
            }
            Error::SchemaTooNew { .. } | Error::Storage(_) => {
                tracing::error!(%error, "request failed");
                Self::new(500, "internal", "internal error; see the server log")
            }
        }
    }
}

/// Why a server did not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A non-loopback bind without a token.
    #[error(
        "refusing to listen on {addr} without a token: binding an address other than loopback \
         requires a bearer token (`[server] token` in the config file or MNEMOSYNE_TOKEN)"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The token is unusable (empty, or not printable ASCII).
    #[error("invalid token: {0}")]
    InvalidToken(&'static str),
    /// An entry of the allowed hosts or origins is not one.
    #[error("invalid {what} {value:?}: expected {rule}")]
    InvalidAllowList {
        /// Which list.
        what: &'static str,
        /// The entry.
        value: String,
        /// What an entry looks like.
        rule: &'static str,
    },
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A background task was refused (the server is stopping).
    #[error(transparent)]
    Supervisor(#[from] SupervisorError),
    /// The work queue could not be opened.
    #[error("cannot open the work queue: {0}")]
    WorkQueue(mnemosyne_core::Error),
}

#[cfg(test)]
mod tests {
    use super::*;
    use mnemosyne_core::MemoryId;

    #[test]
    fn storage_details_never_reach_the_client() {
        let error = ApiError::from(Error::Storage(
            "near \"SELEC\": syntax error in SELECT * FROM memories".into(),
        ));
        assert_eq!((error.status, error.code), (500, "internal"));
        assert!(!error.message.contains("SELECT"), "{}", error.message);
    }

    #[test]
    fn domain_errors_keep_their_status_and_message() {
        let id = MemoryId::new();
        let error = ApiError::from(Error::NotFound(id));
        assert_eq!((error.status, error.code), (404, "not_found"));
        assert!(error.message.contains(&id.to_string()));
        let error = ApiError::from(Error::AlreadyExists(id));
        assert_eq!(error.status, 409);
        let error = ApiError::from(Error::PoolTimeout {
            role: "reader",
            waited_ms: 5,
            pool_size: 1,
        });
        assert_eq!((error.status, error.code), (503, "busy"));
        let error = ApiError::from(Error::EmbeddingBacklogFull {
            capacity: 10_000,
            waited_ms: 5_000,
        });
        assert_eq!((error.status, error.code), (503, "busy"));
        assert!(
            error.message.contains("embedding_backlog_max") && error.message.contains("retry"),
            "{}",
            error.message
        );
        let error = ApiError::from(
            Error::disk_full("sqlite: database or disk is full")
                .on_database(std::path::Path::new("/data/m.db")),
        );
        assert_eq!((error.status, error.code), (507, "disk_full"));
        assert!(
            error
                .message
                .starts_with("disk full: cannot write /data/m.db ("),
            "{}",
            error.message
        );
        let json = ApiError::invalid("bad").to_json();
        assert_eq!(json["error"]["code"], "invalid_input");
        assert_eq!(json["error"]["message"], "bad");
    }
}
