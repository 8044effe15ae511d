//! Webhooks as the Standard Webhooks specification defines them: safe targets and
//! signatures, shared by the API (which manages endpoints) and the notifier (which
//! delivers).

pub mod signing;
pub mod target;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// `NOTIFY` channel telling senders that deliveries were planned.
pub const NOTIFY_CHANNEL: &str = "taskflow_deliveries";

/// A delivery's body as the specification suggests it: `{"type", "timestamp", "data"}`.
/// Fixed when the delivery is planned, so every attempt sends (and signs) the same bytes.
pub fn body(kind: &str, timestamp: DateTime<Utc>, data: &Value) -> String {
    json!({
        "type": kind,
        "timestamp": timestamp.to_rfc3339_opts(SecondsFormat::Millis, true),
        "data": data,
    })
    .to_string()
}

/// The `webhook-id` of a delivery: stable across its attempts, so receivers deduplicate.
pub fn message_id(delivery_id: uuid::Uuid) -> String {
    format!("msg_{}", delivery_id.simple())
}
