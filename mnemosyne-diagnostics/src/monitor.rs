//! The resource monitor: samples the tracker every `monitor_interval_s`
//! under the [`Supervisor`], judges the sample against thresholds relative
//! to the real memory limit and to each gauge's own limit, and raises
//! alerts (a tracing warning or error, and an event on a bounded channel).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mnemosyne_core::Limits;
use mnemosyne_orchestration::{Supervisor, SupervisorError};
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::time::MissedTickBehavior;

use crate::snapshot::Snapshot;
use crate::tracker::MemoryTracker;

/// Name of the monitor's task.
pub const MONITOR_TASK: &str = "resource-monitor";

/// How serious an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// Close to a limit.
    Warn,
    /// At or past a limit.
    Critical,
}

/// One threshold crossed in one snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    /// How serious.
    pub level: Level,
    /// What crossed it: `rss`, `open_fds` or a gauge name.
    pub what: String,
    /// Its value.
    pub value: u64,
    /// The threshold it crossed.
    pub threshold: u64,
    /// One line for people.
    pub message: String,
}

/// Percentages of each limit at which alerts are raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Thresholds {
    /// RSS as a share of the memory limit: warning.
    pub rss_warn_percent: u64,
    /// RSS as a share of the memory limit: critical.
    pub rss_critical_percent: u64,
    /// Open fds as a share of the fd limit: warning.
    pub fds_warn_percent: u64,
    /// A bounded gauge as a share of its limit: warning (past it: critical).
    pub gauge_warn_percent: u64,
}

impl Thresholds {
    /// The thresholds of `limits`.
    pub fn from_limits(limits: &Limits) -> Self {
        Self {
            rss_warn_percent: limits.monitor_rss_warn_percent.into(),
            rss_critical_percent: limits.monitor_rss_critical_percent.into(),
            fds_warn_percent: limits.monitor_fds_warn_percent.into(),
            gauge_warn_percent: limits.monitor_gauge_warn_percent.into(),
        }
    }

    /// Every threshold `snapshot` crosses.
    pub fn judge(&self, snapshot: &Snapshot) -> Vec<Alert> {
        let mut alerts = Vec::new();
        let limit = snapshot.memory_limit.bytes;
        if let (Some(rss), true) = (snapshot.process.rss_bytes, limit > 0) {
            let critical = percent_of(limit, self.rss_critical_percent);
            let warn = percent_of(limit, self.rss_warn_percent);
            let (level, threshold) = if rss >= critical {
                (Some(Level::Critical), critical)
            } else {
                (rss >= warn)
                    .then_some(Level::Warn)
                    .map_or((None, 0), |l| (Some(l), warn))
            };
            if let Some(level) = level {
                alerts.push(Alert {
                    level,
                    what: "rss".into(),
                    value: rss,
                    threshold,
                    message: format!(
                        "resident memory {} MiB is over {} MiB ({}% of the {} MiB limit)",
                        rss >> 20,
                        threshold >> 20,
                        if level == Level::Critical {
                            self.rss_critical_percent
                        } else {
                            self.rss_warn_percent
                        },
                        limit >> 20
                    ),
                });
            }
        }
        if let (Some(fds), Some(fd_limit)) = (snapshot.process.open_fds, snapshot.process.fd_limit)
        {
            let warn = percent_of(fd_limit, self.fds_warn_percent);
            if fds >= warn {
                alerts.push(Alert {
                    level: if fds >= fd_limit {
                        Level::Critical
                    } else {
                        Level::Warn
                    },
                    what: "open_fds".into(),
                    value: fds,
                    threshold: warn,
                    message: format!(
                        "{fds} open file descriptors, {}% or more of the limit {fd_limit} (ulimit -n)",
                        self.fds_warn_percent
                    ),
                });
            }
        }
        for gauge in &snapshot.gauges {
            let Some(max) = gauge.max.filter(|m| *m > 0) else {
                continue;
            };
            let warn = percent_of(max, self.gauge_warn_percent).max(1);
            if gauge.value > max {
                alerts.push(Alert {
                    level: Level::Critical,
                    what: gauge.name.clone(),
                    value: gauge.value,
                    threshold: max,
                    message: format!("{} is {}, over its limit {max}", gauge.name, gauge.value),
                });
            } else if gauge.value >= warn && max >= 10 && !gauge.full_by_design {
                alerts.push(Alert {
                    level: Level::Warn,
                    what: gauge.name.clone(),
                    value: gauge.value,
                    threshold: warn,
                    message: format!(
                        "{} is {}, {}% or more of its limit {max}",
                        gauge.name, gauge.value, self.gauge_warn_percent
                    ),
                });
            }
        }
        alerts
    }
}

