//! The reminders worker's two transactions: applying a task event to the task's timers, and
//! firing a batch of due timers. The reasoning is in the parent module's header.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use taskflow_infra::outbox;
use taskflow_schemas::{Event, EventMetadata, ReminderDue, ReminderSpec, TaskStatus};
use uuid::Uuid;

use super::plan::{
    decide, reconcile, reminder_key, Change, CurrentTask, Decision, TaskView, Timer, TimerState,
};
use crate::db::{classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
#[error("reminder store ({class:?}): {source}")]
pub struct ReminderStoreError {
    pub class: ErrorClass,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for ReminderStoreError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            class: classify(&source),
            source,
        }
    }
}

/// What applying one task event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The worker had already applied this version or a later one: nothing changed.
    Stale,
    Applied {
        /// Timers set or removed.
        changes: usize,
        /// The earliest instant a timer was armed for, if any (the firing loop may need to
        /// wake earlier than it planned).
        earliest_armed: Option<DateTime<Utc>>,
    },
}

/// What one firing pass did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fired {
    /// Due timers looked at (locked) in this pass.
    pub seen: usize,
    /// The scheduled instant of each timer fired.
    pub fired: Vec<DateTime<Utc>>,
    pub cancelled: usize,
    pub removed: usize,
    pub moved: usize,
}

pub struct ReminderStore {
    pool: PgPool,
    topic: String,
}

/// A due timer with the task row as stored now (`task` is `None` without a row).
struct DueRow {
    task_id: Uuid,
    timer: Timer,
    user_id: Uuid,
    title: String,
    due_at: Option<DateTime<Utc>>,
    task_version: i64,
    armed_by: Option<Uuid>,
    correlation_id: String,
    task: Option<CurrentTask>,
}

type DueTuple = (
    Uuid,
    Uuid,
    DateTime<Utc>,
    Uuid,
    String,
    Option<DateTime<Utc>>,
    i64,
    Option<Uuid>,
    String,
    // The task row: status, deleted, due_at, title, reminders, updated_at, version.
    Option<String>,
    Option<bool>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<serde_json::Value>,
    Option<DateTime<Utc>>,
    Option<i64>,
);

fn due_row(t: DueTuple) -> DueRow {
    let (task_id, reminder_id, fire_at, user_id, title, due_at, task_version, armed_by, corr) =
        (t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8);
    let task = match (t.9, t.10, t.12, t.14, t.15) {
        (Some(status), Some(deleted), Some(title), Some(updated_at), Some(version)) => {
            // The API writes this JSON; if a row ever holds something else, the events the
            // worker applied are the better guide than a wedged agenda.
            let reminders = match t.13.map(serde_json::from_value::<Vec<ReminderSpec>>) {
                None => Ok(None),
                Some(Ok(r)) => Ok(Some(r)),
                Some(Err(e)) => Err(e),
            };
            match reminders {
                Ok(reminders) => Some(CurrentTask {
                    status: if status == "completed" {
                        TaskStatus::Completed
                    } else {
                        TaskStatus::Open
                    },
                    deleted,
                    due_at: t.11,
                    title,
                    reminders,
                    updated_at,
                    version,
                }),
                Err(e) => {
                    tracing::warn!(task = %task_id, error = %e,
                        "task row's reminders do not parse: firing from the applied events");
                    None
                }
            }
        }
        _ => None,
    };
    DueRow {
        task_id,
        timer: Timer {
            reminder_id,
            fire_at,
            state: TimerState::Pending,
        },
        user_id,
        title,
        due_at,
        task_version,
        armed_by,
        correlation_id: corr,
        task,
    }
}

impl ReminderStore {
    pub fn new(pool: PgPool, topic: String) -> Self {
        Self { pool, topic }
    }

