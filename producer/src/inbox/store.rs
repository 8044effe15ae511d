//! Inbox persistence, and the feed entry each read-state change appends.
//!
//! # The unread count in a `NotificationRead` entry
//!
//! The count is taken after locking the user's feed head (the lock every feed append of the
//! user takes, the notifier's included) and in the transaction that appends the entry. So
//! the entry with the highest seq carries a count that includes every read-state change and
//! every new notification whose entry has a lower seq; a change still in flight gets its
//! own, later entry. A client that applies the entries in order ends with the right badge.

use chrono::Utc;
use sqlx::{PgConnection, PgExecutor, PgPool};
use taskflow_infra::feed::{self, FeedEntry, FeedNotifier};
use uuid::Uuid;

use super::model::{read_entry_data, InboxCursor, NotificationResponse, NOTIFICATION_READ};

const COLUMNS: &str = "id, kind, task_id, title, body, data, created_at, read_at";

/// Up to `limit` notifications of `user_id` after `cursor`, unread first, then newest first.
pub async fn list<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    limit: i64,
    cursor: Option<InboxCursor>,
) -> Result<Vec<NotificationResponse>, sqlx::Error> {
    // The row comparison follows the index `notifications_inbox` (false sorts before true,
    // so "after" in the descending order is "less than").
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications
         WHERE user_id = $1
           AND ($2::bool IS NULL OR ((read_at IS NULL), created_at, id) < ($2, $3, $4))
         ORDER BY (read_at IS NULL) DESC, created_at DESC, id DESC
         LIMIT $5"
    ))
    .bind(user_id)
    .bind(cursor.map(|c| c.unread))
    .bind(cursor.map(|c| c.created_at))
    .bind(cursor.map(|c| c.id))
    .bind(limit)
    .fetch_all(ex)
    .await
}

pub async fn unread_count<'e>(ex: impl PgExecutor<'e>, user_id: Uuid) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT count(*) FROM notifications WHERE user_id = $1 AND read_at IS NULL")
        .bind(user_id)
        .fetch_one(ex)
        .await
}

/// Marks notification `id` of `user_id` read. `None`: no such notification of this user.
/// Already read: returned as it is, nothing written.
pub async fn mark_read(
    pool: &PgPool,
    notifier: &FeedNotifier,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<NotificationResponse>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let marked: Option<NotificationResponse> = sqlx::query_as(&format!(
        "UPDATE notifications SET read_at = clock_timestamp()
         WHERE id = $1 AND user_id = $2 AND read_at IS NULL
         RETURNING {COLUMNS}"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(marked) = marked else {
        tx.rollback().await?;
        return sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM notifications WHERE id = $1 AND user_id = $2"
        ))
        .bind(id)
        .bind(user_id)
        .fetch_optional(pool)
        .await;
    };
    append_read(&mut tx, user_id, &[marked.id], marked.task_id).await?;
    tx.commit().await?;
    notifier.notify(user_id);
    Ok(Some(marked))
}

/// Marks every unread notification of `user_id` read: how many it marked (0: nothing
/// written).
pub async fn mark_all_read(
    pool: &PgPool,
    notifier: &FeedNotifier,
    user_id: Uuid,
) -> Result<i64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut ids: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE notifications SET read_at = clock_timestamp()
         WHERE user_id = $1 AND read_at IS NULL RETURNING id",
    )
    .bind(user_id)
    .fetch_all(&mut *tx)
    .await?;
    if ids.is_empty() {
        tx.rollback().await?;
        return Ok(0);
    }
    ids.sort_unstable();
    append_read(&mut tx, user_id, &ids, None).await?;
    tx.commit().await?;
    notifier.notify(user_id);
    Ok(i64::try_from(ids.len()).unwrap_or(i64::MAX))
}

/// Locks the user's feed head, counts the unread notifications under that lock and appends
/// the `NotificationRead` entry (see the module docs).
async fn append_read(
    conn: &mut PgConnection,
    user_id: Uuid,
    ids: &[Uuid],
    task_id: Option<Uuid>,
) -> Result<(), sqlx::Error> {
    // Taking the row lock without moving the head (feed::append moves it).
    sqlx::query(
        "INSERT INTO feed_heads (user_id, last_seq) VALUES ($1, 0)
         ON CONFLICT (user_id) DO UPDATE SET last_seq = feed_heads.last_seq",
    )
    .bind(user_id)
    .execute(&mut *conn)
    .await?;
    let unread = unread_count(&mut *conn, user_id).await?;
    let entry = FeedEntry {
        user_id,
        event_id: Uuid::now_v7(),
        kind: NOTIFICATION_READ.to_owned(),
        task_id,
        occurred_at: Utc::now(),
        data: read_entry_data(ids, unread),
    };
    feed::append(conn, &entry).await?;
    Ok(())
}
