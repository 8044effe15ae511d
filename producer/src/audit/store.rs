//! Reads of `audit_log` (sqlx runtime queries). The table is append-only
//! and written by the audit worker; the API only selects.
//!
//! # The feed's order: a position that is final when handed out
//!
//! The audit worker inserts rows asynchronously, in whatever order events
//! arrive, so `occurred_at` order is not arrival order: a cursor over
//! `occurred_at` skips every row that arrives after a page has passed its
//! instant. `GET /audit` therefore pages by insertion position instead.
//!
//! A plain sequence would not do: sequence values are taken before commit,
//! so a row holding a lower value can become visible after a reader has
//! already passed it. Each row records the id of the transaction that
//! inserted it (`insert_xid`, xid8, assigned by a column default the service
//! role cannot override) and a sequence value (`seq`). A page lists only rows
//! whose `insert_xid` is below the horizon
//! `pg_snapshot_xmin(pg_current_snapshot())`, the oldest transaction still
//! running when the query's snapshot was taken, in (`insert_xid`, `seq`)
//! order. Every transaction below the horizon has ended, so that part of the
//! log can no longer change; a transaction still running or not yet started
//! has an xid at or above the horizon, so a row it commits later sorts after
//! every position handed out so far. Rows of one transaction become visible
//! together, so a page may end between two of them. (Chosen over serialising
//! inserts with a lock, which would make commit order the sequence order at
//! the price of one insert at a time.)
//!
//! The price: a row is listed only once every transaction older than its own
//! has ended, cluster-wide, so one long-running transaction anywhere delays
//! the feed (it never loses a row); `idle_in_transaction_session_timeout`
//! bounds that. xid8 values belong to one PostgreSQL cluster: see
//! `docs/operations.md` for restores. The per-task history reads no cursor
//! and uses no horizon.

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{FromRow, PgExecutor, Postgres, QueryBuilder};
use uuid::Uuid;

use super::{
    model::AuditRecord,
    query::{AuditCursor, AuditQuery},
};

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

#[derive(Debug, FromRow)]
struct FeedRow {
    #[sqlx(flatten)]
    row: AuditRow,
    /// xid8 has no sqlx type: read as text.
    insert_xid: String,
    seq: i64,
}

/// One page (at most `q.limit` rows) of the caller's events after `q.cursor`
/// in insertion order, each with its position (see the module docs).
pub async fn list_events<'e>(
    ex: impl PgExecutor<'e>,
    user_id: Uuid,
    q: &AuditQuery,
) -> Result<Vec<(AuditCursor, AuditRecord)>, sqlx::Error> {
    let mut b: QueryBuilder<'_, Postgres> = QueryBuilder::new(format!(
        "SELECT {COLUMNS}, a.insert_xid::text AS insert_xid, a.seq FROM audit_log a \
         WHERE a.insert_xid < (SELECT pg_snapshot_xmin(pg_current_snapshot())) \
           AND a.user_id = "
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
        b.push(" AND (a.insert_xid, a.seq) > (")
            .push_bind(c.insert_xid.to_string())
            .push("::xid8, ")
            .push_bind(c.seq)
            .push(")");
    }
    b.push(" ORDER BY a.insert_xid, a.seq LIMIT ")
        .push_bind(q.limit);
    let rows: Vec<FeedRow> = b.build_query_as().fetch_all(ex).await?;
    rows.into_iter()
        .map(|r| {
            let insert_xid = r.insert_xid.parse().map_err(|e| {
                sqlx::Error::Decode(format!("insert_xid {:?}: {e}", r.insert_xid).into())
            })?;
            let position = AuditCursor {
                insert_xid,
                seq: r.seq,
            };
            Ok((position, AuditRecord::from(r.row)))
        })
        .collect()
}
