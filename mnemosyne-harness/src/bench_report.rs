//! The report of `cargo xtask bench`: per-operation figures, the rows of the
//! side-by-side table, the targets of issue 8 judged against them, and the
//! Markdown rendering that is printed, written and pasted into BENCHMARKS.md.

use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Median, p99 and throughput of one phase of sequential operations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OpStats {
    /// Operations that completed (successfully or not) and were timed.
    pub ops: u64,
    /// Operations that returned an error, an MCP tool error, or timed out.
    pub errors: u64,
    /// Median latency of one operation.
    pub median_ms: f64,
    /// 99th percentile latency of one operation (nearest rank).
    pub p99_ms: f64,
    /// Timed operations divided by the wall time of the phase.
    pub ops_per_s: f64,
}

impl OpStats {
    /// Figures of `latencies` measured over `wall`; `None` when nothing was timed.
    pub fn from_latencies(
        mut latencies: Vec<Duration>,
        errors: u64,
        wall: Duration,
    ) -> Option<Self> {
        if latencies.is_empty() {
            return None;
        }
        latencies.sort_unstable();
        let wall_s = wall.as_secs_f64().max(f64::EPSILON);
        Some(Self {
            ops: latencies.len() as u64,
            errors,
            median_ms: percentile_ms(&latencies, 0.50),
            p99_ms: percentile_ms(&latencies, 0.99),
            ops_per_s: latencies.len() as f64 / wall_s,
        })
    }
}

/// Nearest-rank percentile `q` (0..=1) of sorted latencies, in milliseconds.
pub fn percentile_ms(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index].as_secs_f64() * 1e3
}

/// One line of the table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Who did the work, e.g. `mnemosyne (sqlite)` or `raw rusqlite`.
    pub system: String,
    /// What was done, e.g. `remember (MCP stdio)`.
    pub work: String,
    /// Items in the store while measuring.
    pub items: u64,
    /// Operations timed (0 when the figure comes from criterion).
    pub ops: u64,
    /// Median latency.
    pub median_ms: Option<f64>,
    /// 99th percentile latency.
    pub p99_ms: Option<f64>,
    /// Operations per second.
    pub ops_per_s: Option<f64>,
    /// Peak resident set of the server process (and its children) over the run at this size.
    pub peak_rss_mib: Option<f64>,
    /// Anything a reader needs to trust the figure (caps, errors, source).
    pub note: String,
}

/// A target of issue 8 and how far the measured figure is from it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What the target asks, e.g. `remember ops/s >= 10x peer at 10k`.
    pub target: String,
    /// The measured figure that answers it, e.g. `45.2x`.
    pub measured: String,
    /// Measured value divided by the goal (1.0 or more meets it).
    pub of_goal: f64,
    /// Whether the target is met.
    pub met: bool,
}

impl TargetCheck {
    /// A check where a larger `value` is better and `goal` is the least allowed.
    pub fn at_least(target: impl Into<String>, value: f64, goal: f64, unit: &str) -> Self {
        Self {
            target: target.into(),
            measured: format!("{} {unit}", fmt_figure(value)),
            of_goal: value / goal,
            met: value >= goal,
        }
    }

    /// A check where a smaller `value` is better and `goal` is the most allowed.
    pub fn at_most(target: impl Into<String>, value: f64, goal: f64, unit: &str) -> Self {
        Self {
            target: target.into(),
            measured: format!("{} {unit}", fmt_figure(value)),
            of_goal: goal / value.max(f64::EPSILON),
            met: value <= goal,
        }
    }
}

/// The machine the run happened on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// Output of `nproc`.
    pub nproc: String,
    /// Output of `free -h`.
    pub free_h: String,
}

/// Everything `cargo xtask bench` reports.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// When the comparison started (RFC 3339).
    pub started_at: String,
    /// The command that produced it.
    pub command: String,
    /// Whether this was a `--quick` smoke run (figures not comparable).
    pub quick: bool,
    /// The machine.
    pub machine: Machine,
    /// The table.
    pub rows: Vec<Row>,
    /// The targets of issue 8 against the table.
    pub targets: Vec<TargetCheck>,
    /// Tool mapping per server, peers that could not run, caps: one line each.
    pub notes: Vec<String>,
}

