//! `GET /feed/stream` and `POST /feed/stream-tokens`: thin, over [`super::stream`] and
//! [`super::credential`].

use axum::{
    extract::State,
    http::{HeaderMap, HeaderValue},
    response::{IntoResponse, Response, Sse},
    Json,
};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use taskflow_infra::feed;
use utoipa::ToSchema;

use super::{
    credential::{BearerFeedCaller, FeedCaller},
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
/// Browsers: open it with `?access_token=` and a token of `POST /feed/stream-tokens`.
#[utoipa::path(
    get, path = "/feed/stream", tag = "feed",
    params(("Last-Event-ID" = Option<String>, Header)),
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
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let last_event_id =
        parse_last_event_id(headers.get("last-event-id").map(HeaderValue::as_bytes))
            .map_err(|reason| ApiError::BadRequest(reason.to_owned()))?;
    // Subscribe before reading the head: an entry committed after the read wakes the stream.
    let subscription = state.feed.hub.subscribe(caller.user_id);
    let (head, pruned_through) = feed::head(&state.pool, caller.user_id).await?;
    let start = start_position(last_event_id, head, pruned_through);
    let frames = stream::frames(StreamSetup {
        pool: state.pool.clone(),
        user_id: caller.user_id,
        parent: caller.parent,
        subscription,
        start,
        head,
        heartbeat: state.feed.heartbeat,
        stop: state.feed.stop.clone(),
        metrics: state.feed.metrics.clone(),
    });
    let mut resp = Sse::new(frames).into_response();
    // nginx buffers proxied responses unless told not to, which would hold entries back.
    resp.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(resp)
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
