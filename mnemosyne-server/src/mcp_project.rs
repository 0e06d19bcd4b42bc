//! [`McpProject`]: the namespace an MCP session uses when a call names none.

use mnemosyne_core::Namespace;

/// The namespace MCP calls without one use, and why it is that one.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct McpProject {
    /// Where `remember` goes and what `recall` searches (with its ancestors).
    pub namespace: Namespace,
    /// How it was found, e.g. "the git repository at /src/atlas".
    pub reason: String,
}
