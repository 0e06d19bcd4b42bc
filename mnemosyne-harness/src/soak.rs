//! The soak verdict: samples, the judged window, the criteria, and the SVG
//! chart. Kept apart from the driver (`bin/soak.rs`) so the judgement is
//! testable on made-up samples.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// Share of the run discarded as warm-up before judging.
pub const WARM_UP_SHARE: f64 = 0.2;
/// RSS growth over the judged window allowed, in percent.
pub const RSS_GROWTH_PERCENT_MAX: f64 = 5.0;
/// RSS growth projected to 24 hours allowed, in percent.
pub const RSS_PROJECTED_24H_PERCENT_MAX: f64 = 5.0;
/// The judged window is cut into this many spans of equal time; the lowest
/// RSS of each is the floor the trend is fitted on. Request bursts and the
/// allocator's lazily returned pages push single samples up and down by
/// several MiB; a leak raises the floor, noise does not.
pub const FLOOR_SPANS: usize = 10;
/// A judged window shorter than this is not projected to 24 h: a few MiB
/// of allocator noise over a minute project to thousands of percent a day.
/// The short soak judges growth within its window; the long one both.
pub const PROJECTION_WINDOW_MIN_S: f64 = 600.0;
/// The embedding worker keeps up when the backlog's floor (its lowest
/// sample in a span, as for RSS) in the judged window's last span is at
/// most this many memories above its floor in the first span. A worker
/// slower than the workload's remembers grows the backlog by the
/// difference every second, until `embedding_backlog_max` stops `remember`.
pub const EMBEDDING_BACKLOG_GROWTH_MAX: u64 = 64;
/// The allocator's free pages (resident, not allocated: freed pages not yet
/// returned, and fragmentation) stay under this share of what it has
/// allocated. They are judged against this bound rather than as growth:
/// they swing by several MiB from one sample to the next as requests free
/// their buffers, which is the noise the RSS floor's fit cannot see through,
/// while fragmentation that grows without bound crosses it.
pub const ALLOCATOR_FREE_SHARE_MAX: f64 = 0.5;
/// Open fds of the server never reach this.
pub const FDS_MAX: u64 = 100;
/// Open fds allowed beyond the pool's connections (listener, logs, epoll,
/// client connections in flight, SQLite's WAL and shm files).
pub const FDS_MARGIN: u64 = 64;

/// A figure read from a sample.
type Figure = fn(&Sample) -> u64;

/// One sample of the server under load.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the workload started.
    pub t_s: f64,
    /// Resident set size of the server, bytes.
    pub rss_bytes: u64,
    /// Open fds of the server.
    pub fds: u64,
    /// Threads of the server.
    pub threads: u64,
    /// Reader connections open (and their limit).
    pub pool_readers_open: u64,
    /// `pool_readers_max`.
    pub pool_readers_max: u64,
    /// Supervised tasks alive.
    pub tasks_alive: u64,
    /// Active work items (and their limit).
    pub work_items_active: u64,
    /// `work_items_max`.
    pub work_items_max: u64,
    /// Embedding cache weight (and its cap).
    pub cache_bytes: u64,
    /// `embedding_cache_bytes_max`.
    pub cache_bytes_max: u64,
    /// SSE subscribers connected.
    pub event_subscribers: u64,
    /// Bytes in SQLite's heap (page caches, statements), all connections.
    #[serde(default)]
    pub sqlite_heap_bytes: u64,
    /// Bytes the application has allocated (jemalloc builds only, else 0).
    #[serde(default)]
    pub allocated_bytes: u64,
    /// Bytes in resident pages jemalloc maps (jemalloc builds only, else 0).
    #[serde(default)]
    pub allocator_resident_bytes: u64,
    /// Finished work items stored on disk (an upper bound, the server's gauge).
    #[serde(default)]
    pub work_finished_stored: u64,
    /// Its bound: `work_finished_stored_max` plus the 1% it may pass by
    /// before a prune.
    #[serde(default)]
    pub work_finished_stored_max: u64,
    /// Bytes of the database file and its WAL.
    #[serde(default)]
    pub db_bytes: u64,
    /// Remembered memories waiting for their vector (the embedding worker's backlog).
    #[serde(default)]
    pub embedding_backlog: u64,
    /// `embedding_backlog_max`.
    #[serde(default)]
    pub embedding_backlog_max: u64,
    /// Memories with no vector on disk, as the embedding worker counts them.
    #[serde(default)]
    pub embeddings_missing: u64,
    /// Requests answered so far.
    pub requests_ok: u64,
    /// Requests refused for overload (503) so far.
    pub requests_overloaded: u64,
    /// Requests that failed otherwise so far.
    pub requests_failed: u64,
}