    /// Applies the task state after one event to the task's timers, in one transaction, if
    /// its version is newer than the last one applied.
    pub async fn apply(&self, task: &TaskView<'_>) -> Result<Applied, ReminderStoreError> {
        let mut tx = self.pool.begin().await?;
        // Takes the task's row lock too, so two replicas applying events of one task (during
        // a rebalance) serialise here and the version check sees the other's commit.
        let newer: Option<Uuid> = sqlx::query_scalar(
            "INSERT INTO reminder_tasks (task_id, user_id, version) VALUES ($1, $2, $3) \
             ON CONFLICT (task_id) DO UPDATE SET version = EXCLUDED.version, applied_at = now() \
             WHERE reminder_tasks.version < EXCLUDED.version \
             RETURNING task_id",
        )
        .bind(task.task_id)
        .bind(task.user_id)
        .bind(task.version)
        .fetch_optional(&mut *tx)
        .await?;
        if newer.is_none() {
            tx.rollback().await?;
            return Ok(Applied::Stale);
        }
        let rows: Vec<(Uuid, DateTime<Utc>, String)> = sqlx::query_as(
            "SELECT reminder_id, fire_at, state FROM reminder_timers \
             WHERE task_id = $1 FOR UPDATE",
        )
        .bind(task.task_id)
        .fetch_all(&mut *tx)
        .await?;
        let existing: Vec<Timer> = rows
            .into_iter()
            .map(|(reminder_id, fire_at, state)| Timer {
                reminder_id,
                fire_at,
                // The CHECK constraint admits only the four states.
                state: TimerState::parse(&state).unwrap_or(TimerState::Expired),
            })
            .collect();
        let changes = reconcile(&existing, task);
        let mut earliest_armed: Option<DateTime<Utc>> = None;
        for change in &changes {
            match change {
                Change::Set(t) => {
                    set_timer(&mut tx, task, t).await?;
                    if t.state == TimerState::Pending {
                        earliest_armed =
                            Some(earliest_armed.map_or(t.fire_at, |e| e.min(t.fire_at)));
                    }
                }
                Change::Remove(id) => {
                    sqlx::query(
                        "DELETE FROM reminder_timers WHERE task_id = $1 AND reminder_id = $2",
                    )
                    .bind(task.task_id)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        if !existing.is_empty() {
            // What ReminderDue repeats follows the task even when no timer moved.
            sqlx::query(
                "UPDATE reminder_timers SET title = $2, due_at = $3, task_version = $4 \
                 WHERE task_id = $1",
            )
            .bind(task.task_id)
            .bind(task.title)
            .bind(task.due_at)
            .bind(task.version)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Applied::Applied {
            changes: changes.len(),
            earliest_armed,
        })
    }

    /// The earliest pending timer, if any.
    pub async fn next_due(&self) -> Result<Option<DateTime<Utc>>, ReminderStoreError> {
        Ok(sqlx::query_scalar(
            "SELECT fire_at FROM reminder_timers WHERE state = 'pending' \
             ORDER BY fire_at LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Pending timers (the gauge).
    pub async fn pending(&self) -> Result<i64, ReminderStoreError> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM reminder_timers WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    /// Fires up to `limit` timers due at `now`, oldest first, in one transaction: each is
    /// checked against its task as stored now ([`decide`]); a fired one gets its
    /// `ReminderDue` outbox row and is marked fired in the same transaction. Timers another
    /// replica is firing are skipped (`SKIP LOCKED`), so replicas split the work and none
    /// fires a timer twice.
    pub async fn fire_due(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Fired, ReminderStoreError> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<DueTuple> = sqlx::query_as(
            "SELECT t.task_id, t.reminder_id, t.fire_at, t.user_id, t.title, t.due_at, \
                    t.task_version, t.armed_by, t.correlation_id, \
                    k.status, k.deleted_at IS NOT NULL, k.due_at, k.title, \
                    CASE WHEN k.version <> t.task_version THEN k.reminders END, \
                    k.updated_at, k.version \
             FROM reminder_timers t LEFT JOIN tasks k ON k.id = t.task_id \
             WHERE t.state = 'pending' AND t.fire_at <= $1 \
             ORDER BY t.fire_at \
             LIMIT $2 \
             FOR UPDATE OF t SKIP LOCKED",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Fired {
            seen: rows.len(),
            ..Fired::default()
        };
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(out);
        }
        let mut fire = Keys::default();
        let mut fire_events = Vec::new();
        let mut cancel = Keys::default();
        let mut remove = Keys::default();
        let mut moved = Keys::default();
        let mut moved_to: Vec<DateTime<Utc>> = Vec::new();
        let mut moved_state: Vec<&'static str> = Vec::new();
        for row in rows.into_iter().map(due_row) {
            match decide(&row.timer, row.task.as_ref()) {
                Decision::Fire => {
                    let event = reminder_due(&row, now);
                    fire.push(row.task_id, row.timer.reminder_id);
                    fire_events.push(event);
                    out.fired.push(row.timer.fire_at);
                }
                Decision::Cancel => cancel.push(row.task_id, row.timer.reminder_id),
                Decision::Remove => remove.push(row.task_id, row.timer.reminder_id),
                Decision::Move { fire_at, state } => {
                    moved.push(row.task_id, row.timer.reminder_id);
                    moved_to.push(fire_at);
                    moved_state.push(state.as_str());
                }
            }
        }
        if !fire_events.is_empty() {
            let ids: Vec<Uuid> = fire_events.iter().map(|e| e.metadata().event_id).collect();
            sqlx::query(
                "UPDATE reminder_timers t SET state = 'fired', fired_at = $3, fired_event = u.ev \
                 FROM UNNEST($1::uuid[], $2::uuid[], $4::uuid[]) AS u(task_id, reminder_id, ev) \
                 WHERE t.task_id = u.task_id AND t.reminder_id = u.reminder_id",
            )
            .bind(&fire.tasks)
            .bind(&fire.reminders)
            .bind(now)
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
            outbox::enqueue_many(&mut tx, &self.topic, &fire_events).await?;
        }
        if !cancel.tasks.is_empty() {
            out.cancelled = set_state(&mut tx, &cancel, "cancelled").await?;
        }
        if !remove.tasks.is_empty() {
            out.removed = sqlx::query(
                "DELETE FROM reminder_timers t \
                 USING UNNEST($1::uuid[], $2::uuid[]) AS u(task_id, reminder_id) \
                 WHERE t.task_id = u.task_id AND t.reminder_id = u.reminder_id",
            )
            .bind(&remove.tasks)
            .bind(&remove.reminders)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        if !moved.tasks.is_empty() {
            out.moved = sqlx::query(
                "UPDATE reminder_timers t SET fire_at = u.fire_at, state = u.state \
                 FROM UNNEST($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[]) \
                     AS u(task_id, reminder_id, fire_at, state) \
                 WHERE t.task_id = u.task_id AND t.reminder_id = u.reminder_id",
            )
            .bind(&moved.tasks)
            .bind(&moved.reminders)
            .bind(&moved_to)
            .bind(&moved_state)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        tx.commit().await?;
        Ok(out)
    }
}

/// (task, reminder) pairs, as the two arrays `UNNEST` takes.
#[derive(Default)]
struct Keys {
    tasks: Vec<Uuid>,
    reminders: Vec<Uuid>,
}

impl Keys {
    fn push(&mut self, task: Uuid, reminder: Uuid) {
        self.tasks.push(task);
        self.reminders.push(reminder);
    }
}

async fn set_state(
    conn: &mut PgConnection,
    keys: &Keys,
    state: &str,
) -> Result<usize, sqlx::Error> {
    Ok(sqlx::query(
        "UPDATE reminder_timers t SET state = $3 \
         FROM UNNEST($1::uuid[], $2::uuid[]) AS u(task_id, reminder_id) \
         WHERE t.task_id = u.task_id AND t.reminder_id = u.reminder_id",
    )
    .bind(&keys.tasks)
    .bind(&keys.reminders)
    .bind(state)
    .execute(conn)
    .await?
    .rows_affected() as usize)
}

async fn set_timer(
    conn: &mut PgConnection,
    task: &TaskView<'_>,
    t: &Timer,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO reminder_timers (task_id, reminder_id, user_id, fire_at, state, \
             task_version, title, due_at, armed_by, correlation_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (task_id, reminder_id) DO UPDATE SET fire_at = EXCLUDED.fire_at, \
             state = EXCLUDED.state, task_version = EXCLUDED.task_version, \
             title = EXCLUDED.title, due_at = EXCLUDED.due_at, armed_by = EXCLUDED.armed_by, \
             correlation_id = EXCLUDED.correlation_id",
    )
    .bind(task.task_id)
    .bind(t.reminder_id)
    .bind(task.user_id)
    .bind(t.fire_at)
    .bind(t.state.as_str())
    .bind(task.version)
    .bind(task.title)
    .bind(task.due_at)
    .bind(task.event_id)
    .bind(task.correlation_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// The event of one firing. Title, due date and version come from the task as stored when
/// there is a row (the freshest), else from the events applied.
fn reminder_due(row: &DueRow, now: DateTime<Utc>) -> Event {
    let key = reminder_key(row.timer.reminder_id, row.timer.fire_at);
    let (title, due_at, version) = match &row.task {
        Some(t) => (t.title.clone(), t.due_at, t.version),
        None => (row.title.clone(), row.due_at, row.task_version),
    };
    Event::ReminderDue(ReminderDue {
        metadata: EventMetadata {
            event_id: Uuid::now_v7(),
            occurred_at: now,
            user_id: row.user_id,
            task_id: row.task_id,
            version,
            correlation_id: if row.correlation_id.is_empty() {
                key.clone()
            } else {
                row.correlation_id.clone()
            },
            causation_id: row.armed_by.map(|id| id.hyphenated().to_string()),
        },
        reminder_key: key,
        fire_at: row.timer.fire_at,
        due_at,
        title,
        reminder_id: Some(row.timer.reminder_id),
        fired_at: Some(now),
    })
}
