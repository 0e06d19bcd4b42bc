//! The routes and [`AppState`], what their handlers get. Handlers parse,
//! call [`crate::ops::Memories`], and answer JSON. The work queue and
//! documents add their routes in [`protected`].

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mnemosyne_orchestration::CancellationToken;

use crate::docs::{DocActorParams, DocEditParams, DocListParams, DocWriteParams};
use crate::work::{
    ClaimParams, CompleteParams, FailParams, HeartbeatParams, ReviewParams, SubmitParams,
    WorkListParams,
};
use futures_util::Stream;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::bearer::BearerToken;
use crate::diagnostics_view::{self, DiagnosticsView};
use crate::error::ApiError;
use crate::events::Received;
use crate::ops::{ContextView, ForgetView, LinkView, ListView, MemoryView, RecallView};
use crate::params::{
    ContextParams, ForgetParams, LinkParams, ListParams, RecallParams, RememberParams, UpdateFields,
};
use crate::shared_core::Core;

/// What every handler gets.
#[derive(Clone, Debug)]
pub(crate) struct AppState {
    pub(crate) core: Arc<Core>,
    pub(crate) token: Option<BearerToken>,
    /// Cancelled when the server shuts down: SSE streams end on it.
    pub(crate) shutdown: CancellationToken,
}

/// Routes behind the bearer token (when one is set).
pub(super) fn protected() -> Router<AppState> {
    Router::new()
        .route("/v1/memories", post(remember).get(list))
        .route(
            "/v1/memories/{id}",
            get(get_memory).patch(update).delete(forget),
        )
        .route("/v1/memories/{id}/links", post(link))
        .route("/v1/memories/{id}/context", get(context))
        .route("/v1/recall", post(recall))
        .route("/v1/work/items", post(work_submit).get(work_list))
        .route("/v1/work/items/{id}", get(work_get))
        .route("/v1/work/items/{id}/heartbeat", post(work_heartbeat))
        .route("/v1/work/items/{id}/complete", post(work_complete))
        .route("/v1/work/items/{id}/fail", post(work_fail))
        .route("/v1/work/items/{id}/cancel", post(work_cancel))
        .route("/v1/work/items/{id}/review", post(work_review))
        .route("/v1/work/claim", post(work_claim))
        .route("/v1/work/stats", get(work_stats))
        .route("/v1/docs", get(doc_list))
        .route("/v1/docs/{name}", get(doc_read).put(doc_write))
        .route("/v1/docs/{name}/edit", post(doc_edit))
        .route("/v1/docs/{name}/undo", post(doc_undo))
        .route("/v1/diagnostics", get(diagnostics))
        .route("/v1/events", get(events))
        .route("/metrics", get(metrics))
}

/// Routes open to anyone who can reach the socket.
pub(super) fn public() -> Router<AppState> {
    Router::new().route("/health", get(health))
}

/// A JSON body: any syntax or shape error is a 400 `invalid_input`, a body
/// over `request_body_bytes_max` a 413.
pub(crate) struct JsonBody<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(
                        413,
                        "payload_too_large",
                        "request body is too large (request_body_bytes_max)",
                    )
                } else {
                    ApiError::invalid(format!("invalid input: {}", rejection.body_text()))
                }
            })?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// A JSON body as `T`; each error is one line saying what is wrong where.
/// Nothing is stored on any of them: handlers run only on a parsed body.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(error) = std::str::from_utf8(bytes) {
        return Err(ApiError::invalid(format!(
            "invalid input: the body is not valid UTF-8 (at byte {})",
            error.valid_up_to()
        )));
    }
    serde_json::from_slice(bytes).map_err(|error| {
        let at = byte_offset(bytes, error.line(), error.column());
        let rest = bytes.get(at..).unwrap_or_default();
        if error.is_syntax() && (rest.starts_with(b"NaN") || rest.starts_with(b"Infinity")) {
            ApiError::invalid(format!(
                "invalid input: NaN and Infinity are not JSON numbers (line {} column {})",
                error.line(),
                error.column()
            ))
        } else {
            ApiError::invalid(format!("invalid input: {error}"))
        }
    })
}

/// The byte offset of serde_json's 1-based `line` and `column`.
fn byte_offset(bytes: &[u8], line: usize, column: usize) -> usize {
    let line_start = if line <= 1 {
        0
    } else {
        bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .nth(line - 2)
            .map_or(bytes.len(), |(i, _)| i + 1)
    };
    line_start + column.saturating_sub(1)
}

type Answer<T> = Result<axum::Json<T>, ApiError>;

async fn remember(
    State(state): State<AppState>,
    JsonBody(params): JsonBody<RememberParams>,
) -> Result<(StatusCode, axum::Json<MemoryView>), ApiError> {
    let memory = state.core.memories.remember(params).await?;
    Ok((StatusCode::CREATED, axum::Json(memory)))
}

async fn get_memory(State(state): State<AppState>, Path(id): Path<String>) -> Answer<MemoryView> {
    Ok(axum::Json(state.core.memories.get(&id).await?))
}

