//! The `http` embedder: any OpenAI-compatible `POST /v1/embeddings`
//! (Ollama, llama.cpp server, vLLM, OpenAI).
//!
//! Every bound is explicit: the request timeout (`embedder_timeout_ms`, for
//! connect, send and the whole answer), the batch size
//! (`embedding_batch_max`), the retries (`embedder_retries_max`, so at most
//! that + 1 attempts per batch) and their exponential backoff
//! (`embedder_backoff_ms`, doubled each time, each wait capped at
//! [`BACKOFF_WAIT_MS_MAX`]), the size of an answer (from the batch size and
//! the dims), idle connections kept ([`IDLE_CONNECTIONS_MAX`] for
//! [`IDLE_CONNECTION_TIMEOUT_S`]) and redirects (none are followed).
//!
//! Retried: connection failures, timeouts, HTTP 429 and 5xx. Not retried:
//! any other status, and answers that are wrong (bad JSON, wrong count,
//! wrong dims), since asking again gives the same answer. Every error is one
//! line naming the endpoint.
//!
//! Loopback endpoints (`127.0.0.0/8`, `::1`, `localhost`) never go through a
//! proxy; others follow the `HTTPS_PROXY` / `HTTP_PROXY` / `NO_PROXY`
//! environment variables.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use mnemosyne_core::{Embedder, Error, Limits, Result};
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};

use crate::shared::{l2_normalise, plural};
use mnemosyne_core::EMBEDDING_DIMS_MAX;

/// Longest single wait between two attempts, in milliseconds, however many
/// times the backoff has doubled.
pub const BACKOFF_WAIT_MS_MAX: u64 = 60_000;

/// Idle connections kept open to the endpoint between calls.
pub const IDLE_CONNECTIONS_MAX: usize = 2;

/// Seconds an idle connection is kept before it is closed.
pub const IDLE_CONNECTION_TIMEOUT_S: u64 = 90;

/// Characters of an error answer's body quoted in the error message.
pub const ERROR_BODY_CHARS_MAX: usize = 200;

/// Bytes of an error answer read (to quote its start).
const ERROR_BODY_BYTES_MAX: usize = 4 * 1024;

/// Bytes of JSON allowed per returned float (`-0.012345678901234567,` is 22).
const RESPONSE_BYTES_PER_FLOAT_MAX: usize = 32;

/// Bytes of JSON allowed per returned item besides its floats.
const RESPONSE_BYTES_PER_ITEM_MAX: usize = 256;

/// Bytes of JSON allowed per answer besides its items (`usage`, `model`...).
const RESPONSE_BYTES_BASE: usize = 64 * 1024;

/// Everything an [`HttpEmbedder`] is built from; [`HttpEmbedderOptions::new`]
/// takes the bounds from [`Limits`].
#[derive(Clone)]
pub struct HttpEmbedderOptions {
    /// Scheme, host, port and optional path prefix of the server;
    /// `/v1/embeddings` is appended (only `/embeddings` if it ends in `/v1`).
    pub base_url: String,
    /// Model name sent in each request.
    pub model: String,
    /// Dimensions every returned vector must have.
    pub dims: usize,
    /// Sent as `Authorization: Bearer <key>` when set.
    pub api_key: Option<String>,
    /// Time one request may take, connect to last byte, in milliseconds.
    pub timeout_ms: u64,
    /// Texts sent in one request; larger inputs are split.
    pub batch_max: u32,
    /// Retries of a failed request (so at most this + 1 attempts).
    pub retries_max: u32,
    /// Wait before the first retry, doubled for each next one, in milliseconds.
    pub backoff_ms: u64,
}

