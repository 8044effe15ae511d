//! Task and idempotency-key persistence (sqlx runtime queries; no
//! compile-time database needed). Writes take a `&mut PgConnection` so the
//! caller decides the transaction, and the outbox row joins the same one.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{types::Json, FromRow, PgConnection, PgExecutor, Postgres, QueryBuilder};
use taskflow_infra::outbox;
use taskflow_schemas::{Recurrence, ReminderSpec};
use uuid::Uuid;

use super::{
    model::{parse_priority, parse_status, priority_str, status_str, SeriesRef, Task, TaskFields},
    validate::{LikePattern, ListQuery},
};

#[derive(Debug, thiserror::Error)]
pub enum TaskStoreError {
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
    #[error("task {id} has an invalid stored {column}: {value:?}")]
    Corrupt {
        id: Uuid,
        column: &'static str,
        value: String,
    },
}

const TASK_COLUMNS: &str = "id, user_id, title, description, status, due_at, priority, tags, \
     recurrence, reminders, version, completed_at, created_at, updated_at, series_id, occurrence, \
     series_index";

#[derive(Debug, FromRow)]
struct TaskRow {
    id: Uuid,
    user_id: Uuid,
    title: String,
    description: Option<String>,
    status: String,
    due_at: Option<DateTime<Utc>>,
    priority: String,
    tags: Vec<String>,
    recurrence: Option<Json<Recurrence>>,
    reminders: Json<Vec<ReminderSpec>>,
    version: i64,
    completed_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    series_id: Option<Uuid>,
    occurrence: Option<DateTime<Utc>>,
    series_index: Option<i32>,
}

impl TryFrom<TaskRow> for Task {
    type Error = TaskStoreError;

    fn try_from(r: TaskRow) -> Result<Self, TaskStoreError> {
        let status = parse_status(&r.status).ok_or_else(|| TaskStoreError::Corrupt {
            id: r.id,
            column: "status",
            value: r.status.clone(),
        })?;
        let priority = parse_priority(&r.priority).ok_or_else(|| TaskStoreError::Corrupt {
            id: r.id,
            column: "priority",
            value: r.priority.clone(),
        })?;
        Ok(Task {
            id: r.id,
            user_id: r.user_id,
            fields: TaskFields {
                title: r.title,
                description: r.description,
                due_at: r.due_at,
                priority,
                tags: r.tags,
                recurrence: r.recurrence.map(|j| j.0),
                reminders: r.reminders.0,
            },
            series: match (r.series_id, r.occurrence, r.series_index) {
                (Some(id), Some(occurrence), Some(index)) => Some(SeriesRef {
                    id,
                    occurrence,
                    index,
                }),
                _ => None,
            },
            status,
            version: r.version,
            completed_at: r.completed_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Binds `$1`..`$12`, the columns INSERT and UPDATE share, in one order so
/// the two statements cannot drift apart.
fn bind_columns<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    t: &'q Task,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(t.id)
        .bind(t.user_id)
        .bind(&t.fields.title)
        .bind(&t.fields.description)
        .bind(status_str(t.status))
        .bind(t.fields.due_at)
        .bind(priority_str(t.fields.priority))
        .bind(&t.fields.tags)
        .bind(t.fields.recurrence.as_ref().map(Json))
        .bind(Json(&t.fields.reminders))
        .bind(t.version)
        .bind(t.completed_at)
}

/// Inserts `t`, the series it starts (when it has one: a created task is its series' first
/// instance) and the outbox rows of its events, as one statement: a create costs one
/// round trip to PostgreSQL, and is atomic whether or not the caller has opened a
/// transaction. The task's foreign key to its series holds because constraint checks run
/// when the whole statement has inserted, not per sub-statement.
pub async fn insert_task_with_events(
    conn: &mut PgConnection,
    t: &Task,
    topic: &str,
    events: &outbox::OutboxRows,
) -> Result<(), TaskStoreError> {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        format!(
            "WITH series_row AS ( \
                 INSERT INTO series (id, user_id, dtstart) \
                 SELECT $15, $2, $16 WHERE $15::uuid IS NOT NULL), \
             task_row AS ( \
                 INSERT INTO tasks ({TASK_COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)) \
             {}",
            outbox::insert_many_from(18)
        )
    });
    let query = bind_columns(sqlx::query(sql), t)
        .bind(t.created_at)
        .bind(t.updated_at)
        .bind(t.series.map(|s| s.id))
        .bind(t.series.map(|s| s.occurrence))
        .bind(t.series.map(|s| s.index));
    events.bind(query, topic).execute(conn).await?;
    Ok(())
}

/// A live task of `user_id`. Another user's task and a deleted task are both
/// simply absent, so callers answer 404 and never leak existence.
pub async fn get_task<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Task>, TaskStoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL"
    );
    let row: Option<TaskRow> = sqlx::query_as(&sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(ex)
        .await?;
    row.map(Task::try_from).transpose()
}

