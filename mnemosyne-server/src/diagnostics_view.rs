//! [`DiagnosticsView`]: what the `diagnostics` tool (MCP) and
//! `GET /v1/diagnostics` answer, read from the core's tracker and monitor.

use mnemosyne_diagnostics::Thresholds;

use crate::mcp_project::McpProject;
use crate::shared_core::Core;

/// What `diagnostics` (MCP) and `GET /v1/diagnostics` answer.
#[derive(Debug, serde::Serialize)]
pub struct DiagnosticsView {
    /// Process figures and every gauge, now.
    pub snapshot: mnemosyne_diagnostics::Snapshot,
    /// The monitor's alerts in its last sample.
    pub alerts: Vec<mnemosyne_diagnostics::Alert>,
    /// The MCP session's project (MCP only, when the server was given one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<McpProject>,
}

/// The view of `core` now, without a project (the MCP tool adds its
/// session's).
pub(crate) fn diagnostics(core: &Core) -> DiagnosticsView {
    let snapshot = core.tracker.snapshot();
    let alerts = match core.monitor.get() {
        Some(monitor) => monitor.active_alerts(),
        None => Thresholds::from_limits(&core.limits).judge(&snapshot),
    };
    DiagnosticsView {
        snapshot,
        alerts,
        project: None,
    }
}