impl HttpEmbedderOptions {
    /// Options for `model` of `dims` dimensions at `base_url`, with no API
    /// key, bounded by `embedder_timeout_ms`, `embedding_batch_max`,
    /// `embedder_retries_max` and `embedder_backoff_ms`.
    pub fn new(base_url: &str, model: &str, dims: usize, limits: &Limits) -> Self {
        Self {
            base_url: base_url.to_owned(),
            model: model.to_owned(),
            dims,
            api_key: None,
            timeout_ms: limits.embedder_timeout_ms,
            batch_max: limits.embedding_batch_max,
            retries_max: limits.embedder_retries_max,
            backoff_ms: limits.embedder_backoff_ms,
        }
    }
}

impl fmt::Debug for HttpEmbedderOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEmbedderOptions")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("dims", &self.dims)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("batch_max", &self.batch_max)
            .field("retries_max", &self.retries_max)
            .field("backoff_ms", &self.backoff_ms)
            .finish()
    }
}

/// An [`Embedder`] calling an OpenAI-compatible `/v1/embeddings` endpoint
/// (see the [module docs](self) for its bounds and retries).
pub struct HttpEmbedder {
    endpoint: Url,
    model: String,
    dims: usize,
    model_id: String,
    api_key: Option<HeaderValue>,
    client: reqwest::Client,
    timeout_ms: u64,
    batch_max: usize,
    retries_max: u32,
    backoff_ms: u64,
    response_bytes_max: usize,
}

impl fmt::Debug for HttpEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEmbedder")
            .field("endpoint", &self.endpoint.as_str())
            .field("model_id", &self.model_id)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("timeout_ms", &self.timeout_ms)
            .field("batch_max", &self.batch_max)
            .field("retries_max", &self.retries_max)
            .field("backoff_ms", &self.backoff_ms)
            .finish_non_exhaustive()
    }
}

/// The full endpoint URL for `base_url`: `{base_url}/v1/embeddings`, or
/// `{base_url}/embeddings` when it already ends in `/v1`.
pub(super) fn endpoint_url(base_url: &str) -> Result<Url> {
    let trimmed = base_url.trim().trim_end_matches('/');
    let full = if trimmed.ends_with("/v1") {
        format!("{trimmed}/embeddings")
    } else {
        format!("{trimmed}/v1/embeddings")
    };
    let url = Url::parse(&full)
        .map_err(|e| Error::invalid(format!("embedder base_url {base_url:?} is not a url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(Error::invalid(format!(
            "embedder base_url {base_url:?} must be an http:// or https:// url with a host"
        )));
    }
    Ok(url)
}

fn is_loopback(url: &Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => bare.eq_ignore_ascii_case("localhost"),
    }
}

/// Why one attempt failed.
enum Failure {
    /// The request or the answer took longer than the timeout.
    Timeout,
    /// No answer: connection refused, reset, DNS failure...
    Transport(String),
    /// The server answered with a status that is not 2xx.
    Status { status: StatusCode, body: String },
    /// The answer was larger than the limit.
    TooLarge,
}

impl Failure {
    fn is_retryable(&self) -> bool {
        match self {
            Self::Timeout | Self::Transport(_) => true,
            Self::Status { status, .. } => {
                *status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
            }
            Self::TooLarge => false,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("timed out"),
            Self::Transport(cause) => f.write_str(cause),
            Self::Status { status, .. } => write!(f, "HTTP {}", status.as_u16()),
            Self::TooLarge => f.write_str("answer too large"),
        }
    }
}

#[derive(Serialize)]
struct EmbeddingsRequest<'a> {
    model: &'a str,
    input: &'a [&'a str],
}

#[derive(Deserialize)]
struct EmbeddingsResponse {
    data: Vec<EmbeddingItem>,
}

#[derive(Deserialize)]
struct EmbeddingItem {
    embedding: Vec<f32>,
    #[serde(default)]
    index: Option<usize>,
}