/// A figure with a sensible number of digits for a table.
pub fn fmt_figure(value: f64) -> String {
    let magnitude = value.abs();
    if magnitude >= 100.0 {
        format!("{value:.0}")
    } else if magnitude >= 10.0 {
        format!("{value:.1}")
    } else if magnitude >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn cell(value: Option<f64>) -> String {
    value.map_or_else(|| "-".to_owned(), fmt_figure)
}

/// Pipes would end a Markdown cell early.
fn escape(text: &str) -> String {
    text.replace('|', "\\|")
}

impl Report {
    /// The table, the targets and the notes as Markdown (also what is printed).
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| system | work | items | ops | median ms | p99 ms | ops/s | peak RSS MiB | note |"
        );
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|---:|---|");
        for row in &self.rows {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                escape(&row.system),
                escape(&row.work),
                row.items,
                row.ops,
                cell(row.median_ms),
                cell(row.p99_ms),
                cell(row.ops_per_s),
                cell(row.peak_rss_mib),
                escape(&row.note)
            );
        }
        if !self.targets.is_empty() {
            let _ = writeln!(out, "\n| target | measured | of goal | met |");
            let _ = writeln!(out, "|---|---:|---:|---|");
            for check in &self.targets {
                let _ = writeln!(
                    out,
                    "| {} | {} | {:.2}x | {} |",
                    escape(&check.target),
                    escape(&check.measured),
                    check.of_goal,
                    if check.met { "yes" } else { "no" }
                );
            }
        }
        if !self.notes.is_empty() {
            out.push('\n');
            for note in &self.notes {
                let _ = writeln!(out, "- {note}");
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(values: &[u64]) -> Vec<Duration> {
        values.iter().map(|&v| Duration::from_millis(v)).collect()
    }

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let sorted = ms(&(1..=100).collect::<Vec<_>>());
        assert_eq!(percentile_ms(&sorted, 0.50), 50.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 99.0);
        assert_eq!(percentile_ms(&sorted, 1.0), 100.0);
        assert_eq!(percentile_ms(&ms(&[7]), 0.99), 7.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn stats_sort_and_count_over_the_wall_time() {
        let stats = OpStats::from_latencies(ms(&[30, 10, 20, 40]), 1, Duration::from_secs(2))
            .expect("some latencies");
        assert_eq!(stats.ops, 4);
        assert_eq!(stats.errors, 1);
        assert_eq!(stats.median_ms, 20.0);
        assert_eq!(stats.p99_ms, 40.0);
        assert_eq!(stats.ops_per_s, 2.0);
        assert!(OpStats::from_latencies(Vec::new(), 0, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn targets_compare_in_the_right_direction() {
        let faster = TargetCheck::at_least("ops", 25.0, 10.0, "x");
        assert!(faster.met);
        assert_eq!(faster.of_goal, 2.5);
        let slow = TargetCheck::at_most("p50", 2.0, 1.0, "ms");
        assert!(!slow.met);
        assert_eq!(slow.of_goal, 0.5);
        assert_eq!(slow.measured, "2.00 ms");
    }

    #[test]
    fn markdown_has_one_line_per_row_and_escapes_pipes() {
        let report = Report {
            started_at: "2026-01-01T00:00:00Z".into(),
            command: "cargo xtask bench".into(),
            quick: true,
            machine: Machine {
                nproc: "2".into(),
                free_h: String::new(),
            },
            rows: vec![Row {
                system: "mnemosyne (sqlite)".into(),
                work: "recall (MCP stdio)".into(),
                items: 1_000,
                ops: 100,
                median_ms: Some(0.123_4),
                p99_ms: Some(1.5),
                ops_per_s: Some(8_000.4),
                peak_rss_mib: None,
                note: "a|b".into(),
            }],
            targets: vec![TargetCheck::at_least("t", 1.0, 2.0, "x")],
            notes: vec!["mapping".into()],
        };
        let markdown = report.to_markdown();
        assert!(markdown.contains(
            "| mnemosyne (sqlite) | recall (MCP stdio) | 1000 | 100 | 0.123 | 1.50 | 8000 | - | a\\|b |"
        ));
        assert!(markdown.contains("| t | 1.00 x | 0.50x | no |"));
        assert!(markdown.ends_with("- mapping\n"));
    }
}
