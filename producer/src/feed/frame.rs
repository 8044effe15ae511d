//! The SSE frames a stream sends. Pure, and safe on any stored value: axum's `Event`
//! builder panics on a line break in a field, so nothing taken from a row reaches a field
//! unchecked (the kind is checked, the data is compact JSON, which has none).

use axum::response::sse::Event;
use serde_json::json;
use taskflow_infra::feed::FeedRow;

use super::resume::ResyncReason;

/// Longest kind sent as the SSE `event` name.
const KIND_MAX_LEN: usize = 64;

/// Why a stream ended (the `reason` of `event: end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The credential expired (a login token's `exp`, a personal access token's expiry).
    Expired,
    /// The personal access token the stream was opened with was revoked.
    Revoked,
    /// The API process is shutting down: reconnect (to another replica) with `Last-Event-ID`.
    Shutdown,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::Expired => "expired",
            EndReason::Revoked => "revoked",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// The SSE event name of a stored kind: the kind itself when it is a plain name (every
/// kind the notifier and the API write is), `message` (the SSE default) otherwise.
pub fn event_name(kind: &str) -> &str {
    let plain = !kind.is_empty()
        && kind.len() <= KIND_MAX_LEN
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if plain {
        kind
    } else {
        "message"
    }
}

/// What a stream emits, before it is written as SSE or as WebSocket messages.
#[derive(Debug, Clone)]
pub enum Out {
    /// The stream is open (SSE: a comment; WebSocket: the handshake already said so).
    Opened,
    Entry(FeedRow),
    Resync {
        reason: ResyncReason,
        after: i64,
    },
    Heartbeat,
    /// The stream closes after it.
    End(EndReason),
}

impl Out {
    /// The SSE frame.
    pub fn sse(&self) -> Event {
        match self {
            Out::Opened => opened(),
            Out::Entry(row) => entry(row),
            Out::Resync { reason, after } => resync(*reason, *after),
            Out::Heartbeat => heartbeat(),
            Out::End(reason) => end(*reason),
        }
    }

    /// The WebSocket text message: `{"type": "entry", "id", "event", "data"}`,
    /// `{"type": "resync", "reason", "resume_from"}` or `{"type": "end", "reason"}`. `None`
    /// for what a WebSocket says by itself (the open handshake; a ping for a heartbeat).
    pub fn ws_text(&self) -> Option<String> {
        let value = match self {
            Out::Opened | Out::Heartbeat => return None,
            Out::Entry(row) => json!({
                "type": "entry",
                "id": row.seq,
                "event": event_name(&row.kind),
                "data": row.data,
            }),
            Out::Resync { reason, after } => {
                json!({"type": "resync", "reason": reason.as_str(), "resume_from": after})
            }
            Out::End(reason) => json!({"type": "end", "reason": reason.as_str()}),
        };
        Some(value.to_string())
    }
}

/// `id: <seq>`, `event: <kind>`, `data: <the row's JSON>`.
pub fn entry(row: &FeedRow) -> Event {
    let event = Event::default()
        .id(row.seq.to_string())
        .event(event_name(&row.kind));
    // Serialising a `serde_json::Value` cannot fail; should it, the client still gets the
    // id (so its position advances) with an empty object.
    match event.clone().json_data(&row.data) {
        Ok(e) => e,
        Err(_) => event.data("{}"),
    }
}

/// `event: resync` with the id the stream continues after, so a client that reconnects
/// before the next entry resumes from there instead of resyncing again.
pub fn resync(reason: ResyncReason, after: i64) -> Event {
    Event::default()
        .id(after.to_string())
        .event("resync")
        .data(json!({"reason": reason.as_str(), "resume_from": after}).to_string())
}

/// `event: end`: the stream closes after it.
pub fn end(reason: EndReason) -> Event {
    Event::default()
        .event("end")
        .data(json!({"reason": reason.as_str()}).to_string())
}

/// An SSE comment: ignored by clients, keeps proxies from closing an idle stream.
pub fn heartbeat() -> Event {
    Event::default().comment("heartbeat")
}

/// The first frame: sent at once, so the client (and any proxy) sees the stream open.
pub fn opened() -> Event {
    Event::default().comment("open")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::{IntoResponse, Sse};
    use chrono::Utc;
    use uuid::Uuid;

    async fn render(events: Vec<Event>) -> String {
        let stream =
            futures::stream::iter(events.into_iter().map(Ok::<_, std::convert::Infallible>));
        let body = Sse::new(stream).into_response().into_body();
        let bytes = axum::body::to_bytes(body, usize::MAX).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn row(seq: i64, kind: &str, data: serde_json::Value) -> FeedRow {
        FeedRow {
            seq,
            event_id: Uuid::now_v7(),
            kind: kind.to_owned(),
            task_id: None,
            occurred_at: Utc::now(),
            data,
        }
    }

    #[tokio::test]
    async fn an_entry_is_id_event_and_one_line_of_json() {
        let data = json!({"type": "TaskCreated", "event": {"title": "two\nlines"}});
        let text = render(vec![entry(&row(7, "TaskCreated", data))]).await;
        assert_eq!(
            text,
            "id: 7\nevent: TaskCreated\ndata: {\"event\":{\"title\":\"two\\nlines\"},\"type\":\"TaskCreated\"}\n\n"
        );
    }

    #[test]
    fn websocket_messages() {
        let data = json!({"type": "TaskCreated"});
        let text = Out::Entry(row(7, "TaskCreated", data.clone()))
            .ws_text()
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            json!({"type": "entry", "id": 7, "event": "TaskCreated", "data": data})
        );
        let weird = Out::Entry(row(8, "a b\nc", json!(1))).ws_text().unwrap();
        assert!(weird.contains("\"event\":\"message\""), "{weird}");
        assert_eq!(
            Out::Resync {
                reason: ResyncReason::Pruned,
                after: 42
            }
            .ws_text()
            .unwrap(),
            r#"{"reason":"pruned","resume_from":42,"type":"resync"}"#
        );
        assert_eq!(
            Out::End(EndReason::Expired).ws_text().unwrap(),
            r#"{"reason":"expired","type":"end"}"#
        );
        assert!(Out::Heartbeat.ws_text().is_none());
        assert!(Out::Opened.ws_text().is_none());
    }

    #[tokio::test]
    async fn control_frames() {
        let text = render(vec![
            opened(),
            resync(ResyncReason::Pruned, 42),
            heartbeat(),
            end(EndReason::Revoked),
        ])
        .await;
        assert_eq!(
            text,
            ": open\n\n\
             id: 42\nevent: resync\ndata: {\"reason\":\"pruned\",\"resume_from\":42}\n\n\
             : heartbeat\n\n\
             event: end\ndata: {\"reason\":\"revoked\"}\n\n"
        );
    }

    #[tokio::test]
    async fn a_kind_that_is_not_a_plain_name_is_sent_as_message() {
        assert_eq!(event_name("ReminderDue"), "ReminderDue");
        assert_eq!(event_name("NotificationRead"), "NotificationRead");
        for bad in ["", "a\nb", "a\rb", "a b", "é", &"x".repeat(65)] {
            assert_eq!(event_name(bad), "message", "{bad:?}");
        }
        let text = render(vec![entry(&row(1, "evil\nid: 9", json!({})))]).await;
        assert_eq!(text, "id: 1\nevent: message\ndata: {}\n\n");
    }
}
