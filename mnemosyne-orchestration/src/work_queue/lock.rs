//! One owner per queue: an advisory lock on a file beside the database.
//!
//! The queue decides from its memory, so two processes running a queue on
//! one database would both hand out the same item. Each process that opens
//! a [`WorkQueue`](super::WorkQueue) on a local database first takes this
//! lock; the operating system releases it when the process ends, even on
//! SIGKILL, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// Pause between two attempts to take a held lock.
const RETRY_MS: u64 = 25;

/// Why the lock was not taken.
#[derive(Debug, thiserror::Error)]
pub enum OwnerLockError {
    /// Another process holds it.
    #[error(
        "the work queue of this database is held by another mnemosyne process{}; stop it or use its API (lock file {})",
        .pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        .path.display()
    )]
    Held {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, when it could be read.
        pid: Option<u32>,
    },
    /// The lock file cannot be opened or locked.
    #[error("cannot lock {}: {message}", .path.display())]
    Io {
        /// The lock file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}

/// An exclusive advisory lock, held until dropped.
#[derive(Debug)]
pub struct OwnerLock {
    _file: File,
    path: PathBuf,
}

impl OwnerLock {
    /// The lock file for the database at `db_path`.
    pub fn path_for(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".work-lock");
        PathBuf::from(name)
    }

    /// Takes the lock at `path`, waiting up to `wait` while another process holds it.
    pub async fn acquire(path: &Path, wait: Duration) -> Result<Self, OwnerLockError> {
        let io = |e: std::io::Error| OwnerLockError::Io {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                }
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let pid = file
                        .read_to_string(&mut text)
                        .ok()
                        .and_then(|_| text.trim().parse().ok());
                    return Err(OwnerLockError::Held {
                        path: path.to_owned(),
                        pid,
                    });
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        write!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self {
            _file: file,
            path: path.to_owned(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
