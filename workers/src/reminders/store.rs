//! The reminders worker's two transactions: applying a task event to the task's timers, and
//! firing a batch of due timers. The reasoning is in the parent module's header.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row as _};
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
    /// When a pass last fired something (`Instant` of this process as nanoseconds since
    /// `started`; 0 = never): [`Self::firing_recently`].
    last_fired: std::sync::atomic::AtomicU64,
    started: std::time::Instant,
}

/// A due timer with the task row as stored now (`task` is `None` without a row).
struct DueRow {
    /// Where the locked row version lies: the fired rows are updated by it, without a
    /// primary-key descent each (the lock held keeps it where it is until the commit).
    ctid: String,
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

/// One row of the firing query; the `k_` columns are the task row's, `None` without one.
#[derive(sqlx::FromRow)]
struct DueRecord {
    ctid: String,
    task_id: Uuid,
    reminder_id: Uuid,
    fire_at: DateTime<Utc>,
    user_id: Uuid,
    title: String,
    due_at: Option<DateTime<Utc>>,
    task_version: i64,
    armed_by: Option<Uuid>,
    correlation_id: String,
    k_status: Option<String>,
    k_deleted: Option<bool>,
    k_due_at: Option<DateTime<Utc>>,
    k_title: Option<String>,
    /// Only when the task changed since the timer was set (see [`CurrentTask::reminders`]).
    k_reminders: Option<serde_json::Value>,
    k_updated_at: Option<DateTime<Utc>>,
    k_version: Option<i64>,
}

fn due_row(r: DueRecord) -> DueRow {
    let task_id = r.task_id;
    let task = match (
        r.k_status,
        r.k_deleted,
        r.k_title,
        r.k_updated_at,
        r.k_version,
    ) {
        (Some(status), Some(deleted), Some(title), Some(updated_at), Some(version)) => {
            // The API writes this JSON; if a row ever holds something else, the events the
            // worker applied are the better guide than a wedged agenda.
            let reminders = match r
                .k_reminders
                .map(serde_json::from_value::<Vec<ReminderSpec>>)
            {
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
                    due_at: r.k_due_at,
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
        ctid: r.ctid,
        task_id,
        timer: Timer {
            reminder_id: r.reminder_id,
            fire_at: r.fire_at,
            state: TimerState::Pending,
        },
        user_id: r.user_id,
        title: r.title,
        due_at: r.due_at,
        task_version: r.task_version,
        armed_by: r.armed_by,
        correlation_id: r.correlation_id,
        task,
    }
}

impl ReminderStore {
    pub fn new(pool: PgPool, topic: String) -> Self {
        Self {
            pool,
            topic,
            last_fired: std::sync::atomic::AtomicU64::new(0),
            started: std::time::Instant::now(),
        }
    }

    /// Whether a firing pass of this process fired something within `window`.
    pub fn firing_recently(&self, window: std::time::Duration) -> bool {
        let at = self.last_fired.load(std::sync::atomic::Ordering::Relaxed);
        at != 0 && self.started.elapsed().as_nanos() < u128::from(at) + window.as_nanos()
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

    /// Pending timers (the gauge). A scan of the whole agenda (a million timers took
    /// 0.2 s), kept to one process: a parallel plan would take every core of a small
    /// machine for that long, from the firing it shares them with.
    pub async fn pending(&self) -> Result<i64, ReminderStoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL max_parallel_workers_per_gather = 0")
            .execute(&mut *tx)
            .await?;
        let n = sqlx::query_scalar("SELECT count(*) FROM reminder_timers WHERE state = 'pending'")
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
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
        let rows: Vec<DueRecord> = sqlx::query_as(
            "SELECT t.ctid::text AS ctid, t.task_id, t.reminder_id, t.fire_at, t.user_id, \
                    t.title, t.due_at, t.task_version, t.armed_by, t.correlation_id, \
                    k.status AS k_status, k.deleted_at IS NOT NULL AS k_deleted, \
                    k.due_at AS k_due_at, k.title AS k_title, \
                    CASE WHEN k.version <> t.task_version THEN k.reminders END AS k_reminders, \
                    k.updated_at AS k_updated_at, k.version AS k_version \
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
        let mut fire_ctids: Vec<String> = Vec::new();
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
                    fire_ctids.push(row.ctid);
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
            // One statement, one round trip: mark the timers fired and insert their
            // ReminderDue rows. Both counts must be the batch's, or nothing commits.
            let rows = outbox::OutboxRows::new(&fire_events)?;
            let counts = rows
                .bind(sqlx::query(fire_statement()), &self.topic)
                .bind(now)
                .bind(&fire_ctids)
                .bind(&fire.tasks)
                .bind(&fire.reminders)
                .fetch_one(&mut *tx)
                .await?;
            let (marked, queued): (i64, i64) = (counts.try_get(0)?, counts.try_get(1)?);
            let want = fire_events.len() as i64;
            if marked != want || queued != want {
                // Cannot happen while the rows stay locked; if it ever does, roll back
                // rather than fire some timers without their events or the reverse.
                return Err(sqlx::Error::Protocol(format!(
                    "firing {want} timers marked {marked} fired and queued {queued} events"
                ))
                .into());
            }
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
        if !out.fired.is_empty() {
            let at = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.last_fired
                .store(at.max(1), std::sync::atomic::Ordering::Relaxed);
        }
        Ok(out)
    }
}

/// The firing statement: marks the timers fired (`$7` the instant, `$8`..`$10` each timer's
/// row version and key, `$2` its event id) and inserts the events into the outbox
/// ([`outbox::INSERT_MANY`], `$1`..`$6`); returns how many of each it wrote. The key is
/// checked besides the row version, so a stale position can only miss (and the counts then
/// refuse the batch), never mark another timer.
fn fire_statement() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "WITH fired AS ( \
                 UPDATE reminder_timers t SET state = 'fired', fired_at = $7, fired_event = u.ev \
                 FROM UNNEST($8::text[], $9::uuid[], $10::uuid[], $2::uuid[]) \
                     AS u(tid, task_id, reminder_id, ev) \
                 WHERE t.ctid = u.tid::tid AND t.task_id = u.task_id \
                   AND t.reminder_id = u.reminder_id AND t.state = 'pending' \
                 RETURNING 1), \
             queued AS ({} RETURNING 1) \
             SELECT (SELECT count(*) FROM fired), (SELECT count(*) FROM queued)",
            outbox::INSERT_MANY
        )
    })
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