async fn update(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(fields): JsonBody<UpdateFields>,
) -> Answer<MemoryView> {
    Ok(axum::Json(state.core.memories.update(&id, fields).await?))
}

/// Query of `DELETE /v1/memories/{id}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ForgetQuery {
    #[serde(default)]
    hard: bool,
}

fn query<T>(query: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    query
        .map(|Query(q)| q)
        .map_err(|rejection| ApiError::invalid(format!("invalid input: {}", rejection.body_text())))
}

async fn forget(
    State(state): State<AppState>,
    Path(id): Path<String>,
    forget_query: Result<Query<ForgetQuery>, QueryRejection>,
) -> Answer<ForgetView> {
    let hard = query(forget_query)?.hard;
    Ok(axum::Json(
        state
            .core
            .memories
            .forget(ForgetParams { id, hard })
            .await?,
    ))
}

async fn link(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(params): JsonBody<LinkParams>,
) -> Answer<LinkView> {
    Ok(axum::Json(state.core.memories.link(&id, &params).await?))
}

/// Query of `GET /v1/memories`: `tag` is comma-separated.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQueryString {
    namespace: Option<String>,
    tag: Option<String>,
    limit: Option<u32>,
    offset: Option<u64>,
    sort: Option<String>,
    #[serde(default)]
    include_archived: bool,
    min_importance: Option<u8>,
}

async fn list(
    State(state): State<AppState>,
    list_query: Result<Query<ListQueryString>, QueryRejection>,
) -> Answer<ListView> {
    let q = query(list_query)?;
    let params = ListParams {
        namespace: q.namespace,
        tags: q
            .tag
            .map(|t| t.split(',').map(str::to_owned).collect())
            .unwrap_or_default(),
        limit: q.limit,
        offset: q.offset,
        sort: q.sort,
        include_archived: q.include_archived,
        min_importance: q.min_importance,
    };
    Ok(axum::Json(state.core.memories.list(params).await?))
}

/// Query of `GET /v1/memories/{id}/context`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContextQueryString {
    hops: Option<u32>,
    fan_out: Option<u32>,
    limit: Option<u32>,
    #[serde(default)]
    include_archived: bool,
}

async fn context(
    State(state): State<AppState>,
    Path(id): Path<String>,
    context_query: Result<Query<ContextQueryString>, QueryRejection>,
) -> Answer<ContextView> {
    let q = query(context_query)?;
    let params = ContextParams {
        id,
        hops: q.hops,
        fan_out: q.fan_out,
        limit: q.limit,
        include_archived: q.include_archived,
    };
    Ok(axum::Json(state.core.memories.context(params).await?))
}

async fn recall(
    State(state): State<AppState>,
    JsonBody(params): JsonBody<RecallParams>,
) -> Answer<RecallView> {
    Ok(axum::Json(state.core.memories.recall(params).await?))
}

/// Server-Sent Events: every event of the bus from now on, as `event:
/// <name>` with the event as JSON data; `lagged` with `{"missed": n}` when
/// this client fell more than `events_capacity` behind; a keep-alive comment
/// every `sse_keep_alive_s` on an idle stream. Ends on server shutdown.
async fn events(
    State(state): State<AppState>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let subscriber = state.core.events.subscribe();
    let keep_alive = Duration::from_secs(state.core.limits.sse_keep_alive_s);
    let stream = futures_util::stream::unfold(
        (subscriber, state.shutdown),
        |(mut subscriber, shutdown)| async move {
            let received = tokio::select! {
                () = shutdown.cancelled() => return None,
                received = subscriber.recv() => received?,
            };
            let event = match received {
                Received::Event(event) => SseEvent::default()
                    .event(event.name())
                    .data(serde_json::to_string(&event).unwrap_or_default()),
                Received::Lagged(missed) => SseEvent::default()
                    .event("lagged")
                    .data(format!("{{\"missed\":{missed}}}")),
            };
            Some((Ok(event), (subscriber, shutdown)))
        },
    );
    Sse::new(stream).keep_alive(KeepAlive::new().interval(keep_alive))
}

async fn health(State(state): State<AppState>) -> Response {
    let supervisor = state.core.supervisor.upgrade();
    axum::Json(serde_json::json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
        "backend": state.core.memories.store().storage().backend_name(),
        "tasks_alive": supervisor.map_or(0, |s| s.alive()),
    }))
    .into_response()
}

