//! Request validation and response shapes of the webhook routes. Pure.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use taskflow_infra::webhook::target::{check_url, TargetPolicy};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::problem::FieldError;

pub const URL_MAX_CHARS: usize = 2000;
pub const DESCRIPTION_MAX_CHARS: usize = 200;
/// Live endpoints per user: each event is signed and sent once per endpoint.
pub const MAX_ENDPOINTS: i64 = 20;
/// How long the previous secret still signs after a rotation, by default and at most.
pub const DEFAULT_OVERLAP_SECS: i64 = 24 * 3600;
pub const MAX_OVERLAP_SECS: i64 = 7 * 24 * 3600;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEndpoint {
    pub url: String,
    pub description: String,
}

fn unknown_fields(obj: &serde_json::Map<String, Value>, allowed: &[&str]) -> Vec<FieldError> {
    obj.keys()
        .filter(|k| !allowed.contains(&k.as_str()))
        .map(|k| {
            FieldError::new(
                k.as_str(),
                format!("unknown field; allowed: {}", allowed.join(", ")),
            )
        })
        .collect()
}

/// `{"url": ..., "description"?: ...}`.
pub fn validate_create(body: &Value, policy: TargetPolicy) -> Result<NewEndpoint, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = unknown_fields(obj, &["url", "description"]);
    let url = match obj.get("url") {
        None => {
            errors.push(FieldError::new("url", "is required"));
            String::new()
        }
        Some(Value::String(u)) if u.chars().count() > URL_MAX_CHARS => {
            errors.push(FieldError::new(
                "url",
                format!("at most {URL_MAX_CHARS} characters"),
            ));
            String::new()
        }
        Some(Value::String(u)) => match check_url(u.trim(), policy) {
            Ok(parsed) => parsed.to_string(),
            Err(e) => {
                errors.push(FieldError::new("url", e.to_string()));
                String::new()
            }
        },
        Some(_) => {
            errors.push(FieldError::new("url", "must be a string"));
            String::new()
        }
    };
    let description = match obj.get("description") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(d)) if d.contains('\0') => {
            errors.push(FieldError::new(
                "description",
                "must not contain NUL (U+0000) characters",
            ));
            String::new()
        }
        Some(Value::String(d)) if d.chars().count() <= DESCRIPTION_MAX_CHARS => d.trim().to_owned(),
        Some(Value::String(_)) => {
            errors.push(FieldError::new(
                "description",
                format!("at most {DESCRIPTION_MAX_CHARS} characters"),
            ));
            String::new()
        }
        Some(_) => {
            errors.push(FieldError::new("description", "must be a string"));
            String::new()
        }
    };
    if errors.is_empty() {
        Ok(NewEndpoint { url, description })
    } else {
        Err(errors)
    }
}

/// `{"overlap_seconds"?: 0..=604800}` (an absent body is the default overlap).
pub fn validate_rotate(body: Option<&Value>) -> Result<i64, Vec<FieldError>> {
    let Some(body) = body else {
        return Ok(DEFAULT_OVERLAP_SECS);
    };
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new("body", "must be a JSON object")]);
    };
    let mut errors = unknown_fields(obj, &["overlap_seconds"]);
    let overlap = match obj.get("overlap_seconds") {
        None | Some(Value::Null) => DEFAULT_OVERLAP_SECS,
        // 86400.0 is the integer JSON Schema says it is.
        Some(v) => match crate::tokens::model::whole_number(v) {
            Some(n) if (0..=MAX_OVERLAP_SECS).contains(&n) => n,
            _ => {
                errors.push(FieldError::new(
                    "overlap_seconds",
                    format!("must be an integer from 0 to {MAX_OVERLAP_SECS}"),
                ));
                0
            }
        },
    };
    if errors.is_empty() {
        Ok(overlap)
    } else {
        Err(errors)
    }
}

/// An endpoint as listed (never its secret).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpoint {
    pub id: Uuid,
    pub url: String,
    pub description: String,
    /// `false` once it was disabled after failing continuously (see `disabled_reason`);
    /// `POST /webhooks/{id}/enable` turns it back on.
    pub enabled: bool,
    pub disabled_at: Option<DateTime<Utc>>,
    pub disabled_reason: Option<String>,
    /// The first failure of the current run of failures, if the last attempt failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// After a rotation: the previous secret still signs until then.
    pub previous_secret_until: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

/// A new endpoint with its signing secret, shown only in this answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CreatedWebhookEndpoint {
    #[serde(flatten)]
    pub endpoint: WebhookEndpoint,
    /// `whsec_...`: verify deliveries with it (any Standard Webhooks library).
    pub secret: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookEndpointList {
    pub items: Vec<WebhookEndpoint>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RotatedSecret {
    /// The new secret, shown only in this answer.
    pub secret: String,
    /// Deliveries carry a signature by the previous secret too until then.
    pub previous_secret_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TestDeliveryQueued {
    pub delivery_id: Uuid,
    /// The `webhook-id` the receiver will see.
    pub webhook_id: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryAttempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub latency_ms: i32,
    /// The receiver's HTTP status, if it answered.
    pub status: Option<i32>,
    pub error: Option<String>,
    pub succeeded: bool,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Delivery {
    pub id: Uuid,
    pub webhook_id: String,
    pub event_id: Uuid,
    /// `task.created`, `reminder.due`, ..., `webhook.test`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `succeeded`, `failed` (attempts exhausted) or `cancelled` (the endpoint
    /// was deleted or disabled first).
    pub state: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub attempts: Vec<DeliveryAttempt>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    /// The newest deliveries first (at most 100).
    pub items: Vec<Delivery>,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const STRICT: TargetPolicy = TargetPolicy {
        allow_private: false,
    };

    #[test]
    fn create_bodies() {
        let ok = validate_create(
            &json!({"url": " https://hooks.example.com/t ", "description": "ci"}),
            STRICT,
        )
        .unwrap();
        assert_eq!(ok.url, "https://hooks.example.com/t");
        assert_eq!(ok.description, "ci");
        let errs =
            validate_create(&json!({"url": "http://127.0.0.1/", "x": 1}), STRICT).unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["x", "url"]);
        assert!(validate_create(&json!({}), STRICT).is_err());
        assert!(validate_create(&json!({"url": 5}), STRICT).is_err());
        assert!(validate_create(
            &json!({"url": "https://e.com/", "description": "a\u{0}b"}),
            STRICT
        )
        .is_err());
        assert!(validate_create(&json!([]), STRICT).is_err());
        let long = format!("https://e.com/{}", "a".repeat(URL_MAX_CHARS));
        assert!(validate_create(&json!({ "url": long }), STRICT).is_err());
    }

    #[test]
    fn rotate_bodies() {
        assert_eq!(validate_rotate(None), Ok(DEFAULT_OVERLAP_SECS));
        assert_eq!(validate_rotate(Some(&json!({}))), Ok(DEFAULT_OVERLAP_SECS));
        assert_eq!(validate_rotate(Some(&json!({"overlap_seconds": 0}))), Ok(0));
        assert!(validate_rotate(Some(&json!({"overlap_seconds": -1}))).is_err());
        assert!(validate_rotate(Some(&json!({"overlap_seconds": 1.5}))).is_err());
        assert_eq!(
            validate_rotate(Some(&json!({"overlap_seconds": 60.0}))),
            Ok(60)
        );
        assert!(validate_rotate(Some(&json!({"other": 1}))).is_err());
    }
}
