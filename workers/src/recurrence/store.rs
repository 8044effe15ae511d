//! The recurrence worker's one transaction: lock the series, plan, insert the next instance
//! and its outbox row, commit. The reasoning is in the parent module's header.

use chrono::{DateTime, Utc};
use sqlx::types::Json;
use sqlx::PgPool;
use taskflow_infra::outbox;
use taskflow_schemas::{RecurrenceMode, TaskCompleted};
use uuid::Uuid;

use super::{plan, EndReason, Failpoint, NextInstance, Plan};
use crate::db::{classify, ErrorClass};

#[derive(Debug, thiserror::Error)]
#[error("recurrence store ({class:?}): {source}")]
pub struct RecurrenceStoreError {
    pub class: ErrorClass,
    #[source]
    pub source: sqlx::Error,
}

impl From<sqlx::Error> for RecurrenceStoreError {
    fn from(source: sqlx::Error) -> Self {
        Self {
            class: classify(&source),
            source,
        }
    }
}

/// The locked `series` row as the plan needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesState {
    pub id: Uuid,
    pub dtstart: DateTime<Utc>,
    pub ended: bool,
}

/// What one completion did (the metrics follow it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// Not a completion the worker acts on (unknown series, e.g. of another database).
    Ignored,
    Created {
        mode: &'static str,
    },
    /// The next instance already existed: nothing written.
    Duplicate,
    /// The series had already ended: nothing written.
    SeriesEnded,
    /// This completion ended the series.
    Ended(EndReason),
}

pub struct RecurrenceStore {
    pool: PgPool,
    topic: String,
    failpoint: Option<Failpoint>,
}

fn mode_label(m: RecurrenceMode) -> &'static str {
    match m {
        RecurrenceMode::FromDue => "from_due",
        RecurrenceMode::FromCompletion => "from_completion",
    }
}

impl RecurrenceStore {
    pub fn new(pool: PgPool, topic: String, failpoint: Option<Failpoint>) -> Self {
        Self {
            pool,
            topic,
            failpoint,
        }
    }

    /// Applies completion `c` of an instance of `series_id`, in one transaction.
    pub async fn apply(
        &self,
        c: &TaskCompleted,
        series_id: Uuid,
        now: DateTime<Utc>,
    ) -> Result<Applied, RecurrenceStoreError> {
        let mut tx = self.pool.begin().await?;
        // The lock serialises this with every other completion of the series and with the
        // API ending it (DELETE ?scope=series, recurrence removed).
        let row: Option<(DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
            "SELECT dtstart, ended_at FROM series WHERE id = $1 AND user_id = $2 FOR UPDATE",
        )
        .bind(series_id)
        .bind(c.metadata.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((dtstart, ended_at)) = row else {
            tracing::warn!(series = %series_id, task = %c.metadata.task_id,
                "completion of an unknown series: ignored");
            return Ok(Applied::Ignored);
        };
        let index: Option<i32> =
            sqlx::query_scalar("SELECT series_index FROM tasks WHERE id = $1 AND series_id = $2")
                .bind(c.metadata.task_id)
                .bind(series_id)
                .fetch_optional(&mut *tx)
                .await?
                .flatten();
        let state = SeriesState {
            id: series_id,
            dtstart,
            ended: ended_at.is_some(),
        };
        let planned = plan(
            c,
            &state,
            index.unwrap_or(0),
            now,
            Uuid::now_v7(),
            Uuid::now_v7(),
        );
        match planned {
            Plan::Ignore => Ok(Applied::Ignored),
            Plan::SeriesEnded => Ok(Applied::SeriesEnded),
            Plan::End(reason) => {
                sqlx::query(
                    "UPDATE series SET ended_at = $2, end_reason = $3 \
                     WHERE id = $1 AND ended_at IS NULL",
                )
                .bind(series_id)
                .bind(now)
                .bind(reason.as_str())
                .execute(&mut *tx)
                .await?;
                tx.commit().await?;
                tracing::info!(series = %series_id, reason = reason.as_str(), "series ended");
                Ok(Applied::Ended(reason))
            }
            Plan::Create(next) => {
                if !insert_instance(&mut tx, &next).await? {
                    return Ok(Applied::Duplicate);
                }
                outbox::enqueue(&mut tx, &self.topic, &next.event, None).await?;
                if self.failpoint == Some(Failpoint::AbortBeforeCommit) {
                    tracing::error!("failpoint abort_before_commit: aborting");
                    std::process::abort();
                }
                tx.commit().await?;
                if self.failpoint == Some(Failpoint::AbortAfterCommit) {
                    tracing::error!("failpoint abort_after_commit: aborting");
                    std::process::abort();
                }
                let mode = next
                    .snapshot
                    .recurrence
                    .as_ref()
                    .map_or("from_due", |r| mode_label(r.mode));
                tracing::debug!(series = %series_id, task = %next.task_id,
                    occurrence = %next.occurrence, "next instance created");
                Ok(Applied::Created { mode })
            }
        }
    }
}

/// Inserts the instance; false when either unique key (series + occurrence, previous task)
/// is already taken.
async fn insert_instance(
    conn: &mut sqlx::PgConnection,
    n: &NextInstance,
) -> Result<bool, sqlx::Error> {
    let s = &n.snapshot;
    let priority = serde_json::to_value(s.priority)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "medium".to_owned());
    let done = sqlx::query(
        "INSERT INTO tasks (id, user_id, title, description, status, due_at, priority, tags, \
             recurrence, reminders, version, completed_at, created_at, updated_at, \
             series_id, occurrence, series_index, previous_task_id, spawned_by) \
         VALUES ($1, $2, $3, $4, 'open', $5, $6, $7, $8, $9, 1, NULL, $10, $10, \
             $11, $12, $13, $14, $15) \
         ON CONFLICT DO NOTHING",
    )
    .bind(n.task_id)
    .bind(n.user_id)
    .bind(&s.title)
    .bind(&s.description)
    .bind(s.due_at)
    .bind(priority)
    .bind(&s.tags)
    .bind(s.recurrence.as_ref().map(Json))
    .bind(Json(&s.reminders))
    .bind(s.created_at)
    .bind(n.series_id)
    .bind(n.occurrence)
    .bind(n.series_index)
    .bind(n.previous_task_id)
    .bind(n.spawned_by)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}
