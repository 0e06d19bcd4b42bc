//! Every route of the HTTP API (the router `serve http` serves, with all its
//! layers), driven in process on a real database. The input reads like an
//! HTTP request: `METHOD PATH` on the first line, header lines, a blank
//! line, then the body; `@mem`, `@item` and `@doc` name stored fixtures.
//!
//! Any request gets an answer in time; an error answer is the JSON error
//! shape; no input makes the server fail (a 500: storage, internal).
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, Request};
use http_body_util::BodyExt;
use libfuzzer_sys::fuzz_target;
use mnemosyne_server::Server;
use tower::ServiceExt;

/// Longer than `http_request_timeout_ms` (which answers 503 itself): past
/// this the router hangs.
const ANSWER_WAIT_MS: u64 = 60_000;

fn router() -> &'static Router {
    static ROUTER: OnceLock<(Server, Router)> = OnceLock::new();
    &ROUTER
        .get_or_init(|| {
            let _ = mnemosyne_fuzz::fixtures();
            let server = Server::new(mnemosyne_fuzz::store().clone());
            mnemosyne_fuzz::runtime()
                .block_on(server.open_work_queue())
                .expect("open the work queue");
            let router =
                server.http_router(mnemosyne_fuzz::http::BOUND.parse().expect("an address"));
            (server, router)
        })
        .1
}

/// The request the input describes, if it is one `http::Request` accepts.
fn request(data: &[u8]) -> Option<Request<Body>> {
    let (head, body) = match data.windows(2).position(|w| w == b"\n\n") {
        Some(at) => (&data[..at], &data[at + 2..]),
        None => (data, &[][..]),
    };
    let mut lines = head.split(|&b| b == b'\n');
    let first = std::str::from_utf8(lines.next()?).ok()?;
    let (method, path) = first.split_once(' ')?;
    let mut builder = Request::builder().method(method).uri(path);
    let mut named_host = false;
    for line in lines {
        let at = line.iter().position(|&b| b == b':')?;
        let name = HeaderName::from_bytes(&line[..at]).ok()?;
        named_host |= name == axum::http::header::HOST;
        let value = HeaderValue::from_bytes(line[at + 1..].trim_ascii()).ok()?;
        builder = builder.header(name, value);
    }
    // Inputs without a Host reach the routes as a local client would; those
    // with one exercise the Host check.
    if !named_host {
        builder = builder.header(axum::http::header::HOST, mnemosyne_fuzz::http::HOST);
    }
    builder.body(Body::from(body.to_vec())).ok()
}

fuzz_target!(|data: &[u8]| {
    mnemosyne_fuzz::abort_on_panic();
    let router = router().clone();
    let data = mnemosyne_fuzz::fixtures().substitute(data);
    let Some(request) = request(&data) else {
        return;
    };
    let described = format!("{} {}", request.method(), request.uri());
    mnemosyne_fuzz::runtime().block_on(async {
        let wait = Duration::from_millis(ANSWER_WAIT_MS);
        let response = tokio::time::timeout(wait, router.oneshot(request))
            .await
            .unwrap_or_else(|_| panic!("no answer to {described}"))
            .expect("the router is infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or("").to_owned())
            .unwrap_or_default();
        // An event stream never ends: its first bytes are enough.
        if content_type.starts_with("text/event-stream") {
            assert!(status.is_success(), "{described}: {status}");
            return;
        }
        let body = tokio::time::timeout(wait, response.into_body().collect())
            .await
            .unwrap_or_else(|_| panic!("the body of {described} never ends"))
            .expect("a body")
            .to_bytes();
        let text = String::from_utf8_lossy(&body);
        assert!(status.as_u16() != 500, "{described}: {status} {text}");
        if status.is_client_error() || status.is_server_error() {
            let json: serde_json::Value = serde_json::from_slice(&body)
                .unwrap_or_else(|e| panic!("{described}: {status}, not JSON ({e}): {text}"));
            assert!(
                json["error"]["code"].is_string() && json["error"]["message"].is_string(),
                "{described}: {status} {text}"
            );
        }
    });
});
