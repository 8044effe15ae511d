//! The write flows. Each one runs in a single transaction: lock/read the
//! task, check the precondition, write the task, enqueue its event in the
//! outbox, commit, then wake the relay. So a 2xx implies the event will be
//! published, and a failure anywhere writes nothing. Instants of a new
//! version are taken after the row lock (see [`instant_after`]), so
//! `occurred_at` never decreases along a task's versions.

use axum::http::StatusCode;
use chrono::{DateTime, SubsecRound, Utc};
use sqlx::PgConnection;
use taskflow_infra::outbox;
use taskflow_schemas::{
    Event, EventMetadata, ReminderSnoozed, TaskCompleted, TaskCreated, TaskDeleted, TaskReopened,
    TaskStatus, TaskUpdated,
};
use uuid::Uuid;

use super::{
    model::{SeriesRef, Task, TaskResponse},
    store::{self, SeriesEnd},
    validate::{apply_patch, compute_changes, parse_body, validate_create, PatchError, Snooze},
};
use crate::{
    app::AppState,
    extract::{IfMatch, JsonBody, RequestContext},
    problem::ApiError,
};

/// PostgreSQL keeps microseconds; truncating here makes the instant we
/// answer and publish identical to the one a later read returns.
pub fn now_micros() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// The instant of a new version of a task whose previous version was written
/// at `previous`. Read only after the task row is locked: every earlier
/// version has committed by then, so the result is never earlier than any of
/// them even when this host's clock is behind the one that wrote `previous`.
pub fn instant_after(previous: DateTime<Utc>) -> DateTime<Utc> {
    now_micros().max(previous)
}

/// Who is writing and on behalf of which request.
#[derive(Debug, Clone)]
pub struct Writer {
    pub user_id: Uuid,
    pub ctx: RequestContext,
}

fn metadata(task: &Task, writer: &Writer, now: DateTime<Utc>) -> EventMetadata {
    EventMetadata {
        event_id: Uuid::now_v7(),
        occurred_at: now,
        user_id: task.user_id,
        task_id: task.id,
        version: task.version,
        correlation_id: writer.ctx.correlation_id.clone(),
        causation_id: None,
    }
}

async fn enqueue(
    conn: &mut PgConnection,
    state: &AppState,
    writer: &Writer,
    event: &Event,
) -> Result<(), ApiError> {
    outbox::enqueue(conn, &state.topic, event, writer.ctx.traceparent.as_deref()).await?;
    Ok(())
}

fn check_precondition(if_match: Option<&IfMatch>, current: i64) -> Result<(), ApiError> {
    match if_match {
        Some(m) if !m.matches(current) => Err(ApiError::PreconditionFailed { current }),
        _ => Ok(()),
    }
}

/// What a write that honours `Idempotency-Key` answers.
#[derive(Debug)]
pub enum WriteOutcome {
    /// The write happened now.
    Fresh(Box<Task>),
    /// A retry of an earlier request with the same Idempotency-Key: the
    /// answer stored then, and nothing written now.
    Replayed {
        status: StatusCode,
        body: serde_json::Value,
    },
}

/// An `Idempotency-Key` and the fingerprint of the request that carries it
/// (a retry must match it; another request reusing the key is refused).
#[derive(Debug, Clone)]
pub struct Idempotency {
    pub key: String,
    pub request_hash: String,
}

/// Claims the key in `tx`; false when a live claim exists (the caller then
/// rolls back and replays).
async fn claim(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    user_id: Uuid,
    idem: &Idempotency,
) -> Result<bool, ApiError> {
    // A concurrent retry blocks here until the first commits, then finds
    // its stored response instead of writing a second time.
    Ok(store::claim_idempotency_key(
        tx,
        user_id,
        &idem.key,
        &idem.request_hash,
        state.idempotency_ttl,
    )
    .await?)
}

/// Stores `task` as the answer to `idem` in the write's transaction.
async fn record(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    user_id: Uuid,
    idem: &Idempotency,
    status: StatusCode,
    task: &Task,
) -> Result<(), ApiError> {
    let body = serde_json::to_value(TaskResponse::from(task))
        .map_err(|e| ApiError::Internal(format!("serialising a task: {e}")))?;
    store::record_idempotent_response(tx, user_id, &idem.key, status.as_u16() as i16, &body)
        .await?;
    Ok(())
}

