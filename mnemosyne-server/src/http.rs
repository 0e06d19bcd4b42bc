//! The HTTP API on axum: routes, the layers every route passes through
//! (counting, timeout, body limit, bearer token, concurrency limit), the
//! JSON error shape, and the accept loop that runs each connection as a
//! supervised task.
//!
//! Layers, outermost first: count and give every error the JSON shape →
//! Host (400, 421), Origin (403) and body media type (415), see [`access`] →
//! `http_request_timeout_ms` (503 `timeout`) → `request_body_bytes_max`
//! (413) → bearer token (401; not on `/health`) → `http_concurrency_max`.
//! Below the router, hyper bounds each connection's request head
//! (`http_header_bytes_max`, `http_headers_max`: 431) and the time to send
//! it (`http_header_read_timeout_ms`), and the accept loop answers 503 to a
//! connection past `http_connections_max`.

pub(crate) mod access;
pub(crate) mod bearer;
mod routes;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use mnemosyne_orchestration::CancellationToken;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tower::limit::ConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use bearer::BearerToken;
use routes::AppState;

use crate::error::ApiError;
use crate::shared_core::Core;

/// Pause after a failed `accept` (out of file descriptors, mostly) before
/// trying again, so that the loop does not spin.
pub const ACCEPT_ERROR_PAUSE_MS: u64 = 100;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, axum::Json(self.body())).into_response()
    }
}

/// The whole API with its layers.
pub(crate) fn router(
    core: Arc<Core>,
    token: Option<BearerToken>,
    policy: access::AccessPolicy,
    shutdown: CancellationToken,
) -> Router {
    let limits = &core.limits;
    let body_max = usize::try_from(limits.request_body_bytes_max).unwrap_or(usize::MAX);
    let timeout = Duration::from_millis(limits.http_request_timeout_ms);
    let concurrency = limits.http_concurrency_max as usize;
    let state = AppState {
        core: Arc::clone(&core),
        token,
        shutdown,
    };
    routes::protected()
        .route_layer(ConcurrencyLimitLayer::new(concurrency))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_token))
        .merge(routes::public().route_layer(ConcurrencyLimitLayer::new(concurrency)))
        .with_state(state.clone())
        .layer(RequestBodyLimitLayer::new(body_max))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            timeout,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(policy),
            access::guard,
        ))
        .layer(middleware::from_fn_with_state(state, count_and_shape))
}

async fn require_token(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if let Some(token) = &state.token
        && !token.accepts(request.headers().get(header::AUTHORIZATION))
    {
        let mut response = ApiError::new(
            401,
            "unauthorized",
            "missing or wrong bearer token (Authorization: Bearer <token>)",
        )
        .into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    next.run(request).await
}

/// Decrements the in-flight gauge however the request ends.
struct InFlight<'a>(&'a crate::metrics::Metrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.http_request_finished();
    }
}

/// Counts requests by status and turns the plain-text errors of the layers
/// and of axum (413, 404, 405, timeout) into the JSON error shape.
async fn count_and_shape(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let metrics = &state.core.metrics;
    metrics.http_request_started();
    let _in_flight = InFlight(metrics);
    let response = next.run(request).await;
    let status = response.status();
    metrics.http_response(status.as_u16());
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    let limits = &state.core.limits;
    let error = match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            413,
            "payload_too_large",
            format!(
                "request body is over the limit of {} bytes (request_body_bytes_max)",
                limits.request_body_bytes_max
            ),
        ),
        StatusCode::SERVICE_UNAVAILABLE => ApiError::new(
            503,
            "timeout",
            format!(
                "request took longer than {} ms (http_request_timeout_ms); retry later",
                limits.http_request_timeout_ms
            ),
        ),
        StatusCode::NOT_FOUND => ApiError::new(404, "not_found", "no such route"),
        StatusCode::METHOD_NOT_ALLOWED => ApiError::new(
            405,
            "method_not_allowed",
            "method not allowed on this route",
        ),
        other => ApiError::new(
            other.as_u16(),
            if other.is_client_error() {
                "bad_request"
            } else {
                "internal"
            },
            other.canonical_reason().unwrap_or("error").to_lowercase(),
        ),
    };
    error.into_response()
}

/// Keeps the open-connections gauge true however the connection task ends.
struct OpenConnection(Arc<Core>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.metrics.connection_closed();
    }
}

/// Accepts connections until `token` is cancelled; each one runs as a
/// supervised `http-connection` task, at most `http_connections_max` at once.
/// A connection past it is answered 503 `busy` and closed at once: a flood
/// of idle clients costs one accept each, and no memory that stays.
pub(crate) async fn accept_loop(
    core: Arc<Core>,
    listener: TcpListener,
    router: Router,
    token: CancellationToken,
) {
    let limits = &core.limits;
    let slots = Arc::new(Semaphore::new(limits.http_connections_max as usize));
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.http_header_read_timeout_ms))
        .max_buf_size(limits.http_header_bytes_max as usize)
        .max_header_size(limits.http_header_bytes_max as usize)
        .max_headers(limits.http_headers_max as usize);
    let refusal = refusal_response(limits.http_connections_max);
    loop {
        let stream = tokio::select! {
            () = token.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_ERROR_PAUSE_MS)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            refuse(&stream, &refusal);
            core.metrics.connection_refused();
            continue;
        };
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "cannot set TCP_NODELAY");
        }
        let Some(supervisor) = core.supervisor.upgrade() else {
            break;
        };
        core.metrics.connection_opened();
        let open = OpenConnection(Arc::clone(&core));
        let service = TowerToHyperService::new(router.clone());
        let http1 = http1.clone();
        let spawned = supervisor.spawn("http-connection", move |token| async move {
            let _permit = permit;
            let _open = open;
            let connection = http1.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = token.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                tracing::debug!(%error, "http connection ended with an error");
            }
        });
        if spawned.is_err() {
            // Shutting down: the refused closure dropped the stream.
            break;
        }
    }
    tracing::debug!("http accept loop stopped");
}

/// The whole answer to a connection past `http_connections_max`.
fn refusal_response(connections_max: u32) -> Vec<u8> {
    let body = serde_json::to_string(
        &ApiError::new(
            503,
            "busy",
            format!(
                "too many open connections (http_connections_max = {connections_max}); retry later"
            ),
        )
        .body(),
    )
    .unwrap_or_default();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\nretry-after: 1\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Writes what fits of the refusal without waiting (a fresh socket's send
/// buffer holds it whole), then drops the connection.
fn refuse(stream: &TcpStream, refusal: &[u8]) {
    if let Err(error) = stream.try_write(refusal) {
        tracing::debug!(%error, "cannot answer a refused connection");
    }
}
