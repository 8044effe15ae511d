//! Extractors whose rejections are problem+json (axum's built-in ones answer
//! in plain text), plus the request headers the API interprets.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::ApiError;

/// Largest accepted request body. Enforced twice: early from
/// `Content-Length`, and while reading (chunked bodies) via `DefaultBodyLimit`.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// A JSON request body, parsed but not yet validated, with the SHA-256 of its
/// canonical form (used by Idempotency-Key to recognise a retry).
#[derive(Debug)]
pub struct JsonBody {
    pub value: serde_json::Value,
    pub sha256: String,
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > MAX_BODY_BYTES as u64) {
            return Err(ApiError::PayloadTooLarge {
                limit: MAX_BODY_BYTES,
            });
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::BadRequest(format!("could not read the body: {}", r.body_text()))
            }
        })?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::MalformedJson(e.to_string()))?;
        Ok(Self {
            sha256: canonical_sha256(&value),
            value,
        })
    }
}

/// SHA-256 (hex) of the JSON re-serialised with sorted keys, so whitespace or
/// key order differences between a request and its retry do not matter.
pub fn canonical_sha256(value: &serde_json::Value) -> String {
    // serde_json's Map is a BTreeMap (no preserve_order feature): keys come out sorted.
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    hex::encode(Sha256::digest(bytes))
}

/// A `{id}` path segment that must be a UUID (a task, token, notification or webhook
/// endpoint). An id that is not a UUID cannot name anything, so it is a 404 like any
/// unknown id.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path(raw) =
            axum::extract::Path::<String>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        Uuid::parse_str(&raw)
            .map(PathId)
            .map_err(|_| ApiError::NotFound)
    }
}

/// A task's `{id}` path segment ([`PathId`]).
#[derive(Debug, Clone, Copy)]
pub struct TaskId(pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for TaskId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        PathId::from_request_parts(parts, state)
            .await
            .map(|PathId(id)| TaskId(id))
    }
}

/// The `{id}` and `{rid}` path segments of a task's reminder; an id that is not a UUID
/// names nothing, so it is a 404.
#[derive(Debug, Clone, Copy)]
pub struct ReminderPath(pub Uuid, pub Uuid);

impl<S: Send + Sync> FromRequestParts<S> for ReminderPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let axum::extract::Path((task, reminder)) =
            axum::extract::Path::<(String, String)>::from_request_parts(parts, state)
                .await
                .map_err(|_| ApiError::NotFound)?;
        match (Uuid::parse_str(&task), Uuid::parse_str(&reminder)) {
            (Ok(t), Ok(r)) => Ok(ReminderPath(t, r)),
            _ => Err(ApiError::NotFound),
        }
    }
}

/// The parsed `If-Match` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfMatch {
    /// `*`: any current version.
    Any,
    /// One or more versions, any of which may match.
    Versions(Vec<i64>),
}

impl IfMatch {
    pub fn matches(&self, version: i64) -> bool {
        match self {
            IfMatch::Any => true,
            IfMatch::Versions(vs) => vs.contains(&version),
        }
    }
}

/// Parses `If-Match`: `*`, `"3"`, a bare `3`, or a comma-separated list.
/// Weak tags (`W/"3"`) are refused: If-Match uses strong comparison.
pub fn parse_if_match(raw: &str) -> Result<IfMatch, String> {
    let raw = raw.trim();
    if raw == "*" {
        return Ok(IfMatch::Any);
    }
    let mut versions = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        if part.starts_with("W/") {
            return Err("weak entity tags cannot be used with If-Match".to_owned());
        }
        let inner = match part.strip_prefix('"') {
            Some(rest) => rest
                .strip_suffix('"')
                .ok_or_else(|| format!("unterminated entity tag {part:?}"))?,
            None => part,
        };
        // Digits only (no sign), at most 18: the grammar the OpenAPI
        // document gives, and always an i64.
        if inner.is_empty() || inner.len() > 18 || !inner.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("{part:?} is not a task version"));
        }
        let v: i64 = inner
            .parse()
            .map_err(|_| format!("{part:?} is not a task version"))?;
        versions.push(v);
    }
    if versions.is_empty() {
        return Err("empty If-Match".to_owned());
    }
    Ok(IfMatch::Versions(versions))
}

/// The optional If-Match precondition of a write.
#[derive(Debug, Clone)]
pub struct Precondition(pub Option<IfMatch>);

impl<S: Send + Sync> FromRequestParts<S> for Precondition {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        match parts.headers.get(header::IF_MATCH) {
            None => Ok(Precondition(None)),
            Some(v) => {
                let s = v
                    .to_str()
                    .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".to_owned()))?;
                parse_if_match(s)
                    .map(|m| Precondition(Some(m)))
                    .map_err(|e| ApiError::BadRequest(format!("invalid If-Match: {e}")))
            }
        }
    }
}