pub async fn create(
    state: &AppState,
    writer: &Writer,
    body: &JsonBody,
    idempotency: Option<&Idempotency>,
) -> Result<WriteOutcome, ApiError> {
    let now = now_micros();
    let fields = validate_create(&body.value, now).map_err(ApiError::Validation)?;
    let series = fields.recurrence.as_ref().map(|_| SeriesRef {
        id: Uuid::now_v7(),
        occurrence: series_anchor(fields.due_at, now),
        index: 0,
    });
    let task = Task {
        id: Uuid::now_v7(),
        user_id: writer.user_id,
        fields,
        series,
        status: TaskStatus::Open,
        version: 1,
        completed_at: None,
        created_at: now,
        updated_at: now,
    };

    let event = Event::TaskCreated(TaskCreated {
        metadata: metadata(&task, writer, now),
        task: task.snapshot(),
    });
    let rows = outbox::OutboxRows::one(&event, writer.ctx.traceparent.as_deref())
        .map_err(|e| ApiError::Internal(format!("serialising an event: {e}")))?;
    match idempotency {
        // The series, the task and its event are one statement, atomic by itself: no
        // BEGIN and COMMIT round trips (a create is then one round trip, not four).
        None => {
            let mut conn = state.pool.acquire().await?;
            store::insert_task_with_events(&mut conn, &task, &state.topic, &rows).await?;
        }
        Some(idem) => {
            let mut tx = state.pool.begin().await?;
            if !claim(&mut tx, state, writer.user_id, idem).await? {
                tx.rollback().await?;
                return replay_create(state, writer.user_id, idem).await;
            }
            record(&mut tx, writer.user_id, idem, StatusCode::CREATED, &task).await?;
            store::insert_task_with_events(&mut tx, &task, &state.topic, &rows).await?;
            tx.commit().await?;
        }
    }
    state.outbox.wake();
    Ok(WriteOutcome::Fresh(Box::new(task)))
}

/// A create's replay, unless the task it created has been deleted since:
/// answering 201 for a task that reads 404 would mislead the client, and
/// creating again would break the key's promise, so that is a 409.
async fn replay_create(
    state: &AppState,
    user_id: Uuid,
    idem: &Idempotency,
) -> Result<WriteOutcome, ApiError> {
    let outcome = replay(state, user_id, idem).await?;
    if let WriteOutcome::Replayed { body, .. } = &outcome {
        let id = body
            .get("id")
            .and_then(|v| v.as_str())
            .and_then(|s| Uuid::parse_str(s).ok());
        let live = match id {
            Some(id) => store::get_task(&state.pool, user_id, id).await?.is_some(),
            None => false,
        };
        if !live {
            return Err(ApiError::Conflict(
                "the task created with this Idempotency-Key has since been deleted".into(),
            ));
        }
    }
    Ok(outcome)
}

