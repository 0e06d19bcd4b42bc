use std::path::{Path, PathBuf};

use crate::{MemoryId, WorkItemId};

/// Result with the core [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong behind the [`crate::Storage`] trait and the
/// domain validation. Messages are one line, lower case, no trailing period.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller gave input that breaks a rule or a limit; nothing was changed.
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// No memory has this id.
    #[error("memory not found: {0}")]
    NotFound(MemoryId),
    /// A memory with this id already exists.
    #[error("memory already exists: {0}")]
    AlreadyExists(MemoryId),
    /// Every pooled connection stayed busy for the whole wait timeout.
    #[error("timed out after {waited_ms} ms waiting for a {role} connection (pool of {pool_size})")]
    PoolTimeout {
        /// `reader` or `writer`.
        role: &'static str,
        /// The configured wait timeout.
        waited_ms: u64,
        /// Connections in that pool.
        pool_size: usize,
    },
    /// The database was written by a newer Mnemosyne; it is left untouched.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade mnemosyne to open it"
    )]
    SchemaTooNew {
        /// Version found in the file.
        found: u32,
        /// Highest version this build knows.
        supported: u32,
    },
    /// The embedder failed (endpoint down, wrong dimension, bad answer); the message names it.
    #[error("embedding error: {0}")]
    Embedding(String),
    /// `work_items_max` work items are active (pending or claimed); nothing was added.
    #[error("work queue is full: {capacity} active items (work_items_max); retry later")]
    WorkQueueFull {
        /// The configured `work_items_max`.
        capacity: u32,
    },
    /// `work_write_backlog_max` queue transitions wait for their commit;
    /// nothing was changed.
    #[error(
        "work queue is busy: {capacity} transitions wait to be written (work_write_backlog_max); retry later"
    )]
    WorkWriteBacklogFull {
        /// The configured `work_write_backlog_max`.
        capacity: u32,
    },
    /// `embedding_backlog_max` remembered memories wait for their vector and
    /// no room came within `embedding_backlog_wait_ms`; nothing was stored.
    #[error(
        "embedding backlog is full: {capacity} memories wait for their vector (embedding_backlog_max) \
         and no room came in {waited_ms} ms (embedding_backlog_wait_ms); nothing was stored, retry later"
    )]
    EmbeddingBacklogFull {
        /// The configured `embedding_backlog_max`.
        capacity: u32,
        /// How long the call waited for room (`embedding_backlog_wait_ms`).
        waited_ms: u64,
    },
    /// No work item has this id.
    #[error("work item not found: {0}")]
    WorkItemNotFound(WorkItemId),
    /// The work item is not in a state or phase that allows this change; the message says why.
    #[error("invalid transition: {0}")]
    InvalidTransition(String),
    /// No context document has this name.
    #[error("document not found: {0}")]
    DocumentNotFound(String),
    /// A context document with this name already exists.
    #[error("document already exists: {0}")]
    DocumentExists(String),
    /// The edit was based on an epoch of the document that compaction has
    /// since replaced; nothing was changed.
    #[error(
        "document {name} was compacted since it was read (edit based on epoch {expected}, document now at epoch {actual}); re-read it and edit again"
    )]
    StaleEpoch {
        /// The document.
        name: String,
        /// The epoch the edit was based on.
        expected: u64,
        /// The epoch of the stored document.
        actual: u64,
    },
    /// The stored document was changed by someone else between its read and
    /// this write; nothing was written (the caller may retry).
    #[error("document {0} changed while it was being saved; retry")]
    DocumentConflict(String),
    /// The stored bytes of a document cannot be loaded; other documents are unaffected.
    #[error("document {name} is corrupt and cannot be loaded: {reason}")]
    CorruptDocument {
        /// The document.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Nothing to undo or redo, or the text changed so that the step no longer applies; nothing was changed.
    #[error("cannot {action}: {reason}")]
    Undo {
        /// `undo` or `redo`.
        action: &'static str,
        /// Why.
        reason: String,
    },
    /// The disk holding the database is full (or the file reached the
    /// process's file size limit): the write was rolled back, everything
    /// committed before stands, and reads still work.
    #[error("disk full: cannot write {} ({detail}); free some space and retry", database.display())]
    DiskFull {
        /// The database file; empty until the backend that knows it names it
        /// ([`Error::on_database`]).
        database: PathBuf,
        /// What the database engine or the OS said.
        detail: String,
    },
    /// The backend failed (I/O, corruption, a remote server); the message says which.
    #[error("storage error: {0}")]
    Storage(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidInput`].
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidInput(message.into())
    }

    /// A [`Error::DiskFull`] that does not name its database yet (the
    /// error conversion of a backend cannot know the path).
    pub fn disk_full(detail: impl Into<String>) -> Self {
        Self::DiskFull {
            database: PathBuf::new(),
            detail: detail.into(),
        }
    }

    /// Names `database` in a [`Error::DiskFull`] that names none yet; any
    /// other error is returned as it is.
    #[must_use]
    pub fn on_database(self, database: &Path) -> Self {
        match self {
            Self::DiskFull {
                database: named,
                detail,
            } if named.as_os_str().is_empty() => Self::DiskFull {
                database: database.to_owned(),
                detail,
            },
            other => other,
        }
    }

    /// A copy of a [`Error::DiskFull`] (errors are not `Clone`), for code
    /// that answers several callers with one failure.
    pub fn as_disk_full(&self) -> Option<Self> {
        match self {
            Self::DiskFull { database, detail } => Some(Self::DiskFull {
                database: database.clone(),
                detail: detail.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_full_names_the_database_once_it_is_known() {
        let error = Error::disk_full("database or disk is full").on_database(Path::new("/m/a.db"));
        assert_eq!(
            error.to_string(),
            "disk full: cannot write /m/a.db (database or disk is full); free some space and retry"
        );
        // A path already named is kept; other errors pass unchanged.
        let again = error.on_database(Path::new("/other.db"));
        assert!(again.to_string().contains("/m/a.db"), "{again}");
        assert!(again.as_disk_full().is_some());
        let other = Error::Storage("x".into()).on_database(Path::new("/m/a.db"));
        assert_eq!(other.to_string(), "storage error: x");
        assert!(other.as_disk_full().is_none());
    }
}
