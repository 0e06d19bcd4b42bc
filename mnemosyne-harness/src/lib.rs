//! Shared by the stress, soak and bench harnesses: the check report and the
//! baseline of open fds and runtime tasks every check must return to; the
//! soak's judgement; the bench's MCP driver, peer servers, peak-RSS sampler
//! and report.

#![deny(missing_docs)]
// The harnesses are programs that report on stdout.
#![allow(clippy::print_stdout)]

pub mod bench_report;
pub mod mcp_driver;
pub mod peak_rss;
pub mod peers;
pub mod soak;

use std::future::Future;
use std::time::Instant;

use mnemosyne_diagnostics::ProcessStats;
use tokio::runtime::Handle;

/// Open fds a check may leave above the baseline (the runtime's own lazily
/// opened descriptors, such as the blocking pool's eventfds).
pub const FD_SLACK: u64 = 4;

/// How long a check's leftovers get to finish dropping.
pub const SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Open fds and alive runtime tasks at one instant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Open file descriptors of the process.
    pub fds: u64,
    /// Tasks alive on the current runtime.
    pub tasks: usize,
}

impl Baseline {
    /// Measures now (call inside the runtime).
    pub fn now() -> Self {
        Self {
            fds: ProcessStats::sample().open_fds.unwrap_or(0),
            tasks: Handle::current().metrics().num_alive_tasks(),
        }
    }

    /// Waits up to `settle` for the process to come back to this baseline
    /// (aborted tasks and closed connections finish dropping a little
    /// after the call that ended them); why it did not, if it did not.
    pub async fn settle(&self, settle: std::time::Duration) -> Option<String> {
        let deadline = Instant::now() + settle;
        loop {
            let leak = self.leak(&Baseline::now());
            if leak.is_none() || Instant::now() >= deadline {
                return leak;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// Why `later` has not returned to this baseline, if it has not.
    pub fn leak(&self, later: &Baseline) -> Option<String> {
        if later.tasks > self.tasks {
            return Some(format!(
                "{} runtime tasks alive, baseline {}",
                later.tasks, self.tasks
            ));
        }
        if later.fds > self.fds + FD_SLACK {
            return Some(format!(
                "{} open fds, baseline {} (+{FD_SLACK} allowed)",
                later.fds, self.fds
            ));
        }
        None
    }
}

/// Runs checks, prints one line each, and remembers whether all passed.
#[derive(Debug, Default)]
pub struct Report {
    failed: Vec<String>,
    ran: usize,
}

impl Report {
    /// A report with no checks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Runs `check` (which says what held, or what broke) and then checks
    /// that fds and tasks came back to `baseline`.
    pub async fn run<F>(&mut self, name: &str, baseline: Baseline, check: F)
    where
        F: Future<Output = Result<String, String>>,
    {
        let started = Instant::now();
        let outcome = check.await;
        let outcome = match (outcome, baseline.settle(SETTLE).await) {
            (Ok(detail), None) => Ok(detail),
            (Ok(detail), Some(leak)) => Err(format!("{detail}; but {leak}")),
            (Err(broke), _) => Err(broke),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.ran += 1;
        match outcome {
            Ok(detail) => println!("ok    {name}: {detail} ({seconds:.1} s)"),
            Err(broke) => {
                println!("FAIL  {name}: {broke} ({seconds:.1} s)");
                self.failed.push(name.to_owned());
            }
        }
    }

    /// Names of the failed checks.
    pub fn failed(&self) -> &[String] {
        &self.failed
    }

    /// Checks run so far.
    pub fn ran(&self) -> usize {
        self.ran
    }
}

/// `Err(message)` unless `condition`.
pub fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}