async fn replay(
    state: &AppState,
    user_id: Uuid,
    idem: &Idempotency,
) -> Result<WriteOutcome, ApiError> {
    let stored = store::get_idempotent_response(&state.pool, user_id, &idem.key)
        .await?
        .ok_or_else(|| ApiError::Internal("idempotency key vanished after a conflict".into()))?;
    if stored.request_hash != idem.request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = u16::try_from(stored.response_status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or_else(|| ApiError::Internal("stored idempotent status is invalid".into()))?;
    Ok(WriteOutcome::Replayed {
        status,
        body: stored.response_body.0,
    })
}

pub async fn get(state: &AppState, user_id: Uuid, id: Uuid) -> Result<Task, ApiError> {
    store::get_task(&state.pool, user_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Applies a merge patch. A patch that changes nothing answers the current
/// task without a new version or event.
pub async fn update(
    state: &AppState,
    writer: &Writer,
    id: Uuid,
    if_match: Option<&IfMatch>,
    body: &JsonBody,
) -> Result<Task, ApiError> {
    // The body's own validity first: garbage is a 422 whatever the task's
    // version, and takes no row lock.
    let patch = parse_body(&body.value, false).map_err(ApiError::Validation)?;
    let mut tx = state.pool.begin().await?;
    let current = lock_task(&mut tx, writer, id).await?;
    let now = instant_after(current.updated_at);
    // Some of the body's own faults (a rule that does not parse) show only against the
    // task's due date: they are a 422 whatever version If-Match names, so they are found
    // before the precondition. A conflict with the task's state is about the current
    // version, which a stale If-Match has not seen: the 412 comes first.
    let applied = apply_patch(&current.fields, &patch, now);
    if let Err(PatchError::Invalid(errors)) = applied {
        return Err(ApiError::Validation(errors));
    }
    check_precondition(if_match, current.version)?;
    let fields = applied.map_err(|e| match e {
        PatchError::Invalid(errors) => ApiError::Validation(errors),
        PatchError::Conflict(errors) => ApiError::FieldConflict(errors),
    })?;
    let changes = compute_changes(&current.fields, &fields);
    if changes.is_empty() {
        tx.rollback().await?;
        return Ok(current);
    }
    let series = update_series(&mut tx, &current, &fields, now).await?;
    let next = Task {
        fields,
        series,
        version: current.version + 1,
        updated_at: now,
        ..current.clone()
    };
    save_at_version(&mut tx, &next, current.version).await?;
    let event = Event::TaskUpdated(TaskUpdated {
        metadata: metadata(&next, writer, now),
        changes,
        task: next.snapshot(),
    });
    enqueue(&mut tx, state, writer, &event).await?;
    tx.commit().await?;
    state.outbox.wake();
    Ok(next)
}

/// The first instance's scheduled instant: its due date, or (from_completion without one)
/// the creation, in whole seconds (the rule's resolution).
fn series_anchor(due_at: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    due_at.unwrap_or(now).trunc_subsecs(0)
}

/// What a PATCH does to the task's series, in the patch's transaction:
///
/// * recurrence added (or re-added after its series ended): a new series, this task its
///   first instance;
/// * recurrence removed: the series ends (`recurrence_removed`), no further instance;
/// * rule, zone or mode changed: the series is re-anchored at this instance's occurrence, so
///   the new rule applies from the next instance on (the worker reads the rule from the
///   completion) and COUNT counts from here; exdates alone change nothing here.
async fn update_series(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    current: &Task,
    fields: &super::model::TaskFields,
    now: DateTime<Utc>,
) -> Result<Option<SeriesRef>, ApiError> {
    let new_series = || SeriesRef {
        id: Uuid::now_v7(),
        occurrence: series_anchor(fields.due_at, now),
        index: 0,
    };
    match (
        &current.fields.recurrence,
        &fields.recurrence,
        current.series,
    ) {
        (_, None, Some(s)) => {
            if current.fields.recurrence.is_some() {
                store::end_series(tx, s.id, SeriesEnd::RecurrenceRemoved, now).await?;
            }
            Ok(Some(s))
        }
        (_, None, None) => Ok(None),
        (old, Some(new), Some(s)) => {
            let live = store::lock_series(tx, s.id)
                .await?
                .is_some_and(|row| row.ended_at.is_none());
            if !live || old.is_none() {
                let fresh = new_series();
                store::insert_series(tx, fresh.id, current.user_id, fresh.occurrence).await?;
                return Ok(Some(fresh));
            }
            let rule_changed = old
                .as_ref()
                .is_some_and(|o| o.rrule != new.rrule || o.tz != new.tz || o.mode != new.mode);
            if rule_changed {
                store::reanchor_series(tx, s.id, s.occurrence).await?;
            }
            Ok(Some(s))
        }
        (_, Some(_), None) => {
            let fresh = new_series();
            store::insert_series(tx, fresh.id, current.user_id, fresh.occurrence).await?;
            Ok(Some(fresh))
        }
    }
}

/// The next three instances' scheduled instants if `task` were completed now (or at its
/// completion, if it is completed); empty when it does not recur, its series has ended, or
/// the rule cannot be evaluated.
pub async fn next_occurrences(
    state: &AppState,
    task: &Task,
    now: DateTime<Utc>,
) -> Result<Vec<DateTime<Utc>>, ApiError> {
    let (Some(r), Some(s)) = (&task.fields.recurrence, task.series) else {
        return Ok(Vec::new());
    };
    let Some(row) = store::get_series(&state.pool, s.id).await? else {
        return Ok(Vec::new());
    };
    if row.ended_at.is_some() {
        return Ok(Vec::new());
    }
    let (Ok(rule), Ok(zone)) = (
        taskflow_calendar::Rule::parse(&r.rrule),
        taskflow_calendar::zone(&r.tz),
    ) else {
        return Ok(Vec::new());
    };
    let series = taskflow_calendar::Series {
        schedule: taskflow_calendar::Schedule {
            rule: &rule,
            zone,
            dtstart: row.dtstart,
            exdates: &r.exdates,
        },
        mode: match r.mode {
            taskflow_schemas::RecurrenceMode::FromDue => taskflow_calendar::Mode::FromDue,
            taskflow_schemas::RecurrenceMode::FromCompletion => {
                taskflow_calendar::Mode::FromCompletion
            }
        },
    };
    let done = taskflow_calendar::Completed {
        occurrence: s.occurrence,
        index: u32::try_from(s.index).unwrap_or(0),
        completed_at: task.completed_at.unwrap_or(now),
    };
    Ok(series.upcoming(&done, now, 3).unwrap_or_default())
}

/// Locks the caller's task for this transaction (another user's task is a
/// 404, never a leak) and checks `If-Match` against its version.
async fn lock_current(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    writer: &Writer,
    id: Uuid,
    if_match: Option<&IfMatch>,
) -> Result<Task, ApiError> {
    let current = lock_task(tx, writer, id).await?;
    check_precondition(if_match, current.version)?;
    Ok(current)
}

/// Locks the caller's task for this transaction; another user's task is a 404.
async fn lock_task(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    writer: &Writer,
    id: Uuid,
) -> Result<Task, ApiError> {
    store::get_task_for_update(tx, writer.user_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Writes `next` only if the row is still at `expected`: a writer that read
/// the same version and committed first makes this one a 412, not a lost update.
async fn save_at_version(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    next: &Task,
    expected: i64,
) -> Result<(), ApiError> {
    if store::update_task(tx, next, expected).await? {
        Ok(())
    } else {
        Err(ApiError::PreconditionFailed { current: expected })
    }
}

/// The state change `complete` or `reopen` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Complete,
    Reopen,
}

pub async fn transition(
    state: &AppState,
    writer: &Writer,
    id: Uuid,
    if_match: Option<&IfMatch>,
    to: Transition,
    idempotency: Option<&Idempotency>,
) -> Result<WriteOutcome, ApiError> {
    let mut tx = state.pool.begin().await?;
    // Claimed before the row lock: a concurrent retry waits on the key and
    // replays, instead of waiting on the row and answering 409.
    if let Some(idem) = idempotency {
        if !claim(&mut tx, state, writer.user_id, idem).await? {
            tx.rollback().await?;
            return replay(state, writer.user_id, idem).await;
        }
    }
    let current = lock_current(&mut tx, writer, id, if_match).await?;
    let now = instant_after(current.updated_at);
    let (status, completed_at) = match (to, current.status) {
        (Transition::Complete, TaskStatus::Completed) => {
            return Err(ApiError::Conflict("the task is already completed".into()))
        }
        (Transition::Reopen, TaskStatus::Open) => {
            return Err(ApiError::Conflict("the task is already open".into()))
        }
        (Transition::Complete, TaskStatus::Open) => (TaskStatus::Completed, Some(now)),
        (Transition::Reopen, TaskStatus::Completed) => (TaskStatus::Open, None),
    };
    let next = Task {
        status,
        completed_at,
        version: current.version + 1,
        updated_at: now,
        ..current.clone()
    };
    save_at_version(&mut tx, &next, current.version).await?;
    let metadata = metadata(&next, writer, now);
    let event = match to {
        Transition::Complete => Event::TaskCompleted(TaskCompleted {
            metadata,
            completed_at: now,
            task: next.snapshot(),
        }),
        Transition::Reopen => Event::TaskReopened(TaskReopened {
            metadata,
            task: next.snapshot(),
        }),
    };
    enqueue(&mut tx, state, writer, &event).await?;
    if let Some(idem) = idempotency {
        record(&mut tx, writer.user_id, idem, StatusCode::OK, &next).await?;
    }
    tx.commit().await?;
    state.outbox.wake();
    Ok(WriteOutcome::Fresh(Box::new(next)))
}

/// Snoozes reminder `reminder` of an open task: it fires at the snooze's instant instead
/// (again, if it already fired), through a `ReminderSnoozed` event; a new version.
pub async fn snooze(
    state: &AppState,
    writer: &Writer,
    id: Uuid,
    reminder: Uuid,
    if_match: Option<&IfMatch>,
    snooze: Snooze,
    idempotency: Option<&Idempotency>,
) -> Result<WriteOutcome, ApiError> {
    let mut tx = state.pool.begin().await?;
    if let Some(idem) = idempotency {
        if !claim(&mut tx, state, writer.user_id, idem).await? {
            tx.rollback().await?;
            return replay(state, writer.user_id, idem).await;
        }
    }
    let current = lock_current(&mut tx, writer, id, if_match).await?;
    let Some(index) = current
        .fields
        .reminders
        .iter()
        .position(|r| r.id == Some(reminder))
    else {
        return Err(ApiError::NotFound);
    };
    if current.status != TaskStatus::Open {
        return Err(ApiError::Conflict(
            "the task is completed: reopen it to snooze its reminders".into(),
        ));
    }
    let now = instant_after(current.updated_at);
    let until = snooze.until(now);
    let mut next = Task {
        version: current.version + 1,
        updated_at: now,
        ..current.clone()
    };
    next.fields.reminders[index].snoozed_until = Some(until);
    save_at_version(&mut tx, &next, current.version).await?;
    let event = Event::ReminderSnoozed(ReminderSnoozed {
        metadata: metadata(&next, writer, now),
        reminder_id: reminder,
        snoozed_until: until,
        task: next.snapshot(),
    });
    enqueue(&mut tx, state, writer, &event).await?;
    if let Some(idem) = idempotency {
        record(&mut tx, writer.user_id, idem, StatusCode::OK, &next).await?;
    }
    tx.commit().await?;
    state.outbox.wake();
    Ok(WriteOutcome::Fresh(Box::new(next)))
}

/// What `DELETE /tasks/{id}` removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeleteScope {
    /// This task only.
    #[default]
    Instance,
    /// This task, every other open instance of its series, and the series itself: no
    /// further instance is created, even for a completion the recurrence worker has not
    /// processed yet (it takes the series lock this holds, then finds the series ended).
    Series,
}

/// Soft delete: the row stays (so versions stay monotonic) but reads 404.
pub async fn delete(
    state: &AppState,
    writer: &Writer,
    id: Uuid,
    if_match: Option<&IfMatch>,
    scope: DeleteScope,
) -> Result<(), ApiError> {
    let mut tx = state.pool.begin().await?;
    let current = lock_current(&mut tx, writer, id, if_match).await?;
    let now = instant_after(current.updated_at);
    if let (DeleteScope::Series, Some(series)) = (scope, current.series) {
        // Lock order: this task, the series, the other instances by id. The recurrence
        // worker locks the series and no task row (its foreign key check on the completed
        // task takes FOR KEY SHARE, which our FOR NO KEY UPDATE does not block), so it
        // cannot deadlock with this.
        store::lock_series(&mut tx, series.id).await?;
        store::end_series(&mut tx, series.id, SeriesEnd::Deleted, now).await?;
        for other in
            store::open_instances_for_update(&mut tx, writer.user_id, series.id, id).await?
        {
            soft_delete_in(&mut tx, state, writer, &other).await?;
        }
    }
    let gone = Task {
        version: current.version + 1,
        updated_at: now,
        ..current.clone()
    };
    if !store::soft_delete(&mut tx, &gone, current.version, now).await? {
        return Err(ApiError::PreconditionFailed {
            current: current.version,
        });
    }
    let event = Event::TaskDeleted(TaskDeleted {
        metadata: metadata(&gone, writer, now),
        deleted_at: now,
        task: gone.snapshot(),
    });
    enqueue(&mut tx, state, writer, &event).await?;
    tx.commit().await?;
    state.outbox.wake();
    Ok(())
}

/// Soft-deletes `t` (already locked in `tx`) with its `TaskDeleted` event.
async fn soft_delete_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    state: &AppState,
    writer: &Writer,
    t: &Task,
) -> Result<(), ApiError> {
    let now = instant_after(t.updated_at);
    let gone = Task {
        version: t.version + 1,
        updated_at: now,
        ..t.clone()
    };
    if !store::soft_delete(tx, &gone, t.version, now).await? {
        return Err(ApiError::PreconditionFailed { current: t.version });
    }
    let event = Event::TaskDeleted(TaskDeleted {
        metadata: metadata(&gone, writer, now),
        deleted_at: now,
        task: gone.snapshot(),
    });
    enqueue(tx, state, writer, &event).await
}
