//! [`Server::http_router`]: the HTTP API driven in process, as the fuzz
//! target `http_request` drives it (`fuzz/`), on a real database.
//!
//! Needs a storage backend: the workspace's `cargo test` gets one through
//! mnemosyne-cli; alone, run with `--features sqlite` (or `libsql`).

mod common;

use axum::body::Body;
use axum::http::Request;
use mnemosyne_core::Limits;
use mnemosyne_server::Server;
use serde_json::Value;
use tower::ServiceExt;

use common::open_store;

async fn send(server: &Server, method: &str, path: &str, body: &str) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:7077")
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("a request");
    let response = server
        .http_router("127.0.0.1:7077".parse().expect("an address"))
        .oneshot(request)
        .await
        .expect("infallible");
    let status = response.status().as_u16();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a body");
    let json = serde_json::from_slice(&bytes).expect("a JSON answer");
    (status, json)
}

#[tokio::test]
async fn the_router_serves_every_layer_in_process() {
    let dir = tempfile::tempdir().expect("temp dir");
    let limits = Limits {
        request_body_bytes_max: 4_096,
        ..Limits::default()
    };
    let server = Server::new(open_store(&dir, limits).await);

    let (status, stored) = send(
        &server,
        "POST",
        "/v1/memories",
        r#"{"content":"in process"}"#,
    )
    .await;
    assert_eq!(status, 201, "{stored}");
    let id = stored["id"].as_str().expect("an id");
    let (status, read) = send(&server, "GET", &format!("/v1/memories/{id}"), "").await;
    assert_eq!(
        (status, read["content"].as_str()),
        (200, Some("in process"))
    );

    // The outer layers answer too, in the JSON error shape.
    let (status, error) = send(&server, "GET", "/no/such/route", "").await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let over = format!(r#"{{"content":"{}"}}"#, "x".repeat(4_096));
    let (status, error) = send(&server, "POST", "/v1/memories", &over).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (413, Some("payload_too_large"))
    );
    let _ = server.shutdown().await;
}
