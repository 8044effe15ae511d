//! `GET /feed/stream` (SSE), `GET /feed/ws` (WebSocket) and `POST /feed/stream-tokens`:
//! thin, over [`super::stream`] and [`super::credential`]. Both transports carry the same
//! frames from the same stream loop; only the writing differs.

use std::convert::Infallible;

use axum::{
    extract::{
        ws::{rejection::WebSocketUpgradeRejection, Message, WebSocket, WebSocketUpgrade},
        Query, State,
    },
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response, Sse},
    Json,
};
use chrono::{DateTime, Utc};
use futures::{SinkExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use taskflow_infra::feed;
use utoipa::ToSchema;

use super::{
    credential::{BearerFeedCaller, FeedCaller},
    frame::Out,
    resume::{parse_last_event_id, start_position},
    stream::{self, StreamSetup},
};
use crate::{
    app::AppState,
    problem::{ApiError, Problem},
};

/// A stream token: `GET /feed/stream?access_token=<token>` opens a stream with it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StreamTokenResponse {
    pub token: String,
    /// The stream must be opened before this instant (60 s); the stream then lives as long
    /// as the credential the token was made with.
    pub expires_at: DateTime<Utc>,
}

/// The caller's feed as Server-Sent Events.
///
/// Each entry is `id: <seq>`, `event: <kind>` (`TaskCreated`, `TaskUpdated`,
/// `TaskCompleted`, `TaskReopened`, `TaskDeleted`, `ReminderSnoozed`, `ReminderDue`,
/// `NotificationRead`), `data: <JSON>`. Without `Last-Event-ID` the stream starts with the
/// next entry; with it, every entry after that id is sent first, in order, once. If entries
/// after it were pruned, `event: resync` (`data: {"reason": ..., "resume_from": ...}`) comes
/// first: reload, then keep reading. An SSE comment is sent every heartbeat. When the
/// credential expires or is revoked, or the server shuts down, `event: end`
/// (`data: {"reason": "expired" | "revoked" | "shutdown"}`) is sent and the stream closes.
/// Browsers: open it with `?access_token=` and a token of `POST /feed/stream-tokens`; a new
/// `EventSource` cannot set `Last-Event-ID`, so `?last_event_id=` resumes too (the header
/// wins when both are given: `EventSource` sends it on its own reconnects).
#[utoipa::path(
    get, path = "/feed/stream", tag = "feed",
    params(("Last-Event-ID" = Option<String>, Header), SocketQuery),
    responses(
        (status = 200, description = "The stream (never ends on its own but for `event: end`)",
         body = String, content_type = "text/event-stream"),
        (status = 400, description = "A malformed `Last-Event-ID` header or query string", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No credential; a missing, malformed or expired bearer token; a stream token that is \
         invalid, expired, or whose parent credential has expired or been revoked", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("stream_token" = []))
)]
pub async fn open_stream(
    State(state): State<AppState>,
    caller: FeedCaller,
    Query(query): Query<SocketQuery>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let raw = match headers.get("last-event-id") {
        Some(header) => Some(header.as_bytes()),
        None => query.last_event_id.as_deref().map(str::as_bytes),
    };
    let last_event_id =
        parse_last_event_id(raw).map_err(|reason| ApiError::BadRequest(reason.to_owned()))?;
    let frames = open_frames(&state, caller, last_event_id)
        .await?
        .map(|out| Ok::<_, Infallible>(out.sse()));
    let mut resp = Sse::new(frames).into_response();
    // nginx buffers proxied responses unless told not to, which would hold entries back.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
}

/// Subscribes, reads the head and starts the caller's stream after `last_event_id`.
async fn open_frames(
    state: &AppState,
    caller: FeedCaller,
    last_event_id: Option<i64>,
) -> Result<impl Stream<Item = Out> + Send + 'static, ApiError> {
    // Subscribe before reading the head: an entry committed after the read wakes the stream.
    let subscription = state.feed.hub.subscribe(caller.user_id);
    let (head, pruned_through) = feed::head(&state.pool, caller.user_id).await?;
    let start = start_position(last_event_id, head, pruned_through);
    Ok(stream::frames(StreamSetup {
        pool: state.pool.clone(),
        user_id: caller.user_id,
        parent: caller.parent,
        subscription,
        start,
        head,
        heartbeat: state.feed.heartbeat,
        stop: state.feed.stop.clone(),
        metrics: state.feed.metrics.clone(),
    }))
}

