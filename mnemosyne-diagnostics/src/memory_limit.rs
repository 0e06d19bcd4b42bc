//! The memory this process may really use: the tightest cgroup limit on its
//! way to the root (v2 `memory.max`, v1 `memory.limit_in_bytes`), else the
//! machine's `MemTotal`. Thresholds are judged against this, never a constant.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Where a memory limit comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum LimitSource {
    /// A cgroup's limit file.
    Cgroup {
        /// The file that holds the limit.
        file: PathBuf,
    },
    /// The machine's total memory.
    MemTotal,
    /// Nothing could be read.
    Unknown,
}

/// The memory limit and where it was found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryLimit {
    /// The limit, in bytes (0 when unknown).
    pub bytes: u64,
    /// Where it comes from.
    pub source: LimitSource,
}

impl MemoryLimit {
    /// Reads the limit of this process.
    pub fn detect() -> Self {
        let cgroup = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        if let Some(found) = cgroup_limit(Path::new("/sys/fs/cgroup"), &cgroup) {
            return found;
        }
        match crate::process::mem_total_bytes() {
            Some(bytes) => Self {
                bytes,
                source: LimitSource::MemTotal,
            },
            None => Self {
                bytes: 0,
                source: LimitSource::Unknown,
            },
        }
    }
}

/// The tightest limit among the cgroup of `proc_self_cgroup` (the text of
/// `/proc/self/cgroup`) and its ancestors, under `root`.
fn cgroup_limit(root: &Path, proc_self_cgroup: &str) -> Option<MemoryLimit> {
    let mut best: Option<MemoryLimit> = None;
    let mut consider = |file: PathBuf| {
        let Ok(text) = std::fs::read_to_string(&file) else {
            return;
        };
        // v2 says "max" for no limit; v1 says a huge number.
        let Ok(bytes) = text.trim().parse::<u64>() else {
            return;
        };
        if bytes >= (1 << 60) {
            return;
        }
        if best.as_ref().is_none_or(|b| bytes < b.bytes) {
            best = Some(MemoryLimit {
                bytes,
                source: LimitSource::Cgroup { file },
            });
        }
    };
    for line in proc_self_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.is_empty() {
            // cgroup v2: one unified hierarchy.
            for dir in ancestors(&root.join(relative), root) {
                consider(dir.join("memory.max"));
            }
        } else if controllers.split(',').any(|c| c == "memory") {
            let base = root.join("memory");
            for dir in ancestors(&base.join(relative), &base) {
                consider(dir.join("memory.limit_in_bytes"));
            }
        }
    }
    best
}

/// `dir` and each parent up to and including `root`.
fn ancestors(dir: &Path, root: &Path) -> Vec<PathBuf> {
    dir.ancestors()
        .take_while(|d| d.starts_with(root))
        .map(Path::to_path_buf)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_the_tightest_limit_on_the_way_up() {
        let dir = std::env::temp_dir().join(format!("mnemo-cgroup-{}", std::process::id()));
        let leaf = dir.join("user.slice/app.scope");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(dir.join("memory.max"), "max\n").unwrap();
        std::fs::write(dir.join("user.slice/memory.max"), "1073741824\n").unwrap();
        std::fs::write(leaf.join("memory.max"), "2147483648\n").unwrap();
        let found = cgroup_limit(&dir, "0::/user.slice/app.scope\n").unwrap();
        assert_eq!(found.bytes, 1 << 30);
        assert_eq!(
            found.source,
            LimitSource::Cgroup {
                file: dir.join("user.slice/memory.max")
            }
        );
        assert!(cgroup_limit(&dir, "0::/\n").is_none(), "max is no limit");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn detect_always_answers_on_linux() {
        let limit = MemoryLimit::detect();
        if cfg!(target_os = "linux") {
            assert!(limit.bytes > 0, "{limit:?}");
        }
    }
}
