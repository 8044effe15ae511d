//! RFC 9457 problem details: every error the API returns is an
//! `application/problem+json` body, never plain text and never SQL.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::tokens::Scope;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field, e.g. `title`, `tags[2]`, `recurrence.rrule`.
    pub field: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The problem+json body.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Problem {
    /// A URN naming the kind of problem, stable for clients to match on.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// Field errors; present (and non-empty) for validation problems (422)
    /// and for a patch that conflicts with the task's state (409) only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("the request is invalid")]
    Validation(Vec<FieldError>),
    #[error("{0}")]
    BadRequest(String),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A personal access token without the scope the route needs.
    #[error("this personal access token lacks the scope {}", .0.as_str())]
    MissingScope(Scope),
    #[error("{0}")]
    Forbidden(&'static str),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("If-Match does not match the current version {current}")]
    PreconditionFailed { current: i64 },
    #[error("{0}")]
    Conflict(String),
    #[error("the change conflicts with the task's current state")]
    FieldConflict(Vec<FieldError>),
    #[error("this Idempotency-Key was already used with a different request")]
    IdempotencyKeyReused,
    #[error("too many requests; retry in {retry_after_secs} s")]
    TooManyRequests { retry_after_secs: u64 },
    #[error("the request took longer than {timeout_ms} ms and was abandoned")]
    Timeout { timeout_ms: u128 },
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        // A unique violation that got this far is a conflict with existing
        // state (e.g. a duplicate id), not a server fault.
        if let sqlx::Error::Database(db) = &e {
            if db.is_unique_violation() {
                return ApiError::Conflict("the resource already exists".to_owned());
            }
        }
        ApiError::Database(e)
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            // The request may be valid; it conflicts with what the key is
            // bound to, which is server state (so 409, like any conflict).
            ApiError::IdempotencyKeyReused => StatusCode::CONFLICT,
            ApiError::BadRequest(_) | ApiError::MalformedJson(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::MissingScope(_) | ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict(_) | ApiError::FieldConflict(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Timeout { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Database(_) | ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> &'static str {
        match self {
            ApiError::Validation(_) => "validation",
            ApiError::BadRequest(_) => "bad-request",
            ApiError::MalformedJson(_) => "malformed-json",
            ApiError::UnsupportedMediaType => "unsupported-media-type",
            ApiError::PayloadTooLarge { .. } => "payload-too-large",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::MissingScope(_) => "insufficient-scope",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not-found",
            ApiError::MethodNotAllowed => "method-not-allowed",
            ApiError::PreconditionFailed { .. } => "precondition-failed",
            ApiError::Conflict(_) | ApiError::FieldConflict(_) => "conflict",
            ApiError::IdempotencyKeyReused => "idempotency-key-reused",
            ApiError::TooManyRequests { .. } => "too-many-requests",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Database(_) | ApiError::Internal(_) => "internal",
        }
    }

    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let detail = match self {
            // Never echo database or internal error text to the client.
            ApiError::Database(_) | ApiError::Internal(_) => {
                "an internal error occurred; it has been logged".to_owned()
            }
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:taskflow:problem:{}", self.slug()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            errors: match self {
                ApiError::Validation(errors) | ApiError::FieldConflict(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Database(e) => tracing::error!(error = %e, "database error"),
            ApiError::Internal(e) => tracing::error!(error = %e, "internal error"),
            _ => {}
        }
        let problem = self.to_problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (self.status(), body).into_response();
        let headers = resp.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        match &self {
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::MissingScope(scope) => {
                // RFC 6750 section 3.1: the scope that would have been enough.
                let value = format!(
                    r#"Bearer error="insufficient_scope", scope="{}""#,
                    scope.as_str()
                );
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                }
            }
            ApiError::PreconditionFailed { current } => {
                if let Ok(v) = HeaderValue::from_str(&format!("\"{current}\"")) {
                    headers.insert(header::ETAG, v);
                }
            }
            ApiError::TooManyRequests { retry_after_secs } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            _ => {}
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_errors_hide_their_text() {
        let p = ApiError::Internal("SELECT secret FROM x".into()).to_problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("SELECT"));
    }

    #[test]
    fn missing_scope_is_a_403_naming_the_scope() {
        let e = ApiError::MissingScope(Scope::TasksWrite);
        let p = e.to_problem();
        assert_eq!(p.status, 403);
        assert_eq!(p.kind, "urn:taskflow:problem:insufficient-scope");
        assert!(p.detail.contains("tasks:write"), "{}", p.detail);
        let resp = e.into_response();
        let www = resp.headers()[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            www,
            r#"Bearer error="insufficient_scope", scope="tasks:write""#
        );
    }

    #[test]
    fn validation_problem_lists_fields() {
        let p = ApiError::Validation(vec![FieldError::new("title", "required")]).to_problem();
        assert_eq!(p.status, 422);
        assert_eq!(p.errors.len(), 1);
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["type"], "urn:taskflow:problem:validation");
    }
}
