//! A small client of the Taskflow HTTP API, acting with one user's bearer
//! token per call. It interprets nothing: a 2xx answer is handed back as
//! JSON, anything else as the API's problem+json body, field errors
//! included, so the MCP tools report exactly what the API decided.

use std::time::Duration;

use reqwest::{header, Method, StatusCode};
use serde_json::Value;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The API answered with a non-2xx status; `problem` is its body
    /// (problem+json), or a synthesised one when the body was not JSON.
    #[error("the API answered {status}: {}", problem_detail(.problem))]
    Refused { status: StatusCode, problem: Value },
    /// The API could not be reached or its answer not read.
    #[error("the Taskflow API could not be reached: {0}")]
    Unreachable(#[source] reqwest::Error),
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

fn problem_detail(problem: &Value) -> &str {
    problem
        .get("detail")
        .and_then(Value::as_str)
        .unwrap_or("no detail")
}

/// A 2xx answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiAnswer {
    pub status: StatusCode,
    /// `Value::Null` for a body-less answer (204).
    pub body: Value,
}

/// One request to the API.
#[derive(Debug, Clone)]
pub struct ApiRequest {
    pub method: Method,
    /// Path and query, e.g. `/tasks?status=open`; built from validated parts
    /// only (see [`crate::tools`]).
    pub path: String,
    pub body: Option<Value>,
    pub if_match: Option<i64>,
    pub idempotency_key: Option<String>,
}

impl ApiRequest {
    pub fn new(method: Method, path: String) -> Self {
        Self {
            method,
            path,
            body: None,
            if_match: None,
            idempotency_key: None,
        }
    }
}

/// The API's base URL and a pooled HTTP client. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ApiClient {
    base: String,
    http: reqwest::Client,
}

impl ApiClient {
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("taskflow-mcp/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(ApiError::Client)?;
        Ok(Self {
            base: base_url.trim_end_matches('/').to_owned(),
            http,
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// Sends `req` with `token` as the bearer token.
    pub async fn send(&self, token: &str, req: ApiRequest) -> Result<ApiAnswer, ApiError> {
        let mut builder = self
            .http
            .request(req.method, format!("{}{}", self.base, req.path))
            .bearer_auth(token)
            .header(header::ACCEPT, "application/json");
        if let Some(body) = &req.body {
            builder = builder.json(body);
        }
        if let Some(v) = req.if_match {
            builder = builder.header(header::IF_MATCH, format!("\"{v}\""));
        }
        if let Some(key) = req.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        let resp = builder.send().await.map_err(ApiError::Unreachable)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(ApiError::Unreachable)?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                serde_json::json!({
                    "detail": String::from_utf8_lossy(&bytes).chars().take(500).collect::<String>()
                })
            })
        };
        if status.is_success() {
            Ok(ApiAnswer { status, body })
        } else {
            Err(ApiError::Refused {
                status,
                problem: body,
            })
        }
    }
}