/// Where a WebSocket client or a new `EventSource` resumes: browsers cannot set headers on
/// either.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct SocketQuery {
    /// The `id` of the last entry received; entries after it come first, in order, once.
    pub last_event_id: Option<String>,
}

/// The caller's feed over a WebSocket: the same entries, order and guarantees as
/// `GET /feed/stream`, for clients that prefer a socket.
///
/// Each server message is one JSON text: `{"type": "entry", "id": <seq>, "event": <kind>,
/// "data": {...}}`, `{"type": "resync", "reason": ..., "resume_from": ...}` (reload, then
/// keep reading), or `{"type": "end", "reason": "expired" | "revoked" | "shutdown"}`
/// followed by a close. A ping is sent every heartbeat; client messages are ignored.
/// Resume with `?last_event_id=<seq>`; authenticate with `Authorization: Bearer` or, from a
/// browser, `?access_token=` and a token of `POST /feed/stream-tokens`.
#[utoipa::path(
    get, path = "/feed/ws", tag = "feed",
    params(SocketQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol"),
        (status = 400, description = "Not a WebSocket upgrade request, or a malformed `last_event_id`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid credential (as for `GET /feed/stream`)", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []), ("stream_token" = []))
)]
pub async fn open_socket(
    State(state): State<AppState>,
    caller: FeedCaller,
    Query(query): Query<SocketQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| {
        ApiError::BadRequest(format!(
            "GET /feed/ws needs a WebSocket upgrade request: {e}"
        ))
    })?;
    let last_event_id = parse_last_event_id(query.last_event_id.as_deref().map(str::as_bytes))
        .map_err(|reason| ApiError::BadRequest(reason.to_owned()))?;
    let frames = open_frames(&state, caller, last_event_id).await?;
    Ok(upgrade.on_upgrade(move |socket| pump(socket, frames)))
}

/// Writes `frames` to `socket` until the stream ends or the client goes away; dropping the
/// stream then releases its subscription and its open-streams count.
async fn pump(socket: WebSocket, frames: impl Stream<Item = Out> + Send) {
    let (mut tx, mut rx) = socket.split();
    let mut frames = std::pin::pin!(frames);
    loop {
        // Both arms are cancel-safe: a stream's pending read lives in the stream, not in
        // the `next()` future dropped here.
        tokio::select! {
            out = frames.next() => {
                let msg = match out {
                    None => {
                        let _ = tx.send(Message::Close(None)).await;
                        return;
                    }
                    Some(out) => match out.ws_text() {
                        Some(text) => Message::Text(text.into()),
                        None => Message::Ping(Default::default()),
                    },
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
            }
            incoming = rx.next() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                // Pongs and any client text: nothing to do (pings are answered for us).
                Some(Ok(_)) => {}
            },
        }
    }
}

/// A short-lived token to open `GET /feed/stream?access_token=` (for `EventSource`, which
/// cannot send `Authorization`). Bound to the caller and to the credential of this request:
/// the stream ends when that credential expires or is revoked.
#[utoipa::path(
    post, path = "/feed/stream-tokens", tag = "feed",
    responses((status = 200, description = "A stream token, valid 60 s to open a stream", body = StreamTokenResponse)),
    security(("bearer" = []))
)]
pub async fn create_stream_token(
    State(state): State<AppState>,
    BearerFeedCaller(caller): BearerFeedCaller,
) -> Result<Json<StreamTokenResponse>, ApiError> {
    let (token, exp) = state
        .feed
        .stream_keys
        .issue(caller.user_id, caller.parent, Utc::now().timestamp())
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let expires_at = DateTime::from_timestamp(exp, 0)
        .ok_or_else(|| ApiError::Internal(format!("stream token expiry {exp} out of range")))?;
    Ok(Json(StreamTokenResponse { token, expires_at }))
}