fn percent_of(value: u64, percent: u64) -> u64 {
    (u128::from(value) * u128::from(percent) / 100) as u64
}

#[derive(Debug, Default)]
struct Latest {
    snapshot: Option<Snapshot>,
    alerts: Vec<Alert>,
}

/// Handle on the running monitor.
#[derive(Clone, Debug)]
pub struct Monitor {
    latest: Arc<Mutex<Latest>>,
    alerts: broadcast::Sender<Alert>,
}

impl Monitor {
    /// Starts the monitor task under `supervisor`, sampling `tracker` every
    /// `interval`. New alerts (a threshold crossed that was not crossed in
    /// the sample before) are logged and sent to subscribers; the channel
    /// holds `alerts_capacity` alerts, slow subscribers skip ahead.
    pub fn spawn(
        tracker: Arc<MemoryTracker>,
        thresholds: Thresholds,
        interval: Duration,
        alerts_capacity: usize,
        supervisor: &Supervisor,
    ) -> Result<Self, SupervisorError> {
        let (alerts, _) = broadcast::channel(alerts_capacity.max(1));
        let monitor = Self {
            latest: Arc::new(Mutex::new(Latest::default())),
            alerts,
        };
        let running = monitor.clone();
        supervisor.spawn(MONITOR_TASK, move |token| async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            let mut raised: HashSet<(String, Level)> = HashSet::new();
            loop {
                tokio::select! {
                    biased;
                    () = token.cancelled() => return,
                    _ = ticks.tick() => {}
                }
                raised = running.sample(&tracker, &thresholds, &raised);
            }
        })?;
        Ok(monitor)
    }

    /// Takes and judges one snapshot; returns the alerts now raised.
    fn sample(
        &self,
        tracker: &MemoryTracker,
        thresholds: &Thresholds,
        raised_before: &HashSet<(String, Level)>,
    ) -> HashSet<(String, Level)> {
        let snapshot = tracker.snapshot();
        let alerts = thresholds.judge(&snapshot);
        let mut raised = HashSet::new();
        for alert in &alerts {
            let key = (alert.what.clone(), alert.level);
            if !raised_before.contains(&key) {
                match alert.level {
                    Level::Warn => tracing::warn!(what = %alert.what, "{}", alert.message),
                    Level::Critical => tracing::error!(what = %alert.what, "{}", alert.message),
                }
                // No subscriber is fine: the alert is logged anyway.
                let _ = self.alerts.send(alert.clone());
            }
            raised.insert(key);
        }
        let mut latest = self.latest.lock().unwrap_or_else(|e| e.into_inner());
        latest.snapshot = Some(snapshot);
        latest.alerts = alerts;
        raised
    }

    /// The last snapshot, if one was taken.
    pub fn latest(&self) -> Option<Snapshot> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .snapshot
            .clone()
    }

    /// The alerts of the last snapshot.
    pub fn active_alerts(&self) -> Vec<Alert> {
        self.latest
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .alerts
            .clone()
    }

    /// New alerts as they are raised.
    pub fn subscribe(&self) -> broadcast::Receiver<Alert> {
        self.alerts.subscribe()
    }
}
