//! The reminders worker's decisions, as plain functions over typed values (no I/O):
//!
//! * [`reconcile`]: what one task event does to the task's timers;
//! * [`decide`]: whether a due timer fires, given the task as it is now.
//!
//! The store ([`super::store`]) runs them inside its transactions; the reasoning about why
//! the combination fires each reminder once is in the parent module's header.

use chrono::{DateTime, Utc};
use taskflow_schemas::{Event, ReminderSpec, TaskStatus};
use uuid::Uuid;

/// Where a timer stands (`reminder_timers.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimerState {
    /// Armed: fires at its instant.
    Pending,
    /// Its `ReminderDue` is in the outbox.
    Fired,
    /// The task was completed or deleted first; a reopen re-arms it if its instant is ahead.
    Cancelled,
    /// Its instant had passed when it was scheduled: a reminder set in the past never fires.
    Expired,
}

impl TimerState {
    pub fn as_str(&self) -> &'static str {
        match self {
            TimerState::Pending => "pending",
            TimerState::Fired => "fired",
            TimerState::Cancelled => "cancelled",
            TimerState::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(TimerState::Pending),
            "fired" => Some(TimerState::Fired),
            "cancelled" => Some(TimerState::Cancelled),
            "expired" => Some(TimerState::Expired),
            _ => None,
        }
    }
}

/// A stored timer, as far as the decisions need it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timer {
    pub reminder_id: Uuid,
    pub fire_at: DateTime<Utc>,
    pub state: TimerState,
}

/// The task after an event, as far as timers care.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskView<'a> {
    pub task_id: Uuid,
    pub user_id: Uuid,
    pub version: i64,
    /// Open and not deleted: only then may a timer be pending.
    pub live: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub title: &'a str,
    pub reminders: &'a [ReminderSpec],
    /// When the change happened: a reminder whose instant is before it is expired, not fired.
    pub changed_at: DateTime<Utc>,
    pub event_id: Uuid,
    pub correlation_id: &'a str,
}

impl<'a> TaskView<'a> {
    /// The view of a task event (`None` for events that do not describe a task, i.e.
    /// `ReminderDue`).
    pub fn of(event: &'a Event) -> Option<Self> {
        let task = event.snapshot()?;
        let meta = event.metadata();
        let deleted = matches!(event, Event::TaskDeleted(_));
        Some(Self {
            task_id: meta.task_id,
            user_id: meta.user_id,
            version: meta.version,
            live: !deleted && task.status == TaskStatus::Open,
            due_at: task.due_at,
            title: &task.title,
            reminders: &task.reminders,
            changed_at: meta.occurred_at,
            event_id: meta.event_id,
            correlation_id: &meta.correlation_id,
        })
    }
}

/// One change to a task's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Insert or overwrite the timer of `reminder_id` with this instant and state.
    Set(Timer),
    /// The reminder is gone from the task (or can no longer be placed): drop its timer.
    Remove(Uuid),
}

/// The state of a timer at `fire_at` newly (re)scheduled by a change at `changed_at`.
fn armed(live: bool, fire_at: DateTime<Utc>, changed_at: DateTime<Utc>) -> TimerState {
    if !live {
        TimerState::Cancelled
    } else if fire_at >= changed_at {
        TimerState::Pending
    } else {
        TimerState::Expired
    }
}

/// What `task` (the state after one event) does to the timers the task has now.
///
/// * A reminder whose instant (snooze, else `at`, else `due_at - before`) changed is
///   rescheduled: pending if the instant is not before the change, expired otherwise.
/// * Same instant: completing or deleting cancels a pending timer; reopening re-arms a
///   cancelled one whose instant is still ahead; a fired or expired timer stays so (the same
///   instant never fires twice).
/// * A reminder that left the task, or a relative one without a due date, loses its timer.
///
/// Reminders without an id (events from before schema v3) are not scheduled.
pub fn reconcile(existing: &[Timer], task: &TaskView<'_>) -> Vec<Change> {
    let mut changes = Vec::new();
    let mut kept: Vec<Uuid> = Vec::with_capacity(task.reminders.len());
    for spec in task.reminders {
        let Some(id) = spec.id else { continue };
        let Some(fire_at) = spec.fire_instant(task.due_at) else {
            continue;
        };
        if kept.contains(&id) {
            // The API never repeats an id; if a hand-made event does, the first one wins.
            continue;
        }
        kept.push(id);
        let current = existing.iter().find(|t| t.reminder_id == id);
        let state = match current {
            Some(t) if t.fire_at == fire_at => match (t.state, task.live) {
                (TimerState::Pending, false) => TimerState::Cancelled,
                (TimerState::Cancelled, true) => armed(true, fire_at, task.changed_at),
                (same, _) => same,
            },
            _ => armed(task.live, fire_at, task.changed_at),
        };
        let next = Timer {
            reminder_id: id,
            fire_at,
            state,
        };
        if current != Some(&next) {
            changes.push(Change::Set(next));
        }
    }
    for t in existing {
        if !kept.contains(&t.reminder_id) {
            changes.push(Change::Remove(t.reminder_id));
        }
    }
    changes
}