/// One criterion and whether it held.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Criterion {
    /// What is judged.
    pub name: String,
    /// Whether it held.
    pub passed: bool,
    /// The figure and its bound.
    pub detail: String,
    /// Not judged on this run (it passes), e.g. a projection from a window
    /// too short to project from; `detail` says why.
    #[serde(default)]
    pub skipped: bool,
}

/// The judgement of one run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Every criterion held.
    pub passed: bool,
    /// Each criterion.
    pub criteria: Vec<Criterion>,
    /// Net RSS floor (RSS less [`bounded_cache_bytes`]) at the start of the
    /// judged window (fitted), bytes. The `rss_*` figures below are net too,
    /// but for `rss_gross_*` and `rss_max_bytes`.
    pub rss_judged_start_bytes: f64,
    /// Fitted slope of the net RSS floor over the judged window, bytes per second.
    pub rss_slope_bytes_per_s: f64,
    /// Standard error of that slope (from the floors' scatter about the
    /// line), bytes per second: how finely the run resolves growth.
    #[serde(default)]
    pub rss_slope_standard_error_bytes_per_s: f64,
    /// Floor growth over the judged window, percent of its fitted start.
    pub rss_growth_percent: f64,
    /// The floor slope projected over 24 h, percent of the fitted start.
    pub rss_projected_24h_percent: f64,
    /// One standard error of that projection, percent.
    #[serde(default)]
    pub rss_projected_24h_standard_error_percent: f64,
    /// Slope fitted through every judged sample (reported, not judged).
    #[serde(default)]
    pub rss_all_samples_slope_bytes_per_s: f64,
    /// That slope projected over 24 h, percent of the fitted start.
    #[serde(default)]
    pub rss_all_samples_projected_24h_percent: f64,
    /// Slope of the gross RSS floor (caches included), bytes per second (reported, not judged).
    #[serde(default)]
    pub rss_gross_slope_bytes_per_s: f64,
    /// Gross RSS floor growth over the judged window, percent.
    #[serde(default)]
    pub rss_gross_growth_percent: f64,
    /// Gross RSS floor slope projected over 24 h, percent.
    #[serde(default)]
    pub rss_gross_projected_24h_percent: f64,
    /// Highest RSS seen in the judged window, bytes.
    pub rss_max_bytes: u64,
}

