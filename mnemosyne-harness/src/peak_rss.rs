//! Peak resident set of a server process and its descendants, from procfs:
//! `VmHWM` (the kernel's high-water mark) of every process of the tree,
//! sampled while they live, the maximum kept per pid and summed.

use std::collections::HashMap;

/// `VmHWM` of a `/proc/PID/status` text, in KiB.
pub fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Child pids listed in the `children` files of a `/proc/PID/task/*` tree.
pub fn parse_children(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|pid| pid.parse().ok())
        .collect()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| parse_children(&text))
        .collect()
}

/// Bound on the processes of one tree followed (a runaway fork cannot make
/// a sample unbounded).
pub const TREE_PROCESSES_MAX: usize = 256;

/// The peak RSS seen so far of one process tree.
#[derive(Debug, Default, Clone)]
pub struct PeakRss {
    peak_kib_by_pid: HashMap<u32, u64>,
}

impl PeakRss {
    /// Nothing sampled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads `VmHWM` of `root` and of its descendants that are alive now.
    pub fn sample(&mut self, root: u32) {
        let mut pending = vec![root];
        let mut seen = 0usize;
        while let Some(pid) = pending.pop() {
            seen += 1;
            if seen > TREE_PROCESSES_MAX {
                break;
            }
            if let Some(kib) = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .ok()
                .as_deref()
                .and_then(parse_vm_hwm_kib)
            {
                let peak = self.peak_kib_by_pid.entry(pid).or_default();
                *peak = (*peak).max(kib);
            }
            pending.extend(children(pid));
        }
    }

    /// Sum over the tree of each process's peak, in MiB (`None` before any sample).
    pub fn total_mib(&self) -> Option<f64> {
        if self.peak_kib_by_pid.is_empty() {
            return None;
        }
        Some(self.peak_kib_by_pid.values().sum::<u64>() as f64 / 1024.0)
    }

    /// Processes of the tree seen so far.
    pub fn processes(&self) -> usize {
        self.peak_kib_by_pid.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_vm_hwm_from_a_status_text() {
        let status = "Name:\tnode\nVmPeak:\t 1000 kB\nVmHWM:\t   52340 kB\nVmRSS:\t 50000 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(52_340));
        assert_eq!(parse_vm_hwm_kib("Name:\tkthreadd\n"), None);
    }

    #[test]
    fn reads_child_pids() {
        assert_eq!(parse_children("12 345 \n"), vec![12, 345]);
        assert!(parse_children("").is_empty());
    }

    #[test]
    fn samples_this_process() {
        let mut peak = PeakRss::new();
        assert_eq!(peak.total_mib(), None);
        peak.sample(std::process::id());
        assert!(peak.total_mib().is_some_and(|mib| mib > 0.0));
        assert!(peak.processes() >= 1);
    }
}