/// The task row as it is when a timer comes due (the authority: it may be ahead of the
/// events this worker has applied).
#[derive(Debug, Clone, PartialEq)]
pub struct CurrentTask {
    pub status: TaskStatus,
    pub deleted: bool,
    pub due_at: Option<DateTime<Utc>>,
    pub title: String,
    /// The task's reminders; `None` when the timer was set from this very version of the
    /// task (the common case), so there is nothing to re-derive and the store need not read
    /// or parse them on the firing path.
    pub reminders: Option<Vec<ReminderSpec>>,
    pub updated_at: DateTime<Utc>,
    pub version: i64,
}

/// What happens to a due timer.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Fire it: write `ReminderDue`, mark it fired.
    Fire,
    /// The task was completed or deleted since the worker last heard of it.
    Cancel,
    /// The reminder is no longer on the task.
    Remove,
    /// The task now places the reminder elsewhere (an event the worker has not applied yet
    /// moved it): follow the task, as applying that event will.
    Move {
        fire_at: DateTime<Utc>,
        state: TimerState,
    },
}

/// Decides a due `timer` against the task as stored now. `None` (no row: the task lives in
/// another database, as in tests that write events by hand) trusts the events applied.
pub fn decide(timer: &Timer, task: Option<&CurrentTask>) -> Decision {
    let Some(task) = task else {
        return Decision::Fire;
    };
    if task.deleted || task.status != TaskStatus::Open {
        return Decision::Cancel;
    }
    let Some(reminders) = &task.reminders else {
        return Decision::Fire;
    };
    let Some(spec) = reminders.iter().find(|r| r.id == Some(timer.reminder_id)) else {
        return Decision::Remove;
    };
    match spec.fire_instant(task.due_at) {
        None => Decision::Remove,
        Some(at) if at == timer.fire_at => Decision::Fire,
        Some(at) => Decision::Move {
            fire_at: at,
            state: armed(true, at, task.updated_at),
        },
    }
}