/// Like [`get_task`], and locks the row until the transaction ends so the
/// version check and the update cannot interleave with another writer.
///
/// `FOR NO KEY UPDATE`, not `FOR UPDATE`: the API never changes a task's id, and this
/// lock does not block the `FOR KEY SHARE` that a foreign key check takes. The recurrence
/// worker inserts the next instance (`previous_task_id` references the completed task)
/// while holding its series lock; with `FOR UPDATE` here, a request holding the task and
/// waiting for the series (PATCH of the rule, DELETE ?scope=series) would deadlock with it.
pub async fn get_task_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<Task>, TaskStoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks \
         WHERE id = $1 AND user_id = $2 AND deleted_at IS NULL FOR NO KEY UPDATE"
    );
    let row: Option<TaskRow> = sqlx::query_as(&sql)
        .bind(id)
        .bind(user_id)
        .fetch_optional(conn)
        .await?;
    row.map(Task::try_from).transpose()
}

/// Writes every mutable column of `t`. `expected_version` guards against a
/// writer that skipped the row lock; 0 rows means the caller lost a race.
pub async fn update_task(
    conn: &mut PgConnection,
    t: &Task,
    expected_version: i64,
) -> Result<bool, TaskStoreError> {
    let done = bind_columns(sqlx::query(
        "UPDATE tasks SET title = $3, description = $4, status = $5, due_at = $6, priority = $7, \
         tags = $8, recurrence = $9, reminders = $10, version = $11, completed_at = $12, \
         updated_at = $13, series_id = $15, occurrence = $16, series_index = $17 \
         WHERE id = $1 AND user_id = $2 AND version = $14 AND deleted_at IS NULL",
    ), t)
    .bind(t.updated_at)
    .bind(expected_version)
    .bind(t.series.map(|s| s.id))
    .bind(t.series.map(|s| s.occurrence))
    .bind(t.series.map(|s| s.index))
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

pub async fn soft_delete(
    conn: &mut PgConnection,
    t: &Task,
    expected_version: i64,
    deleted_at: DateTime<Utc>,
) -> Result<bool, TaskStoreError> {
    let done = sqlx::query(
        "UPDATE tasks SET deleted_at = $3, version = $4, updated_at = $3 \
         WHERE id = $1 AND user_id = $2 AND version = $5 AND deleted_at IS NULL",
    )
    .bind(t.id)
    .bind(t.user_id)
    .bind(deleted_at)
    .bind(t.version)
    .bind(expected_version)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A series row as the API needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, FromRow)]
pub struct SeriesRow {
    pub dtstart: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// Why a series ends (`series.end_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeriesEnd {
    /// `DELETE /tasks/{id}?scope=series`.
    Deleted,
    /// A PATCH set `recurrence` to null.
    RecurrenceRemoved,
}

