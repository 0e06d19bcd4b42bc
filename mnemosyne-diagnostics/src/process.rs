//! Figures of this process and of the machine it runs on, read from the OS.
//! On systems without `/proc` every figure is `None`.

use serde::{Deserialize, Serialize};

/// What the OS says about this process.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessStats {
    /// Resident set size, in bytes.
    pub rss_bytes: Option<u64>,
    /// Open file descriptors.
    pub open_fds: Option<u64>,
    /// Threads.
    pub threads: Option<u64>,
    /// Soft limit on open file descriptors (`ulimit -n`).
    pub fd_limit: Option<u64>,
}

impl ProcessStats {
    /// Reads the current figures of this process.
    pub fn sample() -> Self {
        imp::sample(None)
    }

    /// Reads the current figures of process `pid` (all `None` if it is gone).
    pub fn of_pid(pid: u32) -> Self {
        imp::sample(Some(pid))
    }
}

/// Total memory of the machine (`MemTotal`), in bytes.
pub fn mem_total_bytes() -> Option<u64> {
    imp::mem_total_bytes()
}

#[cfg(target_os = "linux")]
mod imp {
    use procfs::process::{LimitValue, Process};
    use procfs::{Current, Meminfo};

    use super::ProcessStats;

    pub fn sample(pid: Option<u32>) -> ProcessStats {
        let process = match pid {
            Some(pid) => i32::try_from(pid)
                .map_err(|_| procfs::ProcError::Other("pid out of range".into()))
                .and_then(Process::new),
            None => Process::myself(),
        };
        let Ok(me) = process else {
            return ProcessStats::default();
        };
        let status = me.status().ok();
        let fd_limit = me
            .limits()
            .ok()
            .and_then(|limits| match limits.max_open_files.soft_limit {
                LimitValue::Value(value) => Some(value),
                LimitValue::Unlimited => None,
            });
        ProcessStats {
            rss_bytes: status.as_ref().and_then(|s| s.vmrss).map(|kib| kib * 1024),
            open_fds: me.fd_count().ok().map(|n| n as u64),
            threads: status.map(|s| s.threads),
            fd_limit,
        }
    }

    pub fn mem_total_bytes() -> Option<u64> {
        Meminfo::current().ok().map(|m| m.mem_total)
    }
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::ProcessStats;

    pub fn sample(_pid: Option<u32>) -> ProcessStats {
        ProcessStats::default()
    }

    pub fn mem_total_bytes() -> Option<u64> {
        None
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn sees_its_own_files_and_memory() {
        // Other tests of this binary open and close files meanwhile: a
        // margin of 100 fds absorbs them.
        let before = ProcessStats::sample();
        let files: Vec<std::fs::File> = (0..500)
            .map(|_| std::fs::File::open("/proc/self/status").unwrap())
            .collect();
        let during = ProcessStats::sample();
        assert!(
            during.open_fds.unwrap() >= before.open_fds.unwrap() + 400,
            "{before:?} -> {during:?}"
        );
        drop(files);
        assert!(during.rss_bytes.unwrap() > 1024 * 1024, "{during:?}");
        assert!(during.threads.unwrap() >= 1);
        assert!(mem_total_bytes().unwrap() > during.rss_bytes.unwrap());
    }
}
