//! What an operator does with parked rows (`taskflow-admin outbox list|retry`).
//!
//! A parked row is the head of its task: the task's later events wait behind
//! it. Retrying makes it an ordinary head again (attempts reset), so the next
//! relay pass tries it first, and its task's later rows follow in order.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use super::NOTIFY_CHANNEL;

#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct ParkedRow {
    pub id: i64,
    pub event_id: uuid::Uuid,
    pub topic: String,
    pub partition_key: String,
    pub event_type: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub parked_at: DateTime<Utc>,
    /// Rows of the same task waiting behind this one.
    pub waiting_behind: i64,
}

/// Parked rows, oldest first.
pub async fn list_parked(pool: &PgPool) -> Result<Vec<ParkedRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT p.id, p.event_id, p.topic, p.partition_key, p.event_type, p.attempts,
                p.last_error, p.created_at, p.parked_at,
                (SELECT count(*) FROM outbox w
                 WHERE w.topic = p.topic AND w.partition_key = p.partition_key
                   AND w.id > p.id) AS waiting_behind
         FROM outbox p
         WHERE p.parked_at IS NOT NULL
         ORDER BY p.id",
    )
    .fetch_all(pool)
    .await
}

/// Unparks the given rows (all parked rows when `ids` is `None`) and wakes
/// the relay. Returns how many rows were unparked.
pub async fn retry_parked(pool: &PgPool, ids: Option<&[i64]>) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE outbox SET parked_at = NULL, not_before = NULL, attempts = 0
         WHERE parked_at IS NOT NULL AND ($1::bigint[] IS NULL OR id = ANY($1))",
    )
    .bind(ids)
    .execute(pool)
    .await?
    .rows_affected();
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(pool)
        .await?;
    Ok(done)
}