/// Least-squares line through `(x, y)`: `(intercept, slope)`.
pub fn fit_line(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    if points.len() < 2 {
        return (points.first().map_or(0.0, |p| p.1), 0.0);
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let covariance: f64 = points
        .iter()
        .map(|(x, y)| (x - mean_x) * (y - mean_y))
        .sum();
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let slope = if variance > 0.0 {
        covariance / variance
    } else {
        0.0
    };
    (mean_y - slope * mean_x, slope)
}

/// Standard error of the slope of the least-squares line `(intercept,
/// slope)` through `points`: the residuals' scatter over the spread of `x`.
/// 0 with fewer than 3 points.
pub fn slope_standard_error(points: &[(f64, f64)], (intercept, slope): (f64, f64)) -> f64 {
    if points.len() < 3 {
        return 0.0;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let variance: f64 = points.iter().map(|(x, _)| (x - mean_x).powi(2)).sum();
    let residuals: f64 = points
        .iter()
        .map(|(x, y)| (y - intercept - slope * x).powi(2))
        .sum();
    if variance > 0.0 {
        (residuals / (n - 2.0) / variance).sqrt()
    } else {
        0.0
    }
}

/// The lowest point of each of `spans` equal spans of time over `points`
/// (sorted by time); every point when there are too few to cut.
pub fn floor_points(points: &[(f64, f64)], spans: usize) -> Vec<(f64, f64)> {
    let spans = spans.min(points.len() / 2);
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Vec::new();
    };
    let width = (last.0 - first.0) / spans.max(1) as f64;
    if spans < 2 || width <= 0.0 {
        return points.to_vec();
    }
    let mut floor: Vec<Option<(f64, f64)>> = vec![None; spans];
    for &(t, y) in points {
        let span = (((t - first.0) / width) as usize).min(spans - 1);
        if floor[span].is_none_or(|(_, low)| y < low) {
            floor[span] = Some((t, y));
        }
    }
    floor.into_iter().flatten().collect()
}

/// Growth over the fitted window and per 24 h, both in percent of the
/// fitted start: `(start, slope, growth, projected)`.
fn trend(points: &[(f64, f64)], start_t: f64, end_t: f64) -> (f64, f64, f64, f64) {
    let (intercept, slope) = fit_line(points);
    let start = (intercept + slope * start_t).max(1.0);
    let growth = slope * (end_t - start_t) / start * 100.0;
    let projected = projected_24h_percent(slope, start);
    (start, slope, growth, projected)
}

/// `slope_bytes_per_s` over 24 h, in percent of `start_bytes`.
fn projected_24h_percent(slope_bytes_per_s: f64, start_bytes: f64) -> f64 {
    slope_bytes_per_s * 86_400.0 / start_bytes * 100.0
}

/// Bytes the server's bounded caches say they hold: the embedding cache's
/// weight and SQLite's heap (its page caches). Each is judged against its
/// own cap ("cache"; SQLite frees pages past `sqlite_heap_bytes_max`), so
/// RSS growth is judged net of them: a cache filling toward its cap is not
/// a leak, and a run shorter than the time it takes to fill (one minute
/// with the default 16 MiB cache) would otherwise fail.
pub fn bounded_cache_bytes(sample: &Sample) -> u64 {
    sample.cache_bytes + sample.sqlite_heap_bytes
}

/// Bytes the allocator holds resident without having them allocated:
/// pages freed and not yet returned to the OS (bounded in time by its
/// decay) and fragmentation (judged by [`ALLOCATOR_FREE_SHARE_MAX`]).
/// jemalloc builds only (SQLite allocates through it too), else 0.
pub fn allocator_free_bytes(sample: &Sample) -> u64 {
    sample
        .allocator_resident_bytes
        .saturating_sub(sample.allocated_bytes)
}

/// RSS less [`bounded_cache_bytes`] and [`allocator_free_bytes`]: the bytes
/// the program holds live plus what is not heap (code, stacks, the model),
/// which is what the growth criteria judge.
pub fn net_rss_bytes(sample: &Sample) -> u64 {
    sample
        .rss_bytes
        .saturating_sub(bounded_cache_bytes(sample))
        .saturating_sub(allocator_free_bytes(sample))
}

/// Judges `samples` of a run that lasted `duration_s`; `exit_ok` says the
/// server stopped cleanly (exit 0, every task ended) when asked.
pub fn judge(samples: &[Sample], duration_s: f64, exit_ok: Result<(), String>) -> Verdict {
    let judged: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t_s >= duration_s * WARM_UP_SHARE)
        .collect();
    let points: Vec<(f64, f64)> = judged
        .iter()
        .map(|s| (s.t_s, net_rss_bytes(s) as f64))
        .collect();
    let (start_t, end_t) = (
        points.first().map_or(0.0, |p| p.0),
        points.last().map_or(0.0, |p| p.0),
    );
    let floor = floor_points(&points, FLOOR_SPANS);
    let (start, slope, growth, projected) = trend(&floor, start_t, end_t);
    let slope_error = slope_standard_error(&floor, fit_line(&floor));
    let projected_error = projected_24h_percent(slope_error, start);
    let (_, all_slope, all_growth, all_projected) = trend(&points, start_t, end_t);
    let gross_points: Vec<(f64, f64)> =
        judged.iter().map(|s| (s.t_s, s.rss_bytes as f64)).collect();
    let (_, gross_slope, gross_growth, gross_projected) =
        trend(&floor_points(&gross_points, FLOOR_SPANS), start_t, end_t);
    let caches_growth_mib = match (judged.first(), judged.last()) {
        (Some(first), Some(last)) => {
            (bounded_cache_bytes(last) as f64 - bounded_cache_bytes(first) as f64) / 1_048_576.0
        }
        _ => 0.0,
    };
    let rss_max = judged.iter().map(|s| s.rss_bytes).max().unwrap_or(0);
    let max_of = |f: fn(&Sample) -> u64| samples.iter().map(f).max().unwrap_or(0);
    let pool_max = max_of(|s| s.pool_readers_max);

    let mut criteria = Vec::new();
    let mut criterion = |name: &str, passed: bool, detail: String| {
        criteria.push(Criterion {
            name: name.into(),
            passed,
            detail,
            skipped: false,
        });
    };
    criterion(
        "samples",
        judged.len() >= 3,
        format!("{} samples judged of {}", judged.len(), samples.len()),
    );
    criterion(
        "rss_growth",
        growth < RSS_GROWTH_PERCENT_MAX,
        format!(
            "{growth:.2}% over the judged window, net (RSS less the embedding cache, SQLite's heap and the allocator's free pages: \
             floor of {} spans fitted from {:.1} MiB, slope {:.2} KiB/s; every sample: {all_growth:.2}%, {:.2} KiB/s; \
             the caches grew {caches_growth_mib:.1} MiB; gross RSS floor {gross_growth:.2}%, {:.2} KiB/s); \
             bound {RSS_GROWTH_PERCENT_MAX}%",
            floor.len(),
            start / 1_048_576.0,
            slope / 1024.0,
            all_slope / 1024.0,
            gross_slope / 1024.0
        ),
    );
    let window_s = end_t - start_t;
    let projected_judged = window_s >= PROJECTION_WINDOW_MIN_S;
    let projection = format!(
        "{projected:.2}% per 24 h at the net floor's slope, standard error {projected_error:.2}% \
         (every sample: {all_projected:.2}%; gross RSS floor: {gross_projected:.2}%); bound {RSS_PROJECTED_24H_PERCENT_MAX}%"
    );
    if projected_judged {
        criterion(
            "rss_projected_24h",
            projected < RSS_PROJECTED_24H_PERCENT_MAX,
            projection,
        );
    } else {
        criterion(
            "rss_projected_24h",
            true,
            format!(
                "not judged: the {window_s:.0} s window is under {PROJECTION_WINDOW_MIN_S:.0} s ({projection})"
            ),
        );
    }
    let (free_share_max, free_at_max) = samples
        .iter()
        .filter(|s| s.allocated_bytes > 0)
        .map(|s| (allocator_free_bytes(s) as f64 / s.allocated_bytes as f64, s))
        .fold((0.0, None), |(max, at), (share, s)| {
            if share > max {
                (share, Some(s))
            } else {
                (max, at)
            }
        });
    criterion(
        "allocator_free",
        free_share_max <= ALLOCATOR_FREE_SHARE_MAX,
        match free_at_max {
            Some(s) => format!(
                "the allocator's free pages at most {:.0}% of its allocated bytes ({:.1} of {:.1} MiB at {:.0} s); bound {:.0}%",
                free_share_max * 100.0,
                allocator_free_bytes(s) as f64 / 1_048_576.0,
                s.allocated_bytes as f64 / 1_048_576.0,
                s.t_s,
                ALLOCATOR_FREE_SHARE_MAX * 100.0
            ),
            None => "no allocator figures (not a jemalloc build)".into(),
        },
    );
    let fds_max = max_of(|s| s.fds);
    let fds_bound = FDS_MAX.min(pool_max + 1 + FDS_MARGIN);
    criterion(
        "fds",
        fds_max < fds_bound,
        format!(
            "max {fds_max} open fds; bound {fds_bound} (under {FDS_MAX}, pool {pool_max}+1 + {FDS_MARGIN})"
        ),
    );
    let pool_open = max_of(|s| s.pool_readers_open);
    criterion(
        "pool",
        pool_open <= pool_max,
        format!("max {pool_open} reader connections open; pool_readers_max {pool_max}"),
    );
    let over = |value: fn(&Sample) -> u64, max: fn(&Sample) -> u64| {
        samples
            .iter()
            .filter(|s| max(s) > 0 && value(s) > max(s))
            .count()
    };
    let bounded: [(&str, &str, Figure, Figure); 3] = [
        (
            "work_queue",
            "active work items; work_items_max",
            |s| s.work_items_active,
            |s| s.work_items_max,
        ),
        (
            "work_finished_stored",
            "finished work items stored; bound",
            |s| s.work_finished_stored,
            |s| s.work_finished_stored_max,
        ),
        (
            "embedding_backlog",
            "memories waiting for their vector; embedding_backlog_max",
            |s| s.embedding_backlog,
            |s| s.embedding_backlog_max,
        ),
    ];
    for (name, what, value, max) in bounded {
        criterion(
            name,
            over(value, max) == 0,
            format!("max {} {what} {}", max_of(value), max_of(max)),
        );
    }
    criterion(
        "cache",
        over(|s| s.cache_bytes, |s| s.cache_bytes_max) == 0,
        format!(
            "max {} KiB in the embedding cache; cap {} KiB",
            max_of(|s| s.cache_bytes) / 1024,
            max_of(|s| s.cache_bytes_max) / 1024
        ),
    );
    let backlog_points: Vec<(f64, f64)> = judged
        .iter()
        .map(|s| (s.t_s, s.embedding_backlog as f64))
        .collect();
    let backlog_floor = floor_points(&backlog_points, FLOOR_SPANS);
    let (backlog_first, backlog_last) = (
        backlog_floor.first().map_or(0.0, |p| p.1) as u64,
        backlog_floor.last().map_or(0.0, |p| p.1) as u64,
    );
    criterion(
        "embedding_keeps_up",
        backlog_last <= backlog_first + EMBEDDING_BACKLOG_GROWTH_MAX,
        format!(
            "backlog floor {backlog_first} at the start of the judged window, {backlog_last} at its end; \
             bound {EMBEDDING_BACKLOG_GROWTH_MAX} memories of growth"
        ),
    );
    let last = samples.last().cloned().unwrap_or_default();
    criterion(
        "requests",
        last.requests_failed == 0 && last.requests_ok > 0,
        format!(
            "{} answered, {} refused for overload (503), {} failed",
            last.requests_ok, last.requests_overloaded, last.requests_failed
        ),
    );
    criterion(
        "shutdown",
        exit_ok.is_ok(),
        exit_ok.map_or_else(|e| e, |()| "exit 0 after SIGTERM, every task ended".into()),
    );
    for c in &mut criteria {
        c.skipped = c.name == "rss_projected_24h" && !projected_judged;
    }
    Verdict {
        passed: criteria.iter().all(|c| c.passed),
        criteria,
        rss_judged_start_bytes: start,
        rss_slope_bytes_per_s: slope,
        rss_slope_standard_error_bytes_per_s: slope_error,
        rss_growth_percent: growth,
        rss_projected_24h_percent: projected,
        rss_projected_24h_standard_error_percent: projected_error,
        rss_all_samples_slope_bytes_per_s: all_slope,
        rss_all_samples_projected_24h_percent: all_projected,
        rss_gross_slope_bytes_per_s: gross_slope,
        rss_gross_growth_percent: gross_growth,
        rss_gross_projected_24h_percent: gross_projected,
        rss_max_bytes: rss_max,
    }
}

