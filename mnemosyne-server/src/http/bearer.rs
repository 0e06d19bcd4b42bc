//! [`BearerToken`]: the token of the HTTP API, compared in constant time.

use std::sync::Arc;

use axum::http::HeaderValue;
use subtle::ConstantTimeEq;

use crate::error::ServerError;

/// The bearer token of the HTTP API, compared in constant time.
#[derive(Clone)]
pub struct BearerToken(Arc<[u8]>);

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(..)")
    }
}

impl BearerToken {
    /// A token; it must be non-empty printable ASCII without spaces.
    pub fn new(token: String) -> Result<Self, ServerError> {
        if token.is_empty() {
            return Err(ServerError::InvalidToken("the token is empty"));
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ServerError::InvalidToken(
                "the token must be printable ASCII without spaces",
            ));
        }
        Ok(Self(token.into_bytes().into()))
    }

    /// Whether an `Authorization` header value carries this token. The
    /// comparison takes the same time wherever the first difference is
    /// (only the length may show).
    pub fn accepts(&self, header: Option<&HeaderValue>) -> bool {
        let Some(given) = header
            .map(HeaderValue::as_bytes)
            .and_then(|value| value.strip_prefix(b"Bearer "))
        else {
            return false;
        };
        bool::from(given.ct_eq(&self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_checked_whole() {
        let token = BearerToken::new("s3cret-token".into()).unwrap();
        let header = |v: &'static str| HeaderValue::from_static(v);
        assert!(token.accepts(Some(&header("Bearer s3cret-token"))));
        assert!(!token.accepts(Some(&header("Bearer s3cret-tokeN"))));
        assert!(!token.accepts(Some(&header("Bearer s3cret"))));
        assert!(!token.accepts(Some(&header("Bearer s3cret-token-and-more"))));
        assert!(!token.accepts(Some(&header("s3cret-token"))));
        assert!(!token.accepts(None));
        assert!(BearerToken::new(String::new()).is_err());
        assert!(BearerToken::new("has space".into()).is_err());
    }
}
