//! The mechanism of ownership on a local database: an advisory lock on a
//! file beside it (`<db>.work-lock`). Crate-private: callers ask
//! [`QueueOwnership`](super::QueueOwnership), which decides when a lock is
//! taken at all.
//!
//! The operating system releases the lock when the process ends, even on
//! SIGKILL, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::time::Instant;

/// Pause between two attempts to take a held lock.
const RETRY_MS: u64 = 25;

/// What an attempt to take the lock found.
#[derive(Debug)]
pub(crate) enum Attempt {
    /// Taken: held until dropped.
    Taken(OwnerLock),
    /// Another process held it for the whole wait.
    Held {
        /// The holder's pid, when it could be read.
        pid: Option<u32>,
    },
}

/// An exclusive advisory lock, held until dropped.
#[derive(Debug)]
pub(crate) struct OwnerLock {
    _file: File,
    path: PathBuf,
}

impl OwnerLock {
    /// The lock file for the database at `db_path`.
    pub(crate) fn path_for(db_path: &Path) -> PathBuf {
        let mut name = db_path.as_os_str().to_owned();
        name.push(".work-lock");
        PathBuf::from(name)
    }

    /// Takes the lock at `path`, waiting up to `wait` while another process
    /// holds it (zero: one attempt). Errors are the lock file's I/O.
    pub(crate) async fn acquire(path: &Path, wait: Duration) -> std::io::Result<Attempt> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        // None: a wait too long to represent, i.e. no deadline.
        let deadline = Instant::now().checked_add(wait);
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock)
                    if deadline.is_none_or(|deadline| Instant::now() < deadline) =>
                {
                    tokio::time::sleep(Duration::from_millis(RETRY_MS)).await;
                }
                Err(TryLockError::WouldBlock) => {
                    let mut text = String::new();
                    let pid = file
                        .read_to_string(&mut text)
                        .ok()
                        .and_then(|_| text.trim().parse().ok());
                    return Ok(Attempt::Held { pid });
                }
                Err(TryLockError::Error(e)) => return Err(e),
            }
        }
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        write!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(Attempt::Taken(Self {
            _file: file,
            path: path.to_owned(),
        }))
    }

    /// The lock file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
