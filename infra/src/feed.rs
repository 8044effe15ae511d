//! The user's feed: one ordered log per user of everything that changed for them (task events,
//! reminders, read-state changes), written by the notifier and the API, tailed by the API's
//! live streams.
//!
//! # Order without a late-commit gap
//!
//! Tailing by "seq greater than the last one sent" is only safe if rows become visible in seq
//! order. A global sequence does not give that (values commit out of order); here a row's seq
//! is the user's `feed_heads.last_seq` after incrementing it, and the writer's transaction
//! holds that row locked until it commits. So for one user, seq N+1 cannot be assigned before
//! N has committed (or rolled back), and a reader that has seen N and then reads `seq > N`
//! misses nothing. Seqs may have gaps (a rolled-back or duplicate write still took a number).
//!
//! # Waking readers
//!
//! After its commit a writer calls [`FeedNotifier::notify`] with the user id; a background
//! task sends `NOTIFY taskflow_feed, '<user id>'` outside any write transaction (a `NOTIFY`
//! inside one would serialise every committing writer), batching the users of the moment
//! into one statement. Readers treat a notification as "look again for this user" and, when
//! their `LISTEN` connection was lost, look again for everyone.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgExecutor, PgPool};
use tokio::sync::mpsc;
use uuid::Uuid;

/// The channel feed writers notify on; the payload is the user id.
pub const FEED_CHANNEL: &str = "taskflow_feed";

/// One entry to append.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedEntry {
    pub user_id: Uuid,
    /// Dedupe key: one row per (user, event).
    pub event_id: Uuid,
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    /// What a stream sends (JSON).
    pub data: serde_json::Value,
}

/// A stored entry.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct FeedRow {
    pub seq: i64,
    pub event_id: Uuid,
    pub kind: String,
    pub task_id: Option<Uuid>,
    pub occurred_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// Appends `entry` in the caller's transaction; its seq, or `None` if the user's feed already
/// has this event (a redelivery). The user's head stays locked until the caller commits:
/// commit promptly, and call [`FeedNotifier::notify`] after.
pub async fn append(
    conn: &mut PgConnection,
    entry: &FeedEntry,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "WITH head AS ( \
             INSERT INTO feed_heads (user_id, last_seq) VALUES ($1, 1) \
             ON CONFLICT (user_id) DO UPDATE SET last_seq = feed_heads.last_seq + 1 \
             RETURNING last_seq) \
         INSERT INTO feed (user_id, seq, event_id, kind, task_id, occurred_at, data) \
         SELECT $1, head.last_seq, $2, $3, $4, $5, $6 FROM head \
         ON CONFLICT (user_id, event_id) DO NOTHING \
         RETURNING seq",
    )
    .bind(entry.user_id)
    .bind(entry.event_id)
    .bind(&entry.kind)
    .bind(entry.task_id)
    .bind(entry.occurred_at)
    .bind(&entry.data)
    .fetch_optional(conn)
    .await
}

/// Up to `limit` entries of `user_id` after `after`, in seq order.
pub async fn read_after<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
    after: i64,
    limit: i64,
) -> Result<Vec<FeedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT seq, event_id, kind, task_id, occurred_at, data FROM feed \
         WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
    )
    .bind(user_id)
    .bind(after)
    .bind(limit)
    .fetch_all(executor)
    .await
}

/// Where a reader may resume: the user's last seq, and the highest pruned seq (a reader
/// that last saw a seq below it has missed entries that are gone, and must resync).
/// `(0, 0)` for a user with no feed yet.
pub async fn head<'e>(
    executor: impl PgExecutor<'e>,
    user_id: Uuid,
) -> Result<(i64, i64), sqlx::Error> {
    Ok(
        sqlx::query_as("SELECT last_seq, pruned_through FROM feed_heads WHERE user_id = $1")
            .bind(user_id)
            .fetch_optional(executor)
            .await?
            .unwrap_or((0, 0)),
    )
}

/// Deletes entries recorded before `before` and records, per user, the highest seq deleted
/// (see [`head`]). Returns the number of rows deleted.
pub async fn prune(pool: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let deleted: Option<i64> = sqlx::query_scalar(
        "WITH gone AS (DELETE FROM feed WHERE recorded_at < $1 RETURNING user_id, seq), \
              per_user AS (SELECT user_id, max(seq) AS seq, count(*) AS n FROM gone GROUP BY user_id), \
              moved AS (UPDATE feed_heads h SET pruned_through = greatest(h.pruned_through, p.seq) \
                        FROM per_user p WHERE h.user_id = p.user_id) \
         SELECT sum(n)::bigint FROM per_user",
    )
    .bind(before)
    .fetch_one(pool)
    .await?;
    Ok(deleted.unwrap_or(0).max(0) as u64)
}

/// Sends `NOTIFY taskflow_feed, '<user>'` after commits, outside any write transaction.
/// Cheap to clone; the sending task ends when the last clone is dropped.
#[derive(Debug, Clone)]
pub struct FeedNotifier {
    tx: mpsc::UnboundedSender<Uuid>,
}

impl FeedNotifier {
    /// Spawns the sending task. Must be called inside a Tokio runtime.
    pub fn spawn(pool: PgPool) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(send_notifies(pool, rx));
        Self { tx }
    }

    /// Call after committing a transaction that appended to `user_id`'s feed.
    pub fn notify(&self, user_id: Uuid) {
        // The receiver lives as long as any sender: a send can only fail at shutdown.
        let _ = self.tx.send(user_id);
    }
}

async fn send_notifies(pool: PgPool, mut rx: mpsc::UnboundedReceiver<Uuid>) {
    let mut users: Vec<String> = Vec::new();
    while let Some(first) = rx.recv().await {
        users.clear();
        users.push(first.hyphenated().to_string());
        // Everything queued meanwhile goes in the same statement, each user once.
        while let Ok(u) = rx.try_recv() {
            let u = u.hyphenated().to_string();
            if !users.contains(&u) {
                users.push(u);
            }
        }
        if let Err(e) = sqlx::query("SELECT pg_notify($1, u) FROM unnest($2::text[]) AS u")
            .bind(FEED_CHANNEL)
            .bind(&users)
            .execute(&pool)
            .await
        {
            // Readers also look again when their listener reconnects; a lost wake-up delays.
            tracing::debug!(error = %e, users = users.len(), "feed NOTIFY not sent");
        }
    }
}