impl SeriesEnd {
    fn as_str(self) -> &'static str {
        match self {
            SeriesEnd::Deleted => "deleted",
            SeriesEnd::RecurrenceRemoved => "recurrence_removed",
        }
    }
}

pub async fn insert_series(
    conn: &mut PgConnection,
    id: Uuid,
    user_id: Uuid,
    dtstart: DateTime<Utc>,
) -> Result<(), TaskStoreError> {
    sqlx::query("INSERT INTO series (id, user_id, dtstart) VALUES ($1, $2, $3)")
        .bind(id)
        .bind(user_id)
        .bind(dtstart)
        .execute(conn)
        .await?;
    Ok(())
}

pub async fn get_series<'e>(
    ex: impl PgExecutor<'e>,
    id: Uuid,
) -> Result<Option<SeriesRow>, TaskStoreError> {
    Ok(
        sqlx::query_as("SELECT dtstart, ended_at FROM series WHERE id = $1")
            .bind(id)
            .fetch_optional(ex)
            .await?,
    )
}

/// Locks the series row until the transaction ends: the recurrence worker takes the same
/// lock before it creates an instance, so ending a series and creating its next instance
/// never interleave.
pub async fn lock_series(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<SeriesRow>, TaskStoreError> {
    Ok(
        sqlx::query_as("SELECT dtstart, ended_at FROM series WHERE id = $1 FOR UPDATE")
            .bind(id)
            .fetch_optional(conn)
            .await?,
    )
}

pub async fn end_series(
    conn: &mut PgConnection,
    id: Uuid,
    reason: SeriesEnd,
    at: DateTime<Utc>,
) -> Result<(), TaskStoreError> {
    sqlx::query(
        "UPDATE series SET ended_at = $2, end_reason = $3 WHERE id = $1 AND ended_at IS NULL",
    )
    .bind(id)
    .bind(at)
    .bind(reason.as_str())
    .execute(conn)
    .await?;
    Ok(())
}

/// Re-anchors a series (a PATCH changed its rule): COUNT and the time of day count from here.
pub async fn reanchor_series(
    conn: &mut PgConnection,
    id: Uuid,
    dtstart: DateTime<Utc>,
) -> Result<(), TaskStoreError> {
    sqlx::query("UPDATE series SET dtstart = $2 WHERE id = $1")
        .bind(id)
        .bind(dtstart)
        .execute(conn)
        .await?;
    Ok(())
}

/// The other open, live instances of a series, locked, in id order (a fixed lock order).
pub async fn open_instances_for_update(
    conn: &mut PgConnection,
    user_id: Uuid,
    series_id: Uuid,
    except: Uuid,
) -> Result<Vec<Task>, TaskStoreError> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE series_id = $1 AND user_id = $2 AND id <> $3 \
         AND status = 'open' AND deleted_at IS NULL ORDER BY id FOR NO KEY UPDATE"
    );
    let rows: Vec<TaskRow> = sqlx::query_as(&sql)
        .bind(series_id)
        .bind(user_id)
        .bind(except)
        .fetch_all(conn)
        .await?;
    rows.into_iter().map(Task::try_from).collect()
}

