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

use crate::diagnostics_view;
use crate::docs::{DocActorParams, DocEditParams, DocListParams, DocNameParams, DocWriteParams};
use crate::error::ApiError;
use crate::mcp_project::McpProject;
use crate::params::{
    ContextParams, ForgetParams, IdParams, LinkMemoriesParams, LinkParams, ListParams,
    RecallParams, RememberParams, UpdateParams,
};
use crate::shared_core::Core;
use crate::work::{
    ClaimParams, CompleteParams, FailParams, HeartbeatParams, ReviewParams, SubmitParams,
    WorkListParams,
};

/// What the server tells an agent at initialisation.
pub const INSTRUCTIONS: &str = "Mnemosyne is your long-term memory. Before working on something, \
`recall` what you learned about it before; when you decide something, fix a bug or find a pattern, \
`remember` it (one idea per memory, with tags and an importance from 1 to 10); `link` it to the \
memories it fixes, replaces or depends on, and use `context` on a recall hit to read what is linked \
to it. Namespaces: global, \
project:NAME, session:PROJECT/ID. Results are bounded: recall and list cut long contents \
(content_truncated: true); `get` returns a memory whole.";

/// The MCP service over the shared server state. Cheap to clone.
#[derive(Clone)]
pub struct McpServer {
    core: Arc<Core>,
    tool_router: Arc<ToolRouter<Self>>,
    /// Where `remember` and `recall` go when the call names no namespace.
    project: Option<McpProject>,
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
    pub(crate) fn new(core: Arc<Core>, project: Option<McpProject>) -> Self {
        Self {
            core,
            tool_router: Arc::new(Self::tools()),
            project,
        }
    }

    /// `given`, else this session's project namespace. Outside a project
    /// (`global`) none: `remember` then stores into `global` and `recall`
    /// searches every namespace, as over HTTP.
    fn namespace_or_default(&self, given: Option<String>) -> Option<String> {
        given.or_else(|| {
            self.project
                .as_ref()
                .filter(|p| p.namespace != mnemosyne_core::Namespace::Global)
                .map(|p| p.namespace.to_string())
        })
    }

    /// Every tool this server offers: the sum of the tool groups.
    pub fn tools() -> ToolRouter<Self> {
        Self::memory_tools() + Self::work_tools() + Self::doc_tools() + Self::diagnostics_tools()
    }
}

#[tool_router(router = memory_tools, vis = "pub(crate)")]
impl McpServer {
    /// `remember`.
    #[tool(
        name = "remember",
        description = "Store a memory: a decision, a bug and its fix, a pattern, a fact worth keeping. \
Returns the stored memory with its id. Keep one idea per memory; add tags and an importance (1-10). \
Without a namespace it goes to the project the server runs in (its .mnemosyne.toml or git \
repository; global outside one)."
    )]
    async fn remember(&self, Parameters(mut params): Parameters<RememberParams>) -> CallToolResult {
        params.namespace = self.namespace_or_default(params.namespace);
        answer(self.core.memories.remember(params).await)
    }

    /// `recall`.
    #[tool(
        name = "recall",
        description = "Search memories by meaning and keywords (hybrid: BM25 + vectors + links), best first. \
At most recall_results_max hits (truncated: true says more matched); long contents are cut \
(content_truncated: true; use get for the whole memory). Without a namespace it searches this \
project's memories and global ones (outside a project: every namespace)."
    )]
    async fn recall(&self, Parameters(mut params): Parameters<RecallParams>) -> CallToolResult {
        params.namespace = self.namespace_or_default(params.namespace);
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

    /// `context`.
    #[tool(
        name = "context",
        description = "Fetch one memory (whole) with its linked neighbourhood: the memories linked to or from \
it, then theirs, up to `hops` hops (default and maximum context_hops_max, 2), the `fan_out` most important \
per memory, at most `limit` in all; each edge has its source, target, link_type and direction \
(outgoing/incoming) seen from the memory it was followed from. Use it after a recall or get hit when you \
need what is linked to it: the decision it depends on, the fix of a bug, what supersedes or contradicts \
it. truncated: true says more was within reach. Over-limit values are refused."
    )]
    async fn context(&self, Parameters(params): Parameters<ContextParams>) -> CallToolResult {
        answer(self.core.memories.context(params).await)
    }
}

/// Arguments of `work_get` and `work_cancel`.
#[derive(Clone, Debug, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkIdParams {
    /// The work item's id.
    pub id: String,
}

