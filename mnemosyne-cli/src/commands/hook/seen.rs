//! Which memories a session was already given, so a prompt does not repeat
//! them: one small JSON file per session in a directory of its own, both
//! bounded (`hook_session_ids_max` ids a session, `hook_sessions_max`
//! files, the least recently written deleted first).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mnemosyne_core::MemoryId;
use serde::{Deserialize, Serialize};

/// Longest session id used as a file name.
pub const SESSION_ID_BYTES_MAX: usize = 128;

/// The memories given to one session, oldest first.
#[derive(Debug, Default, Serialize, Deserialize)]
struct SessionFile {
    given: Vec<MemoryId>,
}

/// The state directory and its bounds.
#[derive(Debug, Clone)]
pub struct SeenStore {
    dir: PathBuf,
    sessions_max: u32,
    ids_max: u32,
}

/// One session's given memories.
#[derive(Debug)]
pub struct Seen {
    path: PathBuf,
    given: Vec<MemoryId>,
    ids_max: usize,
}

impl SeenStore {
    pub fn new(dir: PathBuf, sessions_max: u32, ids_max: u32) -> Self {
        Self {
            dir,
            sessions_max,
            ids_max,
        }
    }

    /// The state of `session_id` (empty when new, or unreadable: a broken
    /// file only costs repeats). The id must be 1 to 128 characters of
    /// letters, digits, `-` and `_` (Claude Code's are UUIDs).
    pub fn open(&self, session_id: &str) -> Result<Seen> {
        let valid = !session_id.is_empty()
            && session_id.len() <= SESSION_ID_BYTES_MAX
            && session_id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            bail!(
                "session_id {:?} is not 1 to {SESSION_ID_BYTES_MAX} letters, digits, '-' or '_'",
                super::render::cut_bytes(session_id, 64)
            );
        }
        let path = self.dir.join(format!("{session_id}.json"));
        let given = std::fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<SessionFile>(&bytes).ok())
            .map(|file| file.given)
            .unwrap_or_default();
        Ok(Seen {
            path,
            given,
            ids_max: self.ids_max as usize,
        })
    }

    /// Writes `seen` (through a temporary file and a rename, so a reader
    /// never sees half of it), then deletes the least recently written
    /// sessions past `hook_sessions_max`.
    pub fn save(&self, seen: &Seen) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        let bytes = serde_json::to_vec(&SessionFile {
            given: seen.given.clone(),
        })?;
        let temporary = seen
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&temporary, bytes)
            .with_context(|| format!("cannot write {}", temporary.display()))?;
        std::fs::rename(&temporary, &seen.path)
            .with_context(|| format!("cannot write {}", seen.path.display()))?;
        self.prune()
    }

    fn prune(&self) -> Result<()> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)
            .with_context(|| format!("cannot read {}", self.dir.display()))?
            .filter_map(|entry| {
                let entry = entry.ok()?;
                let path = entry.path();
                let modified = entry.metadata().ok()?.modified().ok()?;
                (path.extension()? == "json").then_some((modified, path))
            })
            .collect();
        let excess = files.len().saturating_sub(self.sessions_max as usize);
        if excess == 0 {
            return Ok(());
        }
        files.sort();
        for (_, path) in files.into_iter().take(excess) {
            // Another hook may have deleted it first.
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }

    #[cfg(test)]
    fn files(&self) -> usize {
        std::fs::read_dir(&self.dir).map_or(0, |d| d.count())
    }
}

impl Seen {
    pub fn contains(&self, id: &MemoryId) -> bool {
        self.given.contains(id)
    }

    /// Forgets every given memory (the context was cleared or compacted).
    pub fn clear(&mut self) {
        self.given.clear();
    }

    /// Records `id` as given, forgetting the oldest past the bound.
    pub fn add(&mut self, id: MemoryId) {
        if self.contains(&id) {
            return;
        }
        self.given.push(id);
        let excess = self.given.len().saturating_sub(self.ids_max);
        self.given.drain(..excess);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.given.len()
    }
}

/// Where the hooks keep session state for the database at `db`: beside it
/// (`DB.hook-sessions/`), so that two databases never share it.
pub fn dir_beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".hook-sessions");
    db.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_ids_survive_a_save_and_stay_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let store = SeenStore::new(dir.path().join("s"), 8, 3);
        let mut seen = store.open("0f1e-abc_D").unwrap();
        let ids: Vec<MemoryId> = (0..4).map(|_| MemoryId::new()).collect();
        for id in &ids {
            seen.add(*id);
        }
        seen.add(ids[3]);
        assert_eq!(seen.len(), 3, "the 4th id pushed out the 1st");
        store.save(&seen).unwrap();
        let again = store.open("0f1e-abc_D").unwrap();
        assert!(!again.contains(&ids[0]));
        assert!(ids[1..].iter().all(|id| again.contains(id)));
        let other = store.open("another").unwrap();
        assert!(!other.contains(&ids[1]), "sessions are apart");
    }

    #[test]
    fn sessions_past_the_bound_are_deleted_oldest_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = SeenStore::new(dir.path().to_owned(), 2, 10);
        for name in ["a", "b", "c"] {
            let mut seen = store.open(name).unwrap();
            seen.add(MemoryId::new());
            store.save(&seen).unwrap();
            // File times need to differ for "oldest".
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert_eq!(store.files(), 2);
        assert!(!dir.path().join("a.json").exists());
        assert!(dir.path().join("c.json").exists());
    }

    #[test]
    fn hostile_session_ids_and_broken_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = SeenStore::new(dir.path().to_owned(), 2, 10);
        for bad in ["", "../escape", "a/b", "x.json", &"a".repeat(129), "é"] {
            let err = store.open(bad).unwrap_err();
            assert!(err.to_string().contains("session_id"), "{err}");
        }
        store.open(&"a".repeat(128)).unwrap();
        std::fs::write(dir.path().join("broken.json"), b"{not json").unwrap();
        let seen = store.open("broken").unwrap();
        assert_eq!(seen.len(), 0, "a broken file reads as a new session");
    }

    #[test]
    fn the_state_lives_beside_its_database() {
        assert_eq!(
            dir_beside(Path::new("/data/m.db")),
            Path::new("/data/m.db.hook-sessions")
        );
    }
}