/// Six stacked line charts (RSS, the two bounded caches inside it, open
/// fds, tasks alive, active work items) over time, as a standalone SVG document.
pub fn svg(samples: &[Sample], duration_s: f64) -> String {
    type Series = (&'static str, &'static str, fn(&Sample) -> f64);
    let series: [Series; 6] = [
        ("RSS (MiB)", "#c0392b", |s| s.rss_bytes as f64 / 1_048_576.0),
        ("SQLite heap (MiB)", "#d35400", |s| {
            s.sqlite_heap_bytes as f64 / 1_048_576.0
        }),
        ("embedding cache (MiB)", "#16a085", |s| {
            s.cache_bytes as f64 / 1_048_576.0
        }),
        ("open fds", "#2980b9", |s| s.fds as f64),
        ("tasks alive", "#27ae60", |s| s.tasks_alive as f64),
        ("active work items", "#8e44ad", |s| {
            s.work_items_active as f64
        }),
    ];
    let (width, panel, left, top) = (900.0, 170.0, 70.0, 30.0);
    let height = top + panel * series.len() as f64 + 30.0;
    let plot_w = width - left - 20.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="18" font-size="14">mnemosyne soak: {} samples over {:.0} s (grey: warm-up, not judged)</text>"#,
        samples.len(),
        duration_s
    );
    let t_max = duration_s
        .max(samples.last().map_or(1.0, |s| s.t_s))
        .max(1.0);
    for (index, (label, colour, value)) in series.iter().enumerate() {
        let y0 = top + panel * index as f64;
        let plot_h = panel - 40.0;
        let values: Vec<f64> = samples.iter().map(value).collect();
        let v_max = values.iter().copied().fold(0.0_f64, f64::max).max(1.0) * 1.1;
        let _ = writeln!(
            out,
            r##"<rect x="{left}" y="{y0}" width="{:.1}" height="{plot_h}" fill="#eee"/>"##,
            plot_w * WARM_UP_SHARE
        );
        let _ = writeln!(
            out,
            r#"<rect x="{left}" y="{y0}" width="{plot_w}" height="{plot_h}" fill="none" stroke="black"/>"#
        );
        let _ = writeln!(
            out,
            r#"<text x="{left}" y="{:.1}">{label} (max {:.1})</text>"#,
            y0 + plot_h + 15.0,
            values.iter().copied().fold(0.0_f64, f64::max)
        );
        let _ = writeln!(
            out,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{v_max:.1}</text><text x="{:.1}" y="{:.1}" text-anchor="end">0</text>"#,
            left - 5.0,
            y0 + 10.0,
            left - 5.0,
            y0 + plot_h
        );
        let points: Vec<String> = samples
            .iter()
            .zip(&values)
            .map(|(s, v)| {
                format!(
                    "{:.1},{:.1}",
                    left + plot_w * s.t_s / t_max,
                    y0 + plot_h - plot_h * v / v_max
                )
            })
            .collect();
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    let _ = writeln!(
        out,
        r#"<text x="{left}" y="{:.1}">time (s), 0 to {t_max:.0}</text>"#,
        height - 8.0
    );
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Long enough to project to 24 h.
    const RUN_S: f64 = 1_200.0;

    /// 61 samples over `duration_s`.
    fn run_over(duration_s: f64, rss: impl Fn(f64) -> u64) -> Vec<Sample> {
        (0..=60u32)
            .map(|i| {
                let t_s = f64::from(i) * duration_s / 60.0;
                Sample {
                    t_s,
                    rss_bytes: rss(t_s),
                    fds: 20,
                    pool_readers_open: 4,
                    pool_readers_max: 4,
                    requests_ok: 100 * u64::from(i),
                    ..Sample::default()
                }
            })
            .collect()
    }

    fn failed_criteria(verdict: &Verdict) -> Vec<&str> {
        verdict
            .criteria
            .iter()
            .filter(|c| !c.passed)
            .map(|c| c.name.as_str())
            .collect()
    }

    fn run(rss: impl Fn(f64) -> u64) -> Vec<Sample> {
        run_over(RUN_S, rss)
    }

    #[test]
    fn a_flat_run_passes_and_a_leak_fails() {
        let flat = judge(&run(|_| 40 << 20), RUN_S, Ok(()));
        assert!(flat.passed, "{flat:?}");
        assert!(flat.rss_growth_percent.abs() < 1e-9);

        // 40 MiB growing 512 B/s: 1.2% in the window, but 105% per day.
        let leak = judge(&run(|t| (40 << 20) + (t * 512.0) as u64), RUN_S, Ok(()));
        assert!(!leak.passed);
        let failed = failed_criteria(&leak);
        assert_eq!(failed, ["rss_projected_24h"]);
        assert!((leak.rss_slope_bytes_per_s - 512.0).abs() < 1.0);

        // Warm-up growth is not judged.
        let warm = judge(
            &run(|t| {
                if t < 240.0 {
                    (20 << 20) + (t * 1e5) as u64
                } else {
                    40 << 20
                }
            }),
            RUN_S,
            Ok(()),
        );
        assert!(warm.passed, "{warm:?}");
    }

    #[test]
    fn bursts_above_a_flat_floor_pass_and_a_rising_floor_fails() {
        // Every third sample 8 MiB up (a burst of requests), late ones more
        // often: the all-samples fit rises, the floor does not.
        let bursts = |t: f64| {
            let sample = (t / 20.0) as u64;
            let burst = sample.is_multiple_of(3) || (sample > 40 && sample.is_multiple_of(2));
            (40 << 20) + if burst { 8 << 20 } else { 0 }
        };
        let noisy = judge(&run(bursts), RUN_S, Ok(()));
        assert!(noisy.passed, "{noisy:?}");
        assert!(noisy.rss_slope_bytes_per_s.abs() < 1.0);
        assert!(noisy.rss_all_samples_projected_24h_percent > RSS_PROJECTED_24H_PERCENT_MAX);

        // The same bursts over a floor that climbs 256 B/s (53% a day) fail.
        let leak = judge(&run(|t| bursts(t) + (t * 256.0) as u64), RUN_S, Ok(()));
        assert!(!leak.passed);
        assert!(
            (leak.rss_slope_bytes_per_s - 256.0).abs() < 20.0,
            "{leak:?}"
        );
    }

    #[test]
    fn a_short_window_judges_growth_but_does_not_project() {
        // 60 s: 512 B/s is 0.06% in the window, not projected.
        let short = judge(
            &run_over(60.0, |t| (40 << 20) + (t * 512.0) as u64),
            60.0,
            Ok(()),
        );
        assert!(short.passed, "{short:?}");
        let projection = &short
            .criteria
            .iter()
            .find(|c| c.name == "rss_projected_24h");
        assert!(projection.is_some_and(|c| c.skipped && c.detail.starts_with("not judged")));
        // Growth within the window is still judged.
        let steep = judge(
            &run_over(60.0, |t| (40 << 20) + (t * 65_536.0) as u64),
            60.0,
            Ok(()),
        );
        assert!(!steep.passed);
    }

    #[test]
    fn a_backlog_that_drains_passes_and_one_that_climbs_fails() {
        // Batches of 32 arrive and are embedded: a sawtooth over a flat floor.
        let mut sawtooth = run(|_| 40 << 20);
        for (i, sample) in sawtooth.iter_mut().enumerate() {
            sample.embedding_backlog = (i as u64 % 4) * 32;
            sample.embedding_backlog_max = 10_000;
        }
        let verdict = judge(&sawtooth, RUN_S, Ok(()));
        assert!(verdict.passed, "{verdict:?}");

        // A worker 2 memories a second behind the remembers: still under
        // embedding_backlog_max, but it would reach it in a day.
        let mut behind = sawtooth.clone();
        for sample in &mut behind {
            sample.embedding_backlog += (sample.t_s * 2.0) as u64;
        }
        let verdict = judge(&behind, RUN_S, Ok(()));
        let failed = failed_criteria(&verdict);
        assert_eq!(failed, ["embedding_keeps_up"]);
    }

    #[test]
    fn caches_filling_toward_their_caps_are_not_growth_but_a_leak_beside_them_is() {
        // A short run: the embedding cache fills 16 MiB and SQLite's heap
        // 8 MiB over the window, RSS rising with them (9.6% of 250 MiB).
        let filling = |t: f64| (t / 60.0 * f64::from(16 << 20)) as u64;
        let heap = |t: f64| (t / 60.0 * f64::from(8 << 20)) as u64;
        let mut samples = run_over(60.0, |t| (250 << 20) + filling(t) + heap(t));
        for sample in &mut samples {
            sample.cache_bytes = filling(sample.t_s);
            sample.cache_bytes_max = 16 << 20;
            sample.sqlite_heap_bytes = heap(sample.t_s);
        }
        let verdict = judge(&samples, 60.0, Ok(()));
        assert!(verdict.passed, "{verdict:?}");
        assert!(verdict.rss_growth_percent.abs() < 0.1, "{verdict:?}");
        assert!(verdict.rss_gross_growth_percent > RSS_GROWTH_PERCENT_MAX);

        // The same caches beside a heap that leaks 512 KiB/s: net growth.
        for sample in &mut samples {
            sample.rss_bytes += (sample.t_s * 524_288.0) as u64;
        }
        let verdict = judge(&samples, 60.0, Ok(()));
        assert_eq!(failed_criteria(&verdict), ["rss_growth"]);

        // A cache past its cap fails on its own criterion.
        samples[40].cache_bytes = (16 << 20) + 1;
        let verdict = judge(&samples, 60.0, Ok(()));
        assert!(failed_criteria(&verdict).contains(&"cache"));
    }

    #[test]
    fn the_allocators_free_pages_are_bounded_not_fitted() {
        // 120 MiB allocated under 60 MiB of code and model; the allocator's
        // free pages swing between 10 and 30 MiB, higher late in the run:
        // the gross floor climbs, what the program holds does not.
        let free = |t: f64| {
            let sample = (t / 20.0) as u64;
            (10 << 20)
                + if sample > 30 {
                    20 << 20
                } else {
                    (sample % 3) * (5 << 20)
                }
        };
        let with_allocator = |rss: &dyn Fn(f64) -> u64, free: &dyn Fn(f64) -> u64| {
            let mut samples = run(|t| rss(t) + free(t));
            for sample in &mut samples {
                sample.allocated_bytes = 120 << 20;
                sample.allocator_resident_bytes = (120 << 20) + free(sample.t_s);
            }
            samples
        };
        let swinging = judge(&with_allocator(&|_| 180 << 20, &free), RUN_S, Ok(()));
        assert!(swinging.passed, "{swinging:?}");
        assert!(swinging.rss_slope_bytes_per_s.abs() < 1.0);
        assert!(swinging.rss_gross_projected_24h_percent > RSS_PROJECTED_24H_PERCENT_MAX);

        // Live bytes growing 256 B/s beside the same swings fail.
        let mut leak = with_allocator(&|_| 180 << 20, &free);
        for sample in &mut leak {
            let leaked = (sample.t_s * 256.0) as u64;
            sample.rss_bytes += leaked;
            sample.allocated_bytes += leaked;
            sample.allocator_resident_bytes += leaked;
        }
        let verdict = judge(&leak, RUN_S, Ok(()));
        assert_eq!(failed_criteria(&verdict), ["rss_projected_24h"]);

        // Free pages past half the allocated bytes: fragmentation.
        let fragmented = with_allocator(&|_| 180 << 20, &|t| (10 << 20) + (t * 50_000.0) as u64);
        let verdict = judge(&fragmented, RUN_S, Ok(()));
        assert_eq!(failed_criteria(&verdict), ["allocator_free"]);
    }

    #[test]
    fn the_projection_reports_how_finely_the_run_resolves_it() {
        // Floors alternating 2 MiB apart over a flat line: no slope to
        // speak of, but a standard error of the projection well above 0.
        let wobble = |t: f64| {
            (200 << 20)
                + if ((t / 120.0) as u64).is_multiple_of(2) {
                    0
                } else {
                    2 << 20
                }
        };
        let verdict = judge(&run(wobble), RUN_S, Ok(()));
        assert!(
            verdict.rss_projected_24h_standard_error_percent > 1.0,
            "{verdict:?}"
        );
        let flat = judge(&run(|_| 200 << 20), RUN_S, Ok(()));
        assert!(flat.rss_projected_24h_standard_error_percent.abs() < 1e-9);
        let projection = flat.criteria.iter().find(|c| c.name == "rss_projected_24h");
        assert!(projection.is_some_and(|c| c.detail.contains("standard error")));
    }

    #[test]
    fn the_floor_is_the_lowest_point_of_each_span() {
        let points: Vec<(f64, f64)> = (0..20).map(|i| (f64::from(i), f64::from(i % 4))).collect();
        let floor = floor_points(&points, 5);
        assert_eq!(
            floor,
            [(0.0, 0.0), (4.0, 0.0), (8.0, 0.0), (12.0, 0.0), (16.0, 0.0)]
        );
        // Too few points to cut: all of them.
        assert_eq!(floor_points(&points[..3], 5), points[..3]);
        assert!(floor_points(&[], 5).is_empty());
    }

    #[test]
    fn limits_and_shutdown_are_judged() {
        let mut samples = run(|_| 40 << 20);
        samples[30].pool_readers_open = 5;
        samples[31].fds = 150;
        for sample in &mut samples {
            sample.work_finished_stored_max = 1_010;
            sample.work_finished_stored = 1_010;
        }
        samples[32].work_finished_stored = 1_011;
        let verdict = judge(&samples, RUN_S, Err("exit code 143".into()));
        let failed = failed_criteria(&verdict);
        assert_eq!(failed, ["fds", "pool", "work_finished_stored", "shutdown"]);
        let svg = svg(&samples, 60.0);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 6);
    }
}