/// The `ReminderDue` key of one firing: the reminder and the instant it was scheduled for,
/// which together name it once (consumers may dedupe on it as well as on the event id).
pub fn reminder_key(reminder_id: Uuid, fire_at: DateTime<Utc>) -> String {
    format!(
        "{}@{}",
        reminder_id.hyphenated(),
        fire_at.timestamp_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use taskflow_schemas::{
        examples, EventMetadata, Priority, TaskCompleted, TaskCreated, TaskReopened, TaskSnapshot,
    };

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("test instant")
            .with_timezone(&Utc)
    }

    fn rid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn before(id: u128, secs: i64) -> ReminderSpec {
        ReminderSpec {
            id: Some(rid(id)),
            ..ReminderSpec::before(secs)
        }
    }

    fn absolute(id: u128, when: &str) -> ReminderSpec {
        ReminderSpec {
            id: Some(rid(id)),
            ..ReminderSpec::at(at(when))
        }
    }

    fn view<'a>(
        live: bool,
        due: Option<&str>,
        reminders: &'a [ReminderSpec],
        changed: &str,
    ) -> TaskView<'a> {
        TaskView {
            task_id: rid(0xA),
            user_id: rid(0xB),
            version: 2,
            live,
            due_at: due.map(at),
            title: "t",
            reminders,
            changed_at: at(changed),
            event_id: rid(0xC),
            correlation_id: "c",
        }
    }

    fn timer(id: u128, when: &str, state: TimerState) -> Timer {
        Timer {
            reminder_id: rid(id),
            fire_at: at(when),
            state,
        }
    }

    #[test]
    fn a_new_task_arms_future_reminders_and_expires_past_ones() {
        let r = [
            before(1, 900),
            absolute(2, "2026-12-01T07:00:00Z"),
            ReminderSpec::before(60),
        ];
        let v = view(
            true,
            Some("2026-12-01T09:00:00Z"),
            &r,
            "2026-12-01T08:00:00Z",
        );
        assert_eq!(
            reconcile(&[], &v),
            [
                Change::Set(timer(1, "2026-12-01T08:45:00Z", TimerState::Pending)),
                Change::Set(timer(2, "2026-12-01T07:00:00Z", TimerState::Expired)),
            ],
            "the id-less (pre-v3) reminder is not scheduled"
        );
    }

    #[test]
    fn a_due_change_reschedules_even_a_fired_reminder() {
        let r = [before(1, 900)];
        let existing = [timer(1, "2026-12-01T08:45:00Z", TimerState::Fired)];
        let v = view(
            true,
            Some("2026-12-02T09:00:00Z"),
            &r,
            "2026-12-01T08:50:00Z",
        );
        assert_eq!(
            reconcile(&existing, &v),
            [Change::Set(timer(
                1,
                "2026-12-02T08:45:00Z",
                TimerState::Pending
            ))]
        );
    }

    #[test]
    fn an_unrelated_change_leaves_timers_alone() {
        let r = [before(1, 900)];
        for state in [TimerState::Pending, TimerState::Fired, TimerState::Expired] {
            let existing = [timer(1, "2026-12-01T08:45:00Z", state)];
            let v = view(
                true,
                Some("2026-12-01T09:00:00Z"),
                &r,
                "2026-12-01T08:50:00Z",
            );
            assert!(reconcile(&existing, &v).is_empty(), "{state:?}");
        }
    }

    #[test]
    fn complete_cancels_and_reopen_rearms_only_what_is_ahead() {
        let r = [before(1, 900), before(2, 7200)];
        let existing = [
            timer(1, "2026-12-01T08:45:00Z", TimerState::Pending),
            timer(2, "2026-12-01T07:00:00Z", TimerState::Pending),
        ];
        let done = view(
            false,
            Some("2026-12-01T09:00:00Z"),
            &r,
            "2026-12-01T06:00:00Z",
        );
        let after_complete: Vec<Timer> = reconcile(&existing, &done)
            .into_iter()
            .map(|c| match c {
                Change::Set(t) => t,
                Change::Remove(id) => panic!("removed {id}"),
            })
            .collect();
        assert!(after_complete
            .iter()
            .all(|t| t.state == TimerState::Cancelled));
        // Reopened at 08:00: the 08:45 reminder is ahead, the 07:00 one has passed.
        let reopened = view(
            true,
            Some("2026-12-01T09:00:00Z"),
            &r,
            "2026-12-01T08:00:00Z",
        );
        assert_eq!(
            reconcile(&after_complete, &reopened),
            [
                Change::Set(timer(1, "2026-12-01T08:45:00Z", TimerState::Pending)),
                Change::Set(timer(2, "2026-12-01T07:00:00Z", TimerState::Expired)),
            ]
        );
    }

    #[test]
    fn a_snooze_rearms_a_fired_reminder_at_the_new_instant() {
        let mut r = [before(1, 900)];
        r[0].snoozed_until = Some(at("2026-12-01T09:10:00Z"));
        let existing = [timer(1, "2026-12-01T08:45:00Z", TimerState::Fired)];
        let v = view(
            true,
            Some("2026-12-01T09:00:00Z"),
            &r,
            "2026-12-01T09:00:00Z",
        );
        assert_eq!(
            reconcile(&existing, &v),
            [Change::Set(timer(
                1,
                "2026-12-01T09:10:00Z",
                TimerState::Pending
            ))]
        );
    }

    #[test]
    fn removed_reminders_and_relative_ones_without_due_lose_their_timer() {
        let r = [before(2, 60)];
        let existing = [
            timer(1, "2026-12-01T08:45:00Z", TimerState::Pending),
            timer(2, "2026-12-01T08:59:00Z", TimerState::Pending),
        ];
        let v = view(true, None, &r, "2026-12-01T08:00:00Z");
        assert_eq!(
            reconcile(&existing, &v),
            [Change::Remove(rid(1)), Change::Remove(rid(2))]
        );
    }

    #[test]
    fn deleted_and_completed_events_are_not_live() {
        let e = examples::example(taskflow_schemas::EventType::TaskDeleted);
        assert!(!TaskView::of(&e).expect("task event").live);
        let e = examples::example(taskflow_schemas::EventType::TaskCreated);
        assert!(TaskView::of(&e).expect("task event").live);
        let e = examples::example(taskflow_schemas::EventType::ReminderDue);
        assert!(TaskView::of(&e).is_none());
        let mut snap = examples::snapshot();
        snap.status = TaskStatus::Completed;
        let e = Event::TaskCompleted(TaskCompleted {
            metadata: examples::metadata(3),
            completed_at: Utc.with_ymd_and_hms(2026, 1, 2, 0, 0, 0).unwrap(),
            task: snap.clone(),
        });
        assert!(!TaskView::of(&e).expect("task event").live);
        snap.status = TaskStatus::Open;
        let e = Event::TaskReopened(TaskReopened {
            metadata: examples::metadata(4),
            task: snap,
        });
        assert!(TaskView::of(&e).expect("task event").live);
    }

    fn current(status: TaskStatus, reminders: Vec<ReminderSpec>, due: &str) -> CurrentTask {
        CurrentTask {
            status,
            deleted: false,
            due_at: Some(at(due)),
            title: "t".into(),
            reminders: Some(reminders),
            updated_at: at("2026-12-01T08:00:00Z"),
            version: 3,
        }
    }

    #[test]
    fn a_due_timer_follows_the_task_as_stored() {
        let t = timer(1, "2026-12-01T08:45:00Z", TimerState::Pending);
        let open = current(
            TaskStatus::Open,
            vec![before(1, 900)],
            "2026-12-01T09:00:00Z",
        );
        assert_eq!(decide(&t, Some(&open)), Decision::Fire);
        assert_eq!(decide(&t, None), Decision::Fire);
        // Set from this very version: fires without looking at the reminders again.
        let same_version = CurrentTask {
            reminders: None,
            ..open.clone()
        };
        assert_eq!(decide(&t, Some(&same_version)), Decision::Fire);
        let completed_same_version = CurrentTask {
            status: TaskStatus::Completed,
            ..same_version
        };
        assert_eq!(decide(&t, Some(&completed_same_version)), Decision::Cancel);
        let done = current(
            TaskStatus::Completed,
            vec![before(1, 900)],
            "2026-12-01T09:00:00Z",
        );
        assert_eq!(decide(&t, Some(&done)), Decision::Cancel);
        let mut gone = open.clone();
        gone.deleted = true;
        assert_eq!(decide(&t, Some(&gone)), Decision::Cancel);
        let other = current(
            TaskStatus::Open,
            vec![before(2, 900)],
            "2026-12-01T09:00:00Z",
        );
        assert_eq!(decide(&t, Some(&other)), Decision::Remove);
        let moved = current(
            TaskStatus::Open,
            vec![before(1, 900)],
            "2026-12-03T09:00:00Z",
        );
        assert_eq!(
            decide(&t, Some(&moved)),
            Decision::Move {
                fire_at: at("2026-12-03T08:45:00Z"),
                state: TimerState::Pending
            }
        );
        // Moved to an instant before the change that moved it: expired, as reconcile does.
        let earlier = current(
            TaskStatus::Open,
            vec![before(1, 900)],
            "2026-12-01T08:00:00Z",
        );
        assert_eq!(
            decide(&t, Some(&earlier)),
            Decision::Move {
                fire_at: at("2026-12-01T07:45:00Z"),
                state: TimerState::Expired
            }
        );
    }

    #[test]
    fn a_new_view_of_a_created_task_carries_its_metadata() {
        let snapshot = TaskSnapshot {
            reminders: vec![before(1, 60)],
            priority: Priority::Urgent,
            ..examples::snapshot()
        };
        let meta = EventMetadata {
            version: 1,
            ..examples::metadata(1)
        };
        let e = Event::TaskCreated(TaskCreated {
            metadata: meta.clone(),
            task: snapshot,
        });
        let v = TaskView::of(&e).expect("task event");
        assert_eq!(v.version, 1);
        assert_eq!(v.event_id, meta.event_id);
        assert_eq!(v.reminders.len(), 1);
    }

    #[test]
    fn reminder_keys_name_the_reminder_and_the_instant() {
        let k = reminder_key(rid(1), at("2026-12-01T08:45:00Z"));
        assert_eq!(k, "00000000-0000-0000-0000-000000000001@1796114700000000");
    }
}
