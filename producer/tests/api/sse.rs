//! Test support for the live feed: a small Server-Sent Events reader over reqwest, and
//! feed/inbox rows written the way the notifier writes them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::{header, StatusCode};
use serde_json::{json, Value};
use sqlx::PgPool;
use taskflow_infra::feed::{self, FeedEntry, FEED_CHANNEL};
use uuid::Uuid;

/// How long a test waits for a frame before failing.
pub const WAIT: Duration = Duration::from_secs(10);

/// One SSE frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
    pub comments: Vec<String>,
}

impl Frame {
    pub fn is_comment_only(&self) -> bool {
        self.id.is_none() && self.event.is_none() && self.data.is_empty()
    }

    pub fn seq(&self) -> i64 {
        self.id.as_deref().expect("an id").parse().expect("a seq")
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("JSON data")
    }

    pub fn kind(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }
}

/// Parses one frame's text (without the blank line that ends it).
pub fn parse_frame(text: &str) -> Frame {
    let mut frame = Frame::default();
    let mut data: Vec<&str> = Vec::new();
    for line in text.split('\n') {
        if let Some(comment) = line.strip_prefix(':') {
            frame.comments.push(comment.trim_start().to_owned());
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "id" => frame.id = Some(value.to_owned()),
            "event" => frame.event = Some(value.to_owned()),
            "data" => data.push(value),
            _ => {}
        }
    }
    frame.data = data.join("\n");
    frame
}

/// An open stream.
pub struct SseStream {
    resp: reqwest::Response,
    buf: Vec<u8>,
}

impl SseStream {
    pub fn new(resp: reqwest::Response) -> Self {
        assert_eq!(resp.status(), StatusCode::OK);
        let ct = resp.headers()[header::CONTENT_TYPE].to_str().unwrap();
        assert!(ct.starts_with("text/event-stream"), "{ct}");
        Self {
            resp,
            buf: Vec::new(),
        }
    }

    /// The next frame, comments included; `None` when the server closed the stream.
    pub async fn next_frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\n\n") {
                let text = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 frame");
                self.buf.drain(..end + 2);
                return Some(parse_frame(&text));
            }
            let chunk = tokio::time::timeout(WAIT, self.resp.chunk())
                .await
                .expect("a frame within the wait")
                .expect("reading the stream");
            match chunk {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return None,
            }
        }
    }

    /// The next frame that is not only comments (heartbeats, the opening comment).
    pub async fn next_event(&mut self) -> Frame {
        loop {
            let frame = self.next_frame().await.expect("the stream is still open");
            if !frame.is_comment_only() {
                return frame;
            }
        }
    }

    /// Asserts the next event is an entry of `kind` with seq `seq`, and returns it.
    pub async fn expect_entry(&mut self, seq: i64, kind: &str) -> Frame {
        let f = self.next_event().await;
        assert_eq!((f.seq(), f.kind()), (seq, kind), "{f:?}");
        f
    }

    /// Asserts that the server closes the stream after an `end` event with `reason`.
    pub async fn expect_end(&mut self, reason: &str) {
        let f = self.next_event().await;
        assert_eq!(f.kind(), "end", "{f:?}");
        assert_eq!(f.json()["reason"], reason);
        while let Some(f) = self.next_frame().await {
            assert!(f.is_comment_only(), "nothing after end: {f:?}");
        }
    }
}

/// Opens `GET /feed/stream` at `base` with a bearer token.
pub async fn open(base: &str, token: &str, last_event_id: Option<i64>) -> SseStream {
    let mut req = reqwest::Client::new()
        .get(format!("{base}/feed/stream"))
        .bearer_auth(token);
    if let Some(id) = last_event_id {
        req = req.header("last-event-id", id.to_string());
    }
    SseStream::new(req.send().await.expect("open the stream"))
}

/// Appends a feed entry as the notifier does (its own transaction, `NOTIFY` after commit)
/// and returns its seq.
pub async fn append(pool: &PgPool, user_id: Uuid, kind: &str, data: Value) -> i64 {
    let seq = append_silently(pool, user_id, kind, data).await;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(FEED_CHANNEL)
        .bind(user_id.to_string())
        .execute(pool)
        .await
        .unwrap();
    seq
}

/// [`append`] without the `NOTIFY`.
pub async fn append_silently(pool: &PgPool, user_id: Uuid, kind: &str, data: Value) -> i64 {
    let mut tx = pool.begin().await.unwrap();
    let seq = feed::append(
        &mut tx,
        &FeedEntry {
            user_id,
            event_id: Uuid::now_v7(),
            kind: kind.to_owned(),
            task_id: data["event"]["task_id"]
                .as_str()
                .and_then(|s| Uuid::parse_str(s).ok()),
            occurred_at: Utc::now(),
            data,
        },
    )
    .await
    .unwrap()
    .expect("a new entry");
    tx.commit().await.unwrap();
    seq
}

/// The JSON form the notifier stores for a task event.
pub fn task_event(kind: &str, title: &str) -> Value {
    json!({"type": kind, "event": {"task_id": Uuid::now_v7(), "title": title}})
}

/// A `ReminderDue` as the notifier records it: a notification, and a feed entry naming it.
/// Returns (notification id, seq).
pub async fn reminder_due(
    pool: &PgPool,
    user_id: Uuid,
    title: &str,
    created_at: DateTime<Utc>,
) -> (Uuid, i64) {
    let id = Uuid::now_v7();
    let task_id = Uuid::now_v7();
    let reminder_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO notifications (id, user_id, event_id, kind, task_id, title, body, data, created_at)
         VALUES ($1, $2, $3, 'reminder_due', $4, $5, 'Due soon', $6, $7)",
    )
    .bind(id)
    .bind(user_id)
    .bind(Uuid::now_v7())
    .bind(task_id)
    .bind(title)
    .bind(json!({"reminder_id": reminder_id, "fire_at": created_at, "due_at": null}))
    .bind(created_at)
    .execute(pool)
    .await
    .unwrap();
    let seq = append(
        pool,
        user_id,
        "ReminderDue",
        json!({"type": "ReminderDue", "event": {"task_id": task_id, "title": title},
               "notification_id": id}),
    )
    .await;
    (id, seq)
}
