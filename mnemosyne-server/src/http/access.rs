//! Who may talk to the API from a browser's point of view: the `Host` a
//! request names, the `Origin` it comes from, and the media type of its
//! body. Loopback is not a trust boundary: every web page the user opens
//! can reach 127.0.0.1. A page of another site can send a "simple"
//! cross-origin request (`text/plain`, no preflight), or make its own
//! domain resolve to 127.0.0.1 (DNS rebinding) and read the answers as
//! same-origin. The first carries a foreign `Origin` and a non-JSON body;
//! the second a foreign `Host`. Both are refused here, before any handler.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ServerError};

/// Seconds a browser may cache a preflight answer.
pub const PREFLIGHT_MAX_AGE_S: u32 = 600;

/// Methods and request headers a configured origin may use.
const CORS_METHODS: &str = "GET, POST, PUT, PATCH, DELETE";
const CORS_HEADERS: &str = "authorization, content-type";

/// A `Host` value on the allow-list: a name, with or without a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostEntry {
    name: String,
    port: Option<u16>,
}

/// A `Host` or origin authority split into name (lower case; an IPv6
/// address keeps its brackets) and port.
fn split_authority(authority: &str) -> Option<(String, Option<u16>)> {
    if authority.is_empty() || authority.contains(['/', '@', ' ', '?', '#']) {
        return None;
    }
    let (name, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (name, rest) = authority.split_at(end + 1);
        match rest {
            "" => (name, None),
            _ => (name, Some(rest.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((name, port)) => (name, Some(port)),
            None => (authority, None),
        }
    };
    if name.is_empty() {
        return None;
    }
    let port = match port {
        Some(port) => Some(port.parse::<u16>().ok()?),
        None => None,
    };
    Some((name.to_ascii_lowercase(), port))
}

/// The IP address a host name spells, if it is an IP literal.
fn ip_literal(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => name.parse::<std::net::Ipv4Addr>().ok().map(IpAddr::V4),
    }
}

/// The `Host` names and origins a server answers, with the address it is
/// bound to.
#[derive(Clone, Debug)]
pub(crate) struct AccessPolicy {
    bound: SocketAddr,
    hosts: Vec<HostEntry>,
    origins: Vec<String>,
}

/// The configured allow-lists, checked, before the port is known.
#[derive(Clone, Debug, Default)]
pub struct AllowLists {
    hosts: Vec<HostEntry>,
    origins: Vec<String>,
}

impl AllowLists {
    /// `hosts`: extra `Host` values to answer (a reverse proxy's name;
    /// `name` allows any port, `name:port` that port only). `origins`:
    /// origins (`scheme://host[:port]`) whose pages may call the API
    /// cross-origin; they get CORS headers and preflight answers.
    pub fn new(hosts: &[String], origins: &[String]) -> Result<Self, ServerError> {
        let hosts = hosts
            .iter()
            .map(|host| {
                split_authority(host.trim())
                    .map(|(name, port)| HostEntry { name, port })
                    .ok_or_else(|| ServerError::InvalidAllowList {
                        what: "allowed host",
                        value: host.clone(),
                        rule: "a host name or address, with an optional :port",
                    })
            })
            .collect::<Result<_, _>>()?;
        let origins = origins
            .iter()
            .map(|origin| {
                normalize_origin(origin).ok_or_else(|| ServerError::InvalidAllowList {
                    what: "allowed origin",
                    value: origin.clone(),
                    rule: "scheme://host[:port], as a browser sends it in Origin",
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { hosts, origins })
    }
}

/// `scheme://host[:port]` in lower case, without a trailing slash; `None`
/// when it is not an origin.
fn normalize_origin(origin: &str) -> Option<String> {
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let (scheme, authority) = origin.split_once("://")?;
    if !matches!(scheme, "http" | "https") {
        return None;
    }
    split_authority(authority)?;
    Some(origin)
}

/// Why a request was refused.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    NoHost,
    BadHost,
    ForeignHost(String),
    ForeignOrigin(String),
    MediaType(String),
}

impl Refusal {
    fn into_error(self, bound: SocketAddr) -> ApiError {
        match self {
            Self::NoHost => ApiError::new(
                400,
                "invalid_input",
                "an HTTP/1.1 request needs a Host header",
            ),
            Self::BadHost => ApiError::new(
                400,
                "invalid_input",
                "the Host header is not a host name with an optional port",
            ),
            Self::ForeignHost(host) => ApiError::new(
                421,
                "unknown_host",
                format!(
                    "this server answers Host localhost, 127.0.0.1, [::1] or {bound}, not {host:?} \
                     (add a reverse proxy's name with --allowed-host or http_allowed_hosts)"
                ),
            ),
            Self::ForeignOrigin(origin) => ApiError::new(
                403,
                "forbidden_origin",
                format!(
                    "requests from origin {origin:?} are refused (allow it with --allowed-origin \
                     or http_allowed_origins)"
                ),
            ),
            Self::MediaType(given) => ApiError::new(
                415,
                "unsupported_media_type",
                format!("a request body must be Content-Type: application/json, not {given:?}"),
            ),
        }
    }
}

impl AccessPolicy {
    pub(crate) fn new(bound: SocketAddr, lists: AllowLists) -> Self {
        Self {
            bound,
            hosts: lists.hosts,
            origins: lists.origins,
        }
    }

    /// Whether `name[:port]` names this server: a loopback name or address,
    /// the bound address (any IP literal on a wildcard bind: an address
    /// cannot be rebound by DNS), or an allow-listed host.
    fn host_allowed(&self, name: &str, port: Option<u16>) -> bool {
        let own_port = port.is_none_or(|p| p == self.bound.port());
        let builtin = match ip_literal(name) {
            Some(ip) => {
                ip.is_loopback() || ip == self.bound.ip() || self.bound.ip().is_unspecified()
            }
            None => name == "localhost",
        };
        (builtin && own_port)
            || self
                .hosts
                .iter()
                .any(|entry| entry.name == name && entry.port.is_none_or(|p| Some(p) == port))
    }

    fn check_host(&self, request: &Request) -> Result<(), Refusal> {
        let mut values = request.headers().get_all(header::HOST).iter();
        let host = values.next();
        if values.next().is_some() {
            return Err(Refusal::BadHost);
        }
        // An absolute-form target (`GET http://name/ HTTP/1.1`) names the
        // host itself; both it and any Host header must be ours.
        let mut authorities = Vec::new();
        if let Some(authority) = request.uri().authority() {
            authorities.push(authority.as_str().to_owned());
        }
        match host {
            Some(value) => {
                authorities.push(value.to_str().map_err(|_| Refusal::BadHost)?.to_owned());
            }
            None if request.version() >= Version::HTTP_11 && authorities.is_empty() => {
                return Err(Refusal::NoHost);
            }
            None => {}
        }
        for authority in authorities {
            let (name, port) = split_authority(&authority).ok_or(Refusal::BadHost)?;
            if !self.host_allowed(&name, port) {
                return Err(Refusal::ForeignHost(authority));
            }
        }
        Ok(())
    }

    /// `Ok(None)`: no Origin, or this server's own; `Ok(Some(origin))`: a
    /// configured origin (CORS headers go on the answer).
    fn check_origin(&self, headers: &HeaderMap) -> Result<Option<HeaderValue>, Refusal> {
        let Some(value) = headers.get(header::ORIGIN) else {
            return Ok(None);
        };
        let text = value.to_str().unwrap_or_default();
        let refused = || Refusal::ForeignOrigin(String::from_utf8_lossy(value.as_bytes()).into());
        let origin = normalize_origin(text).ok_or_else(refused)?;
        if self.origins.contains(&origin) {
            return Ok(Some(value.clone()));
        }
        let own = origin
            .strip_prefix("http://")
            .and_then(split_authority)
            .is_some_and(|(name, port)| self.host_allowed(&name, Some(port.unwrap_or(80))));
        if own { Ok(None) } else { Err(refused()) }
    }
}

/// Whether a request carries a body (a non-zero length, or chunks).
fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING)
        || headers
            .get(header::CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0")
}

/// `application/json`, optionally with `charset=utf-8`.
fn is_json(value: Option<&HeaderValue>) -> bool {
    let Some(text) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = text.split(';');
    let media = parts.next().unwrap_or_default().trim();
    media.eq_ignore_ascii_case("application/json")
        && parts.all(|param| {
            let param = param.trim().to_ascii_lowercase();
            param.is_empty() || matches!(param.as_str(), "charset=utf-8" | "charset=\"utf-8\"")
        })
}

fn check_media_type(headers: &HeaderMap) -> Result<(), Refusal> {
    if !has_body(headers) || is_json(headers.get(header::CONTENT_TYPE)) {
        return Ok(());
    }
    let given = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_else(|| "none".into());
    Err(Refusal::MediaType(given))
}

fn cors_headers(response: &mut Response, origin: HeaderValue) {
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

/// The middleware: Host (400, 421), then Origin (403), a preflight of a
/// configured origin (204), then the body's media type (415).
pub(crate) async fn guard(
    State(policy): State<std::sync::Arc<AccessPolicy>>,
    request: Request,
    next: Next,
) -> Response {
    if let Err(refusal) = policy.check_host(&request) {
        return refusal.into_error(policy.bound).into_response();
    }
    let cors_origin = match policy.check_origin(request.headers()) {
        Ok(origin) => origin,
        Err(refusal) => return refusal.into_error(policy.bound).into_response(),
    };
    if let Some(origin) = &cors_origin
        && request.method() == Method::OPTIONS
        && request
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        let mut response = StatusCode::NO_CONTENT.into_response();
        cors_headers(&mut response, origin.clone());
        let headers = response.headers_mut();
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(CORS_METHODS),
        );
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(CORS_HEADERS),
        );
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(PREFLIGHT_MAX_AGE_S),
        );
        return response;
    }
    if let Err(refusal) = check_media_type(request.headers()) {
        let mut response = refusal.into_error(policy.bound).into_response();
        if let Some(origin) = cors_origin {
            cors_headers(&mut response, origin);
        }
        return response;
    }
    let mut response = next.run(request).await;
    if let Some(origin) = cors_origin {
        cors_headers(&mut response, origin);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(bind: &str, hosts: &[&str], origins: &[&str]) -> AccessPolicy {
        let own = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        AccessPolicy::new(
            bind.parse().unwrap(),
            AllowLists::new(&own(hosts), &own(origins)).unwrap(),
        )
    }

    fn host(policy: &AccessPolicy, value: &str) -> Result<(), Refusal> {
        let request = Request::builder()
            .uri("/v1/memories")
            .header(header::HOST, value)
            .body(axum::body::Body::empty())
            .unwrap();
        policy.check_host(&request)
    }

    #[test]
    fn loopback_names_and_the_bound_address_are_answered() {
        let p = policy("127.0.0.1:7077", &[], &[]);
        for ok in [
            "127.0.0.1:7077",
            "127.0.0.1",
            "localhost:7077",
            "LOCALHOST",
            "[::1]:7077",
            "[::1]",
        ] {
            assert_eq!(host(&p, ok), Ok(()), "{ok}");
        }
        for foreign in [
            "evil.example:7077",
            "evil.example",
            "localhost:7078",
            "127.0.0.1:80",
            "localhost.evil.example:7077",
            "10.0.0.1:7077",
        ] {
            assert!(
                matches!(host(&p, foreign), Err(Refusal::ForeignHost(_))),
                "{foreign}"
            );
        }
        for bad in ["", "a b", "localhost:port", "user@localhost", "[::1"] {
            assert_eq!(host(&p, bad), Err(Refusal::BadHost), "{bad}");
        }
        let wildcard = policy("0.0.0.0:7077", &[], &[]);
        assert_eq!(host(&wildcard, "192.168.1.20:7077"), Ok(()));
        assert!(host(&wildcard, "nas.example:7077").is_err());
        let lan = policy("192.168.1.20:7077", &[], &[]);
        assert_eq!(host(&lan, "192.168.1.20:7077"), Ok(()));
        assert!(host(&lan, "192.168.1.21:7077").is_err());
    }

    #[test]
    fn allow_listed_hosts_with_or_without_a_port() {
        let p = policy(
            "127.0.0.1:7077",
            &["memory.example", "proxy.local:8443"],
            &[],
        );
        assert_eq!(host(&p, "memory.example"), Ok(()));
        assert_eq!(host(&p, "Memory.Example:443"), Ok(()));
        assert_eq!(host(&p, "proxy.local:8443"), Ok(()));
        assert!(host(&p, "proxy.local:8444").is_err());
        assert!(host(&p, "proxy.local").is_err());
        assert!(AllowLists::new(&["a b".into()], &[]).is_err());
        assert!(AllowLists::new(&[], &["evil.example".into()]).is_err());
        assert!(AllowLists::new(&[], &["ftp://x.example".into()]).is_err());
    }

    #[test]
    fn a_request_without_host_or_with_two_is_bad() {
        let p = policy("127.0.0.1:7077", &[], &[]);
        let bare = Request::builder()
            .uri("/health")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(p.check_host(&bare), Err(Refusal::NoHost));
        let old = Request::builder()
            .uri("/health")
            .version(Version::HTTP_10)
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(p.check_host(&old), Ok(()));
        let two = Request::builder()
            .uri("/health")
            .header(header::HOST, "localhost")
            .header(header::HOST, "evil.example")
            .body(axum::body::Body::empty())
            .unwrap();
        assert_eq!(p.check_host(&two), Err(Refusal::BadHost));
        let absolute = Request::builder()
            .uri("http://evil.example/health")
            .header(header::HOST, "localhost")
            .body(axum::body::Body::empty())
            .unwrap();
        assert!(matches!(
            p.check_host(&absolute),
            Err(Refusal::ForeignHost(_))
        ));
    }

    #[test]
    fn origins_own_configured_and_foreign() {
        let p = policy("127.0.0.1:7077", &[], &["https://app.example"]);
        let origin = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, HeaderValue::from_str(value).unwrap());
            p.check_origin(&headers)
        };
        assert_eq!(p.check_origin(&HeaderMap::new()), Ok(None));
        assert_eq!(origin("http://127.0.0.1:7077"), Ok(None));
        assert_eq!(origin("http://localhost:7077"), Ok(None));
        assert_eq!(
            origin("https://app.example"),
            Ok(Some(HeaderValue::from_static("https://app.example")))
        );
        for foreign in [
            "http://evil.example",
            "http://localhost:7078",
            "http://localhost",
            "https://127.0.0.1:7077",
            "null",
            "https://app.example:444",
        ] {
            assert!(
                matches!(origin(foreign), Err(Refusal::ForeignOrigin(_))),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_body_must_be_json() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(check_media_type(&headers(&[])).is_ok());
        assert!(check_media_type(&headers(&[("content-length", "0")])).is_ok());
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
        ] {
            let map = headers(&[("content-length", "2"), ("content-type", json)]);
            assert!(check_media_type(&map).is_ok(), "{json}");
        }
        for other in [
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/json; charset=latin1",
            "application/jsonp",
        ] {
            let map = headers(&[("content-length", "2"), ("content-type", other)]);
            assert!(check_media_type(&map).is_err(), "{other}");
        }
        assert!(check_media_type(&headers(&[("content-length", "2")])).is_err());
        assert!(check_media_type(&headers(&[("transfer-encoding", "chunked")])).is_err());
    }
}