impl HttpEmbedder {
    /// An embedder for `options`; checks the URL, dims and bounds, and sends
    /// nothing yet.
    pub fn new(options: HttpEmbedderOptions) -> Result<Self> {
        let endpoint = endpoint_url(&options.base_url)?;
        if options.model.trim().is_empty() {
            return Err(Error::invalid("embedder model must not be empty"));
        }
        if options.dims == 0 || options.dims > EMBEDDING_DIMS_MAX {
            return Err(Error::invalid(format!(
                "embedder dims {} out of range: must be 1 to {EMBEDDING_DIMS_MAX}",
                options.dims
            )));
        }
        if options.timeout_ms == 0 {
            return Err(Error::invalid("embedder_timeout_ms must be at least 1"));
        }
        if options.batch_max == 0 {
            return Err(Error::invalid("embedding_batch_max must be at least 1"));
        }
        let api_key = match &options.api_key {
            Some(key) => {
                let mut value =
                    HeaderValue::from_str(&format!("Bearer {}", key.trim())).map_err(|_| {
                        Error::invalid("embedder api key holds characters not allowed in a header")
                    })?;
                value.set_sensitive(true);
                Some(value)
            }
            None => None,
        };

        let timeout = Duration::from_millis(options.timeout_ms);
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(IDLE_CONNECTION_TIMEOUT_S))
            .pool_max_idle_per_host(IDLE_CONNECTIONS_MAX)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("mnemosyne/", env!("CARGO_PKG_VERSION")));
        if is_loopback(&endpoint) {
            builder = builder.no_proxy();
        }
        let client = builder.build().map_err(|e| {
            Error::Embedding(format!(
                "cannot set up the http client for embedding endpoint {endpoint}: {}",
                root_cause(&e)
            ))
        })?;

        let batch_max = usize::try_from(options.batch_max).unwrap_or(usize::MAX);
        let response_bytes_max = RESPONSE_BYTES_BASE.saturating_add(
            batch_max.saturating_mul(
                options
                    .dims
                    .saturating_mul(RESPONSE_BYTES_PER_FLOAT_MAX)
                    .saturating_add(RESPONSE_BYTES_PER_ITEM_MAX),
            ),
        );
        Ok(Self {
            model_id: format!("http:{}@{}", options.model, options.dims),
            endpoint,
            model: options.model,
            dims: options.dims,
            api_key,
            client,
            timeout_ms: options.timeout_ms,
            batch_max,
            retries_max: options.retries_max,
            backoff_ms: options.backoff_ms,
            response_bytes_max,
        })
    }

    /// The URL requests are sent to.
    pub fn endpoint(&self) -> &str {
        self.endpoint.as_str()
    }

    /// Embeds one batch (at most `batch_max` texts), with retries.
    async fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let body = serde_json::to_vec(&EmbeddingsRequest {
            model: &self.model,
            input: texts,
        })
        .map_err(|e| self.error(format_args!("request could not be encoded: {e}")))?;
        let attempts_max = self.retries_max.saturating_add(1);
        let mut attempt: u32 = 1;
        loop {
            let failure = match self.attempt(&body).await {
                Ok(answer) => return self.parse(&answer, texts.len()),
                Err(failure) => failure,
            };
            if !failure.is_retryable() || attempt >= attempts_max {
                return Err(self.give_up(failure, attempt));
            }
            let wait_ms = backoff_wait_ms(self.backoff_ms, attempt);
            tracing::warn!(
                endpoint = %self.endpoint,
                attempt,
                attempts_max,
                wait_ms,
                "embedding request failed ({failure}); retrying"
            );
            tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            attempt += 1;
        }
    }

    /// One request; the body of a 2xx answer, read up to the size limit.
    async fn attempt(&self, body: &[u8]) -> std::result::Result<Vec<u8>, Failure> {
        let mut request = self
            .client
            .post(self.endpoint.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(body.to_vec());
        if let Some(key) = &self.api_key {
            request = request.header(AUTHORIZATION, key.clone());
        }
        let response = request.send().await.map_err(transport_failure)?;
        let status = response.status();
        if !status.is_success() {
            let body = read_capped(response, ERROR_BODY_BYTES_MAX).await.0;
            return Err(Failure::Status {
                status,
                body: quote_body(&body),
            });
        }
        if response
            .content_length()
            .is_some_and(|len| len > self.response_bytes_max as u64)
        {
            return Err(Failure::TooLarge);
        }
        match read_capped(response, self.response_bytes_max).await {
            (_, Some(error)) => Err(transport_failure(error)),
            (bytes, None) if bytes.len() > self.response_bytes_max => Err(Failure::TooLarge),
            (bytes, None) => Ok(bytes),
        }
    }

    /// The vectors of a 2xx answer for `expected` texts, in input order,
    /// checked and L2-normalised.
    fn parse(&self, answer: &[u8], expected: usize) -> Result<Vec<Vec<f32>>> {
        let response: EmbeddingsResponse = serde_json::from_slice(answer).map_err(|e| {
            self.error(format_args!(
                "returned an answer that is not an embeddings response: {}",
                one_line(&e.to_string())
            ))
        })?;
        if response.data.len() != expected {
            return Err(self.error(format_args!(
                "returned {} {} for {expected} {}",
                response.data.len(),
                plural(response.data.len(), "vector", "vectors"),
                plural(expected, "text", "texts"),
            )));
        }
        let mut slots: Vec<Option<Vec<f32>>> = vec![None; expected];
        for (position, item) in response.data.into_iter().enumerate() {
            let index = item.index.unwrap_or(position);
            let Some(slot) = slots.get_mut(index) else {
                return Err(self.error(format_args!(
                    "returned index {index} for {expected} {}",
                    plural(expected, "text", "texts")
                )));
            };
            if slot.is_some() {
                return Err(self.error(format_args!("returned index {index} twice")));
            }
            let mut vector = item.embedding;
            if vector.len() != self.dims {
                return Err(self.error(format_args!(
                    "returned a vector of {} dimensions, expected {}",
                    vector.len(),
                    self.dims
                )));
            }
            if l2_normalise(&mut vector).is_none() {
                return Err(self.error(format_args!(
                    "returned a vector that cannot be normalised (all zero or not finite)"
                )));
            }
            *slot = Some(vector);
        }
        // Every slot is filled: `expected` distinct indices below `expected`.
        Ok(slots.into_iter().flatten().collect())
    }

    /// The error after the last attempt.
    fn give_up(&self, failure: Failure, attempts: u32) -> Error {
        let tries = format!(
            "{attempts} {}",
            plural(attempts as usize, "attempt", "attempts")
        );
        match failure {
            Failure::Timeout => self.error(format_args!(
                "timed out after {tries} of {} ms each",
                self.timeout_ms
            )),
            Failure::Transport(cause) => {
                self.error(format_args!("unreachable after {tries}: {cause}"))
            }
            Failure::Status { status, body } if attempts > 1 => self.error(format_args!(
                "returned HTTP {} after {tries}: {body}",
                status.as_u16()
            )),
            Failure::Status { status, body } => {
                self.error(format_args!("returned HTTP {}: {body}", status.as_u16()))
            }
            Failure::TooLarge => self.error(format_args!(
                "returned an answer over {} bytes",
                self.response_bytes_max
            )),
        }
    }

    fn error(&self, what: fmt::Arguments<'_>) -> Error {
        Error::Embedding(format!("embedding endpoint {} {what}", self.endpoint))
    }
}

