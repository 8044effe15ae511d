//! Reads of `audit_log` (sqlx runtime queries). The table is append-only
//! and owned by the audit worker; the API only selects.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{model::AuditRecord, query::AuditQuery};

/// `previous_task` is only fetched for reopens (the CASE short-circuits the
/// subquery for every other row): see [`AuditRecord::previous_task`].
const COLUMNS: &str = "a.event_id, a.event_type, a.task_id, a.user_id, a.occurred_at, a.version, \
     a.correlation_id, a.causation_id, a.payload, \
     CASE WHEN a.event_type = 'TaskReopened' THEN ( \
         SELECT p.payload -> 'event' -> 'task' FROM audit_log p \
         WHERE p.task_id = a.task_id AND p.user_id = a.user_id AND p.version < a.version \
           AND p.event_type <> 'ReminderDue' \
         ORDER BY p.version DESC, p.occurred_at DESC LIMIT 1) END AS previous_task";

#[derive(Debug, FromRow)]
struct AuditRow {
    event_id: Uuid,
    event_type: String,
    task_id: Uuid,
    user_id: Uuid,
    occurred_at: DateTime<Utc>,
    version: i64,
    correlation_id: String,
    causation_id: Option<String>,
    payload: Value,
    previous_task: Option<Value>,
}

impl From<AuditRow> for AuditRecord {
    fn from(r: AuditRow) -> Self {
        Self {
            event_id: r.event_id,
            event_type: r.event_type,
            task_id: r.task_id,
            user_id: r.user_id,
            occurred_at: r.occurred_at,
            version: r.version,
            correlation_id: r.correlation_id,
            causation_id: r.causation_id,
            payload: r.payload,
            previous_task: r.previous_task,
        }
    }
}

/// Every audited event of one task of `user_id`, oldest first.
pub async fn task_history<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    task_id: Uuid,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_log a WHERE a.task_id = $1 AND a.user_id = $2 \
         ORDER BY a.version, a.occurred_at, a.event_id"
    );
    let rows: Vec<AuditRow> = sqlx::query_as(&sql)
        .bind(task_id)
        .bind(user_id)
        .fetch_all(ex)
        .await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}

/// Whether `user_id` ever owned the task, deleted or not (a deleted task
/// keeps its row, so its history stays readable).
pub async fn task_ever_owned<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    task_id: Uuid,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tasks WHERE id = $1 AND user_id = $2)")
        .bind(task_id)
        .bind(user_id)
        .fetch_one(ex)
        .await
}

/// One page of the caller's events in (occurred_at, event_id) order;
/// fetches `limit + 1` rows so the caller knows whether another page exists.
pub async fn list_events<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    q: &AuditQuery,
) -> Result<Vec<AuditRecord>, sqlx::Error> {
    let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS} FROM audit_log a WHERE a.user_id = "
    ));
    b.push_bind(user_id);
    // Plain range predicates on the partition key, so PostgreSQL prunes the
    // monthly partitions outside [from, to) and before the cursor.
    if let Some(from) = q.from {
        b.push(" AND a.occurred_at >= ").push_bind(from);
    }
    if let Some(to) = q.to {
        b.push(" AND a.occurred_at < ").push_bind(to);
    }
    if !q.types.is_empty() {
        let names: Vec<String> = q.types.iter().map(|t| t.as_str().to_owned()).collect();
        b.push(" AND a.event_type = ANY(")
            .push_bind(names)
            .push(")");
    }
    if let Some(c) = q.cursor {
        // The row comparison alone does not prune partitions; the extra
        // `occurred_at >=` (implied by it) does.
        b.push(" AND a.occurred_at >= ")
            .push_bind(c.created_at)
            .push(" AND (a.occurred_at, a.event_id) > (")
            .push_bind(c.created_at)
            .push(", ")
            .push_bind(c.id)
            .push(")");
    }
    b.push(" ORDER BY a.occurred_at, a.event_id LIMIT ")
        .push_bind(q.limit + 1);
    let rows: Vec<AuditRow> = b.build_query_as().fetch_all(ex).await?;
    Ok(rows.into_iter().map(AuditRecord::from).collect())
}
