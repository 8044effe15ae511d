//! What an event is as a webhook: its Standard Webhooks type and body. Pure.

use taskflow_schemas::{Event, EventType};

/// The webhook `type` of an event type, in the specification's dotted style.
pub fn webhook_type(t: EventType) -> &'static str {
    match t {
        EventType::TaskCreated => "task.created",
        EventType::TaskUpdated => "task.updated",
        EventType::TaskCompleted => "task.completed",
        EventType::TaskReopened => "task.reopened",
        EventType::TaskDeleted => "task.deleted",
        EventType::ReminderSnoozed => "reminder.snoozed",
        EventType::ReminderDue => "reminder.due",
    }
}

/// A planned webhook message: its type and the exact body every attempt sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookMessage {
    pub kind: &'static str,
    pub body: String,
}

/// The message for `event`: `{"type", "timestamp" (the event's), "data" (the event's own
/// fields, as on the live feed)}`.
pub fn webhook_message(event: &Event) -> Result<WebhookMessage, serde_json::Error> {
    let mut value = serde_json::to_value(event)?;
    let data = value
        .get_mut("event")
        .map(serde_json::Value::take)
        .unwrap_or(serde_json::Value::Null);
    let kind = webhook_type(event.event_type());
    Ok(WebhookMessage {
        kind,
        body: taskflow_infra::webhook::body(kind, event.metadata().occurred_at, &data),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use taskflow_schemas::examples;

    #[test]
    fn every_event_type_has_a_dotted_type_and_a_body() {
        for t in EventType::ALL {
            let e = examples::example(t);
            let m = webhook_message(&e).unwrap();
            let v: serde_json::Value = serde_json::from_str(&m.body).unwrap();
            assert_eq!(v["type"], m.kind);
            assert!(m.kind.contains('.'), "{}", m.kind);
            assert_eq!(
                v["data"]["metadata"]["event_id"],
                e.metadata().event_id.to_string()
            );
            assert!(v["timestamp"].as_str().unwrap().ends_with('Z'));
        }
    }
}
