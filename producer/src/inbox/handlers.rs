//! The inbox routes: thin over [`super::store`].

use axum::{
    extract::{Query, State},
    http::Uri,
    Json,
};

use super::{
    model::{
        parse_inbox_query, InboxCursor, NotificationPage, NotificationResponse, ReadAllResponse,
        UnreadCount,
    },
    store,
};
use crate::{
    app::AppState,
    auth::{ReadNotifications, Scoped},
    extract::PathId,
    problem::{ApiError, Problem},
};

/// The caller's notifications: unread first, then newest first.
#[utoipa::path(
    get, path = "/notifications", tag = "inbox",
    params(
        ("limit" = Option<i64>, Query),
        ("cursor" = Option<String>, Query),
    ),
    responses((status = 200, description = "A page of notifications", body = NotificationPage)),
    security(("bearer" = []))
)]
pub async fn list_notifications(
    State(state): State<AppState>,
    user: Scoped<ReadNotifications>,
    uri: Uri,
) -> Result<Json<NotificationPage>, ApiError> {
    let Query(pairs) = Query::<Vec<(String, String)>>::try_from_uri(&uri)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))?;
    let query = parse_inbox_query(&pairs).map_err(ApiError::Validation)?;
    let mut items = store::list(
        &state.pool,
        user.user_id,
        query.limit.saturating_add(1),
        query.cursor,
    )
    .await?;
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|n| {
            InboxCursor {
                unread: n.read_at.is_none(),
                created_at: n.created_at,
                id: n.id,
            }
            .encode()
        })
    } else {
        None
    };
    Ok(Json(NotificationPage { items, next_cursor }))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(
    get, path = "/notifications/unread-count", tag = "inbox",
    responses((status = 200, description = "The unread count", body = UnreadCount)),
    security(("bearer" = []))
)]
pub async fn unread_count(
    State(state): State<AppState>,
    user: Scoped<ReadNotifications>,
) -> Result<Json<UnreadCount>, ApiError> {
    let unread = store::unread_count(&state.pool, user.user_id).await?;
    Ok(Json(UnreadCount { unread }))
}

/// Mark one notification read (idempotent). The caller's open streams receive a
/// `NotificationRead` entry with the new unread count.
#[utoipa::path(
    post, path = "/notifications/{id}/read", tag = "inbox",
    params(("id" = uuid::Uuid, Path)),
    responses(
        (status = 200, description = "Read (now or before)", body = NotificationResponse),
        (status = 404, description = "Unknown, or another user's notification", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn mark_read(
    State(state): State<AppState>,
    user: Scoped<ReadNotifications>,
    PathId(id): PathId,
) -> Result<Json<NotificationResponse>, ApiError> {
    store::mark_read(&state.pool, &state.feed.notifier, user.user_id, id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// Mark every notification of the caller read. The caller's open streams receive a
/// `NotificationRead` entry (when anything changed).
#[utoipa::path(
    post, path = "/notifications/read-all", tag = "inbox",
    responses((status = 200, description = "Every notification is read", body = ReadAllResponse)),
    security(("bearer" = []))
)]
pub async fn mark_all_read(
    State(state): State<AppState>,
    user: Scoped<ReadNotifications>,
) -> Result<Json<ReadAllResponse>, ApiError> {
    let marked = store::mark_all_read(&state.pool, &state.feed.notifier, user.user_id).await?;
    let unread = store::unread_count(&state.pool, user.user_id).await?;
    Ok(Json(ReadAllResponse { marked, unread }))
}