/// One page in (created_at, id) order; fetches `limit + 1` rows so the
/// caller knows whether another page exists.
pub async fn list_tasks<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    q: &ListQuery,
) -> Result<Vec<Task>, TaskStoreError> {
    let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE deleted_at IS NULL AND user_id = "
    ));
    b.push_bind(user_id);
    if let Some(s) = q.status {
        b.push(" AND status = ").push_bind(status_str(s));
    }
    if !q.tags.is_empty() {
        b.push(" AND tags @> ").push_bind(q.tags.clone());
    }
    if let Some(p) = q.priority {
        b.push(" AND priority = ").push_bind(priority_str(p));
    }
    if let Some(id) = q.series_id {
        b.push(" AND series_id = ").push_bind(id);
    }
    if let Some(t) = q.due_after {
        b.push(" AND due_at > ").push_bind(t);
    }
    if let Some(t) = q.due_before {
        b.push(" AND due_at < ").push_bind(t);
    }
    if let Some(needle) = &q.q {
        let pattern = LikePattern::contains(needle).into_string();
        b.push(" AND (title ILIKE ")
            .push_bind(pattern.clone())
            .push(" ESCAPE '\\' OR description ILIKE ")
            .push_bind(pattern)
            .push(" ESCAPE '\\')");
    }
    if let Some(c) = q.cursor {
        b.push(" AND (created_at, id) > (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    b.push(" ORDER BY created_at, id LIMIT ")
        .push_bind(q.limit + 1);
    let rows: Vec<TaskRow> = b.build_query_as().fetch_all(ex).await?;
    rows.into_iter().map(Task::try_from).collect()
}

/// The stored outcome of a request made with an Idempotency-Key.
#[derive(Debug, Clone, FromRow)]
pub struct StoredResponse {
    pub request_hash: String,
    pub response_status: i16,
    pub response_body: Json<serde_json::Value>,
}

/// Claims `(user_id, key)` inside the caller's transaction, with a
/// placeholder answer that [`record_idempotent_response`] fills in before
/// the commit. Returns false if a live claim exists. A claim older than
/// `ttl` is expired: it is taken over as if the key were new. When another
/// transaction holds the key uncommitted, PostgreSQL blocks here until that
/// one commits (false) or aborts (true), which is what serialises two
/// concurrent retries.
pub async fn claim_idempotency_key(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    request_hash: &str,
    ttl: Duration,
) -> Result<bool, TaskStoreError> {
    let done = sqlx::query(
        "INSERT INTO idempotency_keys (user_id, key, request_hash, response_status, response_body) \
         VALUES ($1, $2, $3, 0, 'null') \
         ON CONFLICT (user_id, key) DO UPDATE SET request_hash = EXCLUDED.request_hash, \
             response_status = 0, response_body = 'null', created_at = now() \
         WHERE idempotency_keys.created_at < now() - make_interval(secs => $4)",
    )
    .bind(user_id)
    .bind(key)
    .bind(request_hash)
    .bind(ttl.as_secs_f64())
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the answer of the request that claimed `(user_id, key)`, in the
/// same transaction as its effect.
pub async fn record_idempotent_response(
    conn: &mut PgConnection,
    user_id: Uuid,
    key: &str,
    status: i16,
    body: &serde_json::Value,
) -> Result<(), TaskStoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = $3, response_body = $4 \
         WHERE user_id = $1 AND key = $2",
    )
    .bind(user_id)
    .bind(key)
    .bind(status)
    .bind(Json(body))
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn get_idempotent_response<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    key: &str,
) -> Result<Option<StoredResponse>, TaskStoreError> {
    Ok(sqlx::query_as(
        "SELECT request_hash, response_status, response_body FROM idempotency_keys \
         WHERE user_id = $1 AND key = $2",
    )
    .bind(user_id)
    .bind(key)
    .fetch_optional(ex)
    .await?)
}

/// Deletes idempotency keys older than `ttl`, in batches so no statement
/// holds many row locks; returns how many were deleted.
pub async fn purge_expired_idempotency_keys(
    pool: &sqlx::PgPool,
    ttl: Duration,
) -> Result<u64, sqlx::Error> {
    const BATCH: i64 = 5_000;
    let mut total = 0;
    loop {
        let done = sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN ( \
                 SELECT ctid FROM idempotency_keys \
                 WHERE created_at < now() - make_interval(secs => $1) LIMIT $2)",
        )
        .bind(ttl.as_secs_f64())
        .bind(BATCH)
        .execute(pool)
        .await?;
        total += done.rows_affected();
        if done.rows_affected() < BATCH as u64 {
            return Ok(total);
        }
    }
}