async fn metrics(State(state): State<AppState>) -> Response {
    let core = &state.core;
    let text = crate::metrics::render(
        &core.metrics,
        &core.events,
        &core.tracker,
        core.supervisor.upgrade().as_deref(),
    );
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

/// An optional JSON body: empty means the default.
async fn optional_body<T: DeserializeOwned + Default>(bytes: Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    parse_json(&bytes)
}

async fn work_submit(
    State(state): State<AppState>,
    JsonBody(params): JsonBody<SubmitParams>,
) -> Result<(StatusCode, axum::Json<mnemosyne_core::WorkItem>), ApiError> {
    let item = state.core.work.submit(params).await?;
    Ok((StatusCode::CREATED, axum::Json(item)))
}

async fn work_list(
    State(state): State<AppState>,
    list_query: Result<Query<WorkListParams>, QueryRejection>,
) -> Answer<crate::work::WorkListView> {
    Ok(axum::Json(state.core.work.list(query(list_query)?).await?))
}

async fn work_get(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<mnemosyne_core::WorkItem> {
    Ok(axum::Json(state.core.work.get(&id).await?))
}

/// Body of the item actions that only name the agent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentBody {
    #[serde(default)]
    agent: Option<String>,
}

async fn work_heartbeat(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<mnemosyne_core::WorkItem> {
    let AgentBody { agent } = optional_body(body).await?;
    let params = HeartbeatParams { id, agent };
    Ok(axum::Json(state.core.work.heartbeat(params).await?))
}

/// Body of `POST /v1/work/items/{id}/complete`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CompleteBody {
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    evidence: Vec<String>,
    #[serde(default)]
    met: Vec<usize>,
}

async fn work_complete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer<mnemosyne_core::WorkItem> {
    let CompleteBody {
        agent,
        evidence,
        met,
    } = optional_body(body).await?;
    let params = CompleteParams {
        id,
        agent,
        evidence,
        met,
    };
    Ok(axum::Json(state.core.work.complete(params).await?))
}

async fn work_fail(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut params): JsonBody<FailParams>,
) -> Answer<mnemosyne_core::WorkItem> {
    params.id = id;
    Ok(axum::Json(state.core.work.fail(params).await?))
}

async fn work_cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Answer<mnemosyne_core::WorkItem> {
    Ok(axum::Json(state.core.work.cancel(&id).await?))
}

async fn work_review(
    State(state): State<AppState>,
    Path(id): Path<String>,
    JsonBody(mut params): JsonBody<ReviewParams>,
) -> Answer<mnemosyne_core::WorkItem> {
    params.id = id;
    Ok(axum::Json(state.core.work.review(params).await?))
}

async fn work_claim(
    State(state): State<AppState>,
    JsonBody(params): JsonBody<ClaimParams>,
) -> Answer<crate::work::ClaimView> {
    Ok(axum::Json(state.core.work.claim(params).await?))
}

async fn work_stats(State(state): State<AppState>) -> Answer<mnemosyne_orchestration::WorkStats> {
    Ok(axum::Json(state.core.work.stats().await?))
}

async fn doc_list(
    State(state): State<AppState>,
    list_query: Result<Query<DocListParams>, QueryRejection>,
) -> Answer<crate::docs::DocListView> {
    Ok(axum::Json(state.core.docs.list(query(list_query)?).await?))
}

async fn doc_read(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> Answer<mnemosyne_ics::DocumentView> {
    Ok(axum::Json(state.core.docs.read(&name).await?))
}

async fn doc_write(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut params): JsonBody<DocWriteParams>,
) -> Answer<mnemosyne_ics::EditOutcome> {
    params.name = name;
    Ok(axum::Json(state.core.docs.write(params).await?))
}

async fn doc_edit(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut params): JsonBody<DocEditParams>,
) -> Answer<mnemosyne_ics::EditOutcome> {
    params.name = name;
    Ok(axum::Json(state.core.docs.edit(params).await?))
}

async fn doc_undo(
    State(state): State<AppState>,
    Path(name): Path<String>,
    JsonBody(mut params): JsonBody<DocActorParams>,
) -> Answer<mnemosyne_ics::EditOutcome> {
    params.name = name;
    Ok(axum::Json(state.core.docs.undo(params).await?))
}

async fn diagnostics(State(state): State<AppState>) -> Answer<DiagnosticsView> {
    Ok(axum::Json(diagnostics_view::diagnostics(&state.core)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(bytes: &[u8]) -> String {
        parse_json::<serde_json::Value>(bytes).unwrap_err().message
    }

    #[test]
    fn bad_json_bodies_get_one_clear_line() {
        assert_eq!(
            message(b"{\"content\": \"caf\xe9\"}"),
            "invalid input: the body is not valid UTF-8 (at byte 16)"
        );
        for (body, at) in [
            (&b"{\"importance\": NaN}"[..], "line 1 column 16"),
            (b"{\"importance\": Infinity}", "line 1 column 16"),
            (b"{\"importance\": -Infinity}", "line 1 column 17"),
            (b"{\n  \"importance\":\n NaN}", "line 3 column 2"),
        ] {
            assert_eq!(
                message(body),
                format!("invalid input: NaN and Infinity are not JSON numbers ({at})")
            );
        }
        assert!(message(b"{\"x\": 1e999}").contains("number out of range"));
        assert!(message(b"{\"x\": nan}").starts_with("invalid input: expected"));
        assert_eq!(
            parse_json::<serde_json::Value>(b"{\"x\": 1.5}").unwrap(),
            serde_json::json!({"x": 1.5})
        );
    }
}
