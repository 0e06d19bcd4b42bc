//! The MCP server (rmcp): one tool per memory operation.
//!
//! Tools are grouped in `#[tool_router(router = ...)]` impl blocks, one per
//! subject; [`McpServer::tools`] adds the groups together. The work queue and
//! the documents add a block each (e.g. `work_tools`, `doc_tools`) and one
//! `+ Self::work_tools()` there.
//!
//! Answers: a tool's result is its JSON (`structuredContent`, and the same
//! text in `content`). A refused or failed operation is a tool result with
//! `isError: true` and `{"error": {"code", "message"}}`, the HTTP error shape,
//! so that the agent reads the reason. Calls the server cannot route (unknown
//! tool, arguments of the wrong shape) are JSON-RPC errors (-32602).

use std::sync::Arc;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::tool::ToolCallContext;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, Implementation, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, tool, tool_router};
use serde::Serialize;

use crate::error::ApiError;
use crate::params::{
    ForgetParams, IdParams, LinkMemoriesParams, LinkParams, ListParams, RecallParams,
    RememberParams, UpdateParams,
};
use crate::server::Core;

/// What the server tells an agent at initialisation.
pub const INSTRUCTIONS: &str = "Mnemosyne is your long-term memory. Before working on something, \
`recall` what you learned about it before; when you decide something, fix a bug or find a pattern, \
`remember` it (one idea per memory, with tags and an importance from 1 to 10). Namespaces: global, \
project:NAME, session:PROJECT/ID. Results are bounded: recall and list cut long contents \
(content_truncated: true); `get` returns a memory whole.";

/// The MCP service over the shared server state. Cheap to clone.
#[derive(Clone)]
pub struct McpServer {
    core: Arc<Core>,
    tool_router: Arc<ToolRouter<Self>>,
}

impl std::fmt::Debug for McpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer").finish_non_exhaustive()
    }
}

/// A tool's answer: its value, or the error as a tool error.
fn answer<T: Serialize>(result: Result<T, ApiError>) -> CallToolResult {
    match result.and_then(|value| {
        serde_json::to_value(value)
            .map_err(|e| ApiError::new(500, "internal", format!("cannot encode the answer: {e}")))
    }) {
        Ok(value) => CallToolResult::structured(value),
        Err(error) => CallToolResult::structured_error(error.to_json()),
    }
}

impl McpServer {
    pub(crate) fn new(core: Arc<Core>) -> Self {
        Self {
            core,
            tool_router: Arc::new(Self::tools()),
        }
    }

    /// Every tool this server offers: the sum of the tool groups.
    pub fn tools() -> ToolRouter<Self> {
        Self::memory_tools()
    }
}

#[tool_router(router = memory_tools, vis = "pub(crate)")]
impl McpServer {
    /// `remember`.
    #[tool(
        name = "remember",
        description = "Store a memory: a decision, a bug and its fix, a pattern, a fact worth keeping. \
Returns the stored memory with its id. Keep one idea per memory; add tags and an importance (1-10)."
    )]
    async fn remember(&self, Parameters(params): Parameters<RememberParams>) -> CallToolResult {
        answer(self.core.memories.remember(params).await)
    }

    /// `recall`.
    #[tool(
        name = "recall",
        description = "Search memories by meaning and keywords (hybrid: BM25 + vectors + links), best first. \
At most recall_results_max hits (truncated: true says more matched); long contents are cut \
(content_truncated: true; use get for the whole memory)."
    )]
    async fn recall(&self, Parameters(params): Parameters<RecallParams>) -> CallToolResult {
        answer(self.core.memories.recall(params).await)
    }

    /// `get`.
    #[tool(
        name = "get",
        description = "Fetch one memory by id, whole (archived ones too)."
    )]
    async fn get(&self, Parameters(params): Parameters<IdParams>) -> CallToolResult {
        answer(self.core.memories.get(&params.id).await)
    }

    /// `update`.
    #[tool(
        name = "update",
        description = "Change some fields of a memory (content, summary, type, importance, namespace, tags, \
archived); fields not given stay as they are. Returns the updated memory."
    )]
    async fn update(&self, Parameters(params): Parameters<UpdateParams>) -> CallToolResult {
        answer(self.core.memories.update(&params.id, params.fields).await)
    }

    /// `forget`.
    #[tool(
        name = "forget",
        description = "Archive a memory (hidden from recall and list, kept on disk; update archived=false \
restores it), or with hard=true delete it with its links."
    )]
    async fn forget(&self, Parameters(params): Parameters<ForgetParams>) -> CallToolResult {
        answer(self.core.memories.forget(params).await)
    }

    /// `link`.
    #[tool(
        name = "link",
        description = "Link one memory to another with a typed relation (relates_to, depends_on, supersedes, \
contradicts, derived_from, fixes, part_of). Recall follows links from its best hits."
    )]
    async fn link(&self, Parameters(params): Parameters<LinkMemoriesParams>) -> CallToolResult {
        let link = LinkParams {
            target: params.target,
            link_type: params.link_type,
        };
        answer(self.core.memories.link(&params.source, &link).await)
    }

    /// `list`.
    #[tool(
        name = "list",
        description = "List memories, most recently updated first (or by importance), a page at a time \
(limit, offset); long contents are cut (content_truncated: true)."
    )]
    async fn list(&self, Parameters(params): Parameters<ListParams>) -> CallToolResult {
        answer(self.core.memories.list(params).await)
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mnemosyne", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let call = ToolCallContext::new(self, request, context);
        let result = self.tool_router.call(call).await;
        let failed = match &result {
            Ok(CallToolResponse::Complete(result)) => result.is_error == Some(true),
            Ok(_) => false,
            Err(_) => true,
        };
        self.core.metrics.mcp_tool_call(failed);
        result
    }

    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        Ok(rmcp::model::ListToolsResult::with_all_items(
            self.tool_router.list_all(),
        ))
    }

    fn get_tool(&self, name: &str) -> Option<rmcp::model::Tool> {
        self.tool_router.get(name).cloned()
    }
}