/// Tracing context carried into the events a request causes.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// From `x-correlation-id`, else `x-request-id`, else a new UUID.
    pub correlation_id: String,
    /// W3C `traceparent`, passed on to the outbox when well formed.
    pub traceparent: Option<String>,
}

const MAX_CORRELATION_ID_LEN: usize = 128;

fn usable_id(v: &str) -> bool {
    !v.is_empty() && v.len() <= MAX_CORRELATION_ID_LEN && v.bytes().all(|b| b.is_ascii_graphic())
}

impl RequestContext {
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let header_str = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
        let correlation_id = header_str("x-correlation-id")
            .filter(|v| usable_id(v))
            .or_else(|| header_str("x-request-id").filter(|v| usable_id(v)))
            .map(str::to_owned)
            .unwrap_or_else(|| Uuid::now_v7().to_string());
        let traceparent = header_str("traceparent")
            .map(str::trim)
            .filter(|v| taskflow_infra::outbox::is_valid_traceparent(v))
            .map(str::to_owned);
        Self {
            correlation_id,
            traceparent,
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Self::from_headers(&parts.headers))
    }
}

/// Largest accepted `Idempotency-Key`.
pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 255;

/// The optional `Idempotency-Key` header.
#[derive(Debug, Clone)]
pub struct IdempotencyKey(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(v) = parts.headers.get("idempotency-key") else {
            return Ok(IdempotencyKey(None));
        };
        let key = v.to_str().map(str::trim).unwrap_or("");
        if key.is_empty()
            || key.len() > MAX_IDEMPOTENCY_KEY_LEN
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(ApiError::BadRequest(format!(
                "Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_LEN} visible ASCII characters"
            )));
        }
        Ok(IdempotencyKey(Some(key.to_owned())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_forms() {
        assert_eq!(parse_if_match("\"3\""), Ok(IfMatch::Versions(vec![3])));
        assert_eq!(parse_if_match("3"), Ok(IfMatch::Versions(vec![3])));
        assert_eq!(parse_if_match(" * "), Ok(IfMatch::Any));
        assert_eq!(
            parse_if_match("\"1\", \"2\""),
            Ok(IfMatch::Versions(vec![1, 2]))
        );
        assert!(parse_if_match("W/\"3\"").is_err());
        assert!(parse_if_match("\"3").is_err());
        assert!(parse_if_match("abc").is_err());
        assert!(parse_if_match("").is_err());
        assert!(parse_if_match("\"1\",").is_err());
        assert!(parse_if_match("-3").is_err());
        assert!(parse_if_match("+3").is_err());
        assert!(parse_if_match(&"9".repeat(19)).is_err());
    }

    #[test]
    fn if_match_matching() {
        assert!(IfMatch::Any.matches(7));
        assert!(IfMatch::Versions(vec![1, 7]).matches(7));
        assert!(!IfMatch::Versions(vec![6]).matches(7));
    }

    #[test]
    fn canonical_hash_ignores_key_order_and_whitespace() {
        let a: serde_json::Value = serde_json::from_str(r#"{"a":1,"b":[1,2]}"#).unwrap();
        let b: serde_json::Value = serde_json::from_str("{ \"b\": [1, 2],\n \"a\": 1 }").unwrap();
        let c: serde_json::Value = serde_json::from_str(r#"{"a":2,"b":[1,2]}"#).unwrap();
        assert_eq!(canonical_sha256(&a), canonical_sha256(&b));
        assert_ne!(canonical_sha256(&a), canonical_sha256(&c));
    }

    #[test]
    fn correlation_and_traceparent() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", "req-1".parse().unwrap());
        h.insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        let ctx = RequestContext::from_headers(&h);
        assert_eq!(ctx.correlation_id, "req-1");
        assert!(ctx.traceparent.is_some());
        h.insert("x-correlation-id", "corr-9".parse().unwrap());
        h.insert("traceparent", "garbage".parse().unwrap());
        let ctx = RequestContext::from_headers(&h);
        assert_eq!(ctx.correlation_id, "corr-9");
        assert!(ctx.traceparent.is_none());
        let ctx = RequestContext::from_headers(&HeaderMap::new());
        assert!(Uuid::parse_str(&ctx.correlation_id).is_ok());
    }

    #[test]
    fn json_content_types() {
        let mut h = HeaderMap::new();
        assert!(!is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json".parse().unwrap(),
        );
        assert!(is_json(&h));
        h.insert(header::CONTENT_TYPE, "text/plain".parse().unwrap());
        assert!(!is_json(&h));
    }
}