#[async_trait]
impl Embedder for HttpEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn dims(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        let mut vectors = Vec::with_capacity(texts.len());
        for batch in texts.chunks(self.batch_max) {
            vectors.extend(self.embed_batch(batch).await?);
        }
        debug_assert_eq!(vectors.len(), texts.len());
        Ok(vectors)
    }
}

/// Wait before attempt `attempt + 1`: `backoff_ms * 2^(attempt - 1)`, capped.
fn backoff_wait_ms(backoff_ms: u64, attempt: u32) -> u64 {
    let factor = 1u64
        .checked_shl(attempt.saturating_sub(1))
        .unwrap_or(u64::MAX);
    backoff_ms.saturating_mul(factor).min(BACKOFF_WAIT_MS_MAX)
}

/// Reads at most `cap + 1` bytes of the body (one more than allowed, so the
/// caller can tell "too large"); stops at the first read error and returns it.
async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut bytes = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = cap.saturating_add(1).saturating_sub(bytes.len());
                bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if bytes.len() > cap {
                    return (bytes, None);
                }
            }
            Ok(None) => return (bytes, None),
            Err(error) => return (bytes, Some(error)),
        }
    }
}

fn transport_failure(error: reqwest::Error) -> Failure {
    if error.is_timeout() {
        Failure::Timeout
    } else {
        Failure::Transport(root_cause(&error))
    }
}