/// Arguments of `diagnostics` (none).
#[derive(Clone, Debug, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[tool_router(router = work_tools, vis = "pub(crate)")]
impl McpServer {
    /// `work_submit`.
    #[tool(
        name = "work_submit",
        description = "Add a work item to the shared queue: a description, optional phase (spec, plan, \
implement (default), review), priority (higher first), depends_on (ids that must be done first), \
requirements, suggested_tests, review (true: goes to review after implement). Refused with \
queue_full when work_items_max items are active."
    )]
    async fn work_submit(&self, Parameters(params): Parameters<SubmitParams>) -> CallToolResult {
        answer(self.core.work.submit(params).await)
    }

    /// `work_claim`.
    #[tool(
        name = "work_claim",
        description = "Claim the ready work item with the highest priority for your agent name; {\"item\": null} \
when none is ready. The claim lasts work_lease_s unless renewed with work_heartbeat; an expired claim \
returns to the queue."
    )]
    async fn work_claim(&self, Parameters(params): Parameters<ClaimParams>) -> CallToolResult {
        answer(self.core.work.claim(params).await)
    }

    /// `work_heartbeat`.
    #[tool(
        name = "work_heartbeat",
        description = "Renew the lease of a work item you claimed (id, agent)."
    )]
    async fn work_heartbeat(
        &self,
        Parameters(params): Parameters<HeartbeatParams>,
    ) -> CallToolResult {
        answer(self.core.work.heartbeat(params).await)
    }

    /// `work_complete`.
    #[tool(
        name = "work_complete",
        description = "Finish the phase of a work item you claimed: spec -> plan -> implement -> review (if \
review was asked) -> done. evidence: ids of memories you stored that show the work; met: indexes of \
requirements now met. Items that depend on it become ready when it is done."
    )]
    async fn work_complete(
        &self,
        Parameters(params): Parameters<CompleteParams>,
    ) -> CallToolResult {
        answer(self.core.work.complete(params).await)
    }

    /// `work_fail`.
    #[tool(
        name = "work_fail",
        description = "Give up on a work item, with the reason; items that depend on it fail too."
    )]
    async fn work_fail(&self, Parameters(params): Parameters<FailParams>) -> CallToolResult {
        answer(self.core.work.fail(params).await)
    }

    /// `work_review`.
    #[tool(
        name = "work_review",
        description = "Approve (done) or reject (back to implement, feedback required) a work item in review."
    )]
    async fn work_review(&self, Parameters(params): Parameters<ReviewParams>) -> CallToolResult {
        answer(self.core.work.review(params).await)
    }

    /// `work_get`.
    #[tool(
        name = "work_get",
        description = "Fetch one work item by id, in any state."
    )]
    async fn work_get(&self, Parameters(params): Parameters<WorkIdParams>) -> CallToolResult {
        answer(self.core.work.get(&params.id).await)
    }

    /// `work_list`.
    #[tool(
        name = "work_list",
        description = "List work items, newest first, optionally by state (pending, claimed, done, failed, \
cancelled) and phase; a page at a time (limit, offset)."
    )]
    async fn work_list(&self, Parameters(params): Parameters<WorkListParams>) -> CallToolResult {
        answer(self.core.work.list(params).await)
    }
}

#[tool_router(router = doc_tools, vis = "pub(crate)")]
impl McpServer {
    /// `doc_list`.
    #[tool(
        name = "doc_list",
        description = "List shared context documents (conventions, specs, plans) by name, with their metadata."
    )]
    async fn doc_list(&self, Parameters(params): Parameters<DocListParams>) -> CallToolResult {
        answer(self.core.docs.list(params).await)
    }

    /// `doc_read`.
    #[tool(
        name = "doc_read",
        description = "Read a context document: its text, epoch and heads. Pass epoch (and heads) back to \
doc_edit so your splices merge with what others wrote since."
    )]
    async fn doc_read(&self, Parameters(params): Parameters<DocNameParams>) -> CallToolResult {
        answer(self.core.docs.read(&params.name).await)
    }

    /// `doc_write`.
    #[tool(
        name = "doc_write",
        description = "Replace a context document's text (created when missing). The new text is applied as \
a diff, so concurrent edits by other agents survive. With epoch: refused (stale_epoch) if the document \
was compacted since you read it."
    )]
    async fn doc_write(&self, Parameters(params): Parameters<DocWriteParams>) -> CallToolResult {
        answer(self.core.docs.write(params).await)
    }

    /// `doc_edit`.
    #[tool(
        name = "doc_edit",
        description = "Edit a context document with splices (pos and delete in characters, insert text) \
against the epoch (and heads) you read; refused with stale_epoch if it was compacted since: read again."
    )]
    async fn doc_edit(&self, Parameters(params): Parameters<DocEditParams>) -> CallToolResult {
        answer(self.core.docs.edit(params).await)
    }

    /// `doc_undo`.
    #[tool(
        name = "doc_undo",
        description = "Undo your latest change to a context document (per agent, bounded depth)."
    )]
    async fn doc_undo(&self, Parameters(params): Parameters<DocActorParams>) -> CallToolResult {
        answer(self.core.docs.undo(params).await)
    }
}

#[tool_router(router = diagnostics_tools, vis = "pub(crate)")]
impl McpServer {
    /// `diagnostics`.
    #[tool(
        name = "diagnostics",
        description = "The server's resource figures (RSS, open fds, threads, memory limit) and every gauge \
with its limit (pool, work queue, caches), plus the monitor's active alerts, and the project this \
session remembers into when a call names no namespace (and why)."
    )]
    async fn diagnostics(&self, Parameters(_params): Parameters<NoParams>) -> CallToolResult {
        let mut view = diagnostics_view::diagnostics(&self.core);
        view.project.clone_from(&self.project);
        answer(Ok::<_, ApiError>(view))
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