/// The innermost cause of `error`, lower case, without `(os error N)`:
/// `connection refused`.
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut cause: &(dyn StdError + 'static) = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    let text = cause.to_string();
    let text = match text.find(" (os error") {
        Some(at) => &text[..at],
        None => &text,
    };
    one_line(text).to_lowercase()
}

/// The start of an error body, on one line.
fn quote_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let quoted: String = one_line(&text).chars().take(ERROR_BODY_CHARS_MAX).collect();
    if quoted.is_empty() {
        "(empty body)".to_owned()
    } else {
        quoted
    }
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_appends_the_api_path_once() {
        let url = |base: &str| endpoint_url(base).unwrap().to_string();
        assert_eq!(
            url("http://127.0.0.1:11434"),
            "http://127.0.0.1:11434/v1/embeddings"
        );
        assert_eq!(
            url("http://127.0.0.1:11434/"),
            "http://127.0.0.1:11434/v1/embeddings"
        );
        assert_eq!(
            url("https://api.openai.com/v1"),
            "https://api.openai.com/v1/embeddings"
        );
        assert_eq!(
            url("http://host:8080/proxy/"),
            "http://host:8080/proxy/v1/embeddings"
        );
        assert!(endpoint_url("ftp://host").is_err());
        assert!(endpoint_url("localhost:11434").is_err());
        assert!(endpoint_url("").is_err());
    }

    #[test]
    fn loopback_hosts_are_recognised() {
        let loopback = |base: &str| is_loopback(&endpoint_url(base).unwrap());
        assert!(loopback("http://127.0.0.1:9"));
        assert!(loopback("http://127.8.0.1:9"));
        assert!(loopback("http://[::1]:9"));
        assert!(loopback("http://LOCALHOST:9"));
        assert!(!loopback("https://api.openai.com"));
        assert!(!loopback("http://10.0.0.1"));
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        assert_eq!(backoff_wait_ms(200, 1), 200);
        assert_eq!(backoff_wait_ms(200, 2), 400);
        assert_eq!(backoff_wait_ms(200, 3), 800);
        assert_eq!(backoff_wait_ms(200, 40), BACKOFF_WAIT_MS_MAX);
        assert_eq!(backoff_wait_ms(200, 200), BACKOFF_WAIT_MS_MAX);
        assert_eq!(backoff_wait_ms(0, 5), 0);
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let status = |code: u16| Failure::Status {
            status: StatusCode::from_u16(code).unwrap(),
            body: String::new(),
        };
        assert!(Failure::Timeout.is_retryable());
        assert!(Failure::Transport("connection refused".into()).is_retryable());
        assert!(status(429).is_retryable());
        assert!(status(500).is_retryable());
        assert!(status(503).is_retryable());
        assert!(!status(400).is_retryable());
        assert!(!status(401).is_retryable());
        assert!(!status(404).is_retryable());
        assert!(!status(301).is_retryable());
        assert!(!Failure::TooLarge.is_retryable());
    }

    #[test]
    fn error_bodies_are_quoted_on_one_line_and_short() {
        assert_eq!(
            quote_body(b"{\"error\":\n  \"bad\"}"),
            "{\"error\": \"bad\"}"
        );
        assert_eq!(quote_body(b""), "(empty body)");
        assert_eq!(quote_body("é".repeat(500).as_bytes()).chars().count(), 200);
    }

    fn embedder(dims: usize) -> HttpEmbedder {
        let mut options =
            HttpEmbedderOptions::new("http://127.0.0.1:9", "m", dims, &Limits::default());
        options.api_key = Some("sk-secret".into());
        HttpEmbedder::new(options).unwrap()
    }

    #[test]
    fn debug_never_shows_the_api_key() {
        let e = embedder(3);
        let text = format!("{e:?}");
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(text.contains("redacted"), "{text}");
        let mut options = HttpEmbedderOptions::new("http://x", "m", 3, &Limits::default());
        options.api_key = Some("sk-secret".into());
        assert!(!format!("{options:?}").contains("sk-secret"));
    }

    #[test]
    fn model_id_names_model_and_dims() {
        assert_eq!(embedder(3).model_id(), "http:m@3");
        assert_eq!(embedder(3).dims(), 3);
    }

    #[test]
    fn answers_are_sorted_by_index_and_normalised() {
        let e = embedder(2);
        let answer = br#"{"object":"list","data":[
            {"object":"embedding","embedding":[0.0,2.0],"index":1},
            {"object":"embedding","embedding":[3.0,4.0],"index":0}],
            "model":"m","usage":{"prompt_tokens":2,"total_tokens":2}}"#;
        let vectors = e.parse(answer, 2).unwrap();
        assert_eq!(vectors, vec![vec![0.6, 0.8], vec![0.0, 1.0]]);
        // No index: input order.
        let vectors = e
            .parse(br#"{"data":[{"embedding":[1,0]},{"embedding":[0,1]}]}"#, 2)
            .unwrap();
        assert_eq!(vectors, vec![vec![1.0, 0.0], vec![0.0, 1.0]]);
    }

    #[test]
    fn wrong_answers_are_one_line_errors_naming_the_endpoint() {
        let e = embedder(2);
        let err = |answer: &str, n: usize| e.parse(answer.as_bytes(), n).unwrap_err().to_string();
        let prefix = "embedding error: embedding endpoint http://127.0.0.1:9/v1/embeddings ";
        assert_eq!(
            err(r#"{"data":[{"embedding":[1,0],"index":0}]}"#, 2),
            format!("{prefix}returned 1 vector for 2 texts")
        );
        assert_eq!(
            err(r#"{"data":[{"embedding":[1,0,0],"index":0}]}"#, 1),
            format!("{prefix}returned a vector of 3 dimensions, expected 2")
        );
        assert_eq!(
            err(r#"{"data":[{"embedding":[1,0],"index":5}]}"#, 1),
            format!("{prefix}returned index 5 for 1 text")
        );
        assert_eq!(
            err(
                r#"{"data":[{"embedding":[1,0],"index":0},{"embedding":[1,0],"index":0}]}"#,
                2
            ),
            format!("{prefix}returned index 0 twice")
        );
        assert!(err(r#"{"data":[{"embedding":[0,0]}]}"#, 1).contains("cannot be normalised"));
        let text = err("<html>\n<body>oops</body>", 1);
        assert!(
            text.starts_with(&format!("{prefix}returned an answer that is not")),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn bounds_of_zero_are_refused() {
        let limits = Limits::default();
        let mut options = HttpEmbedderOptions::new("http://127.0.0.1:9", "m", 3, &limits);
        options.batch_max = 0;
        assert!(HttpEmbedder::new(options.clone()).is_err());
        options.batch_max = 1;
        options.timeout_ms = 0;
        assert!(HttpEmbedder::new(options.clone()).is_err());
        options.timeout_ms = 1;
        options.dims = 0;
        assert!(HttpEmbedder::new(options.clone()).is_err());
        options.dims = 3;
        options.api_key = Some("bad\nkey".into());
        assert!(HttpEmbedder::new(options).is_err());
    }
}
