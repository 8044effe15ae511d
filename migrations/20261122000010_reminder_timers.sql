-- Durable reminder timers, kept by the reminders worker (taskflow-reminders).
--
-- `reminder_tasks` holds, per task, the version of the last task event the worker applied:
-- an event at or below it is a redelivery or a replay and changes nothing, so an older event
-- can never resurrect a cancelled timer or move a timer back.
--
-- `reminder_timers` holds one row per reminder of a task: when it fires and where it stands.
--   pending   armed; fires at fire_at (the partial index below is the worker's agenda)
--   fired     ReminderDue written to the outbox in the same transaction that set this
--   cancelled the task was completed or deleted before it fired (reopen re-arms it if its
--             instant is still ahead)
--   expired   its instant had already passed when it was scheduled (a reminder set in the
--             past never fires)
CREATE TABLE reminder_tasks (
    task_id    UUID PRIMARY KEY,
    user_id    UUID NOT NULL,
    version    BIGINT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE reminder_timers (
    task_id      UUID NOT NULL,
    reminder_id  UUID NOT NULL,
    user_id      UUID NOT NULL,
    fire_at      TIMESTAMPTZ NOT NULL,
    state        TEXT NOT NULL CHECK (state IN ('pending', 'fired', 'cancelled', 'expired')),
    -- The task version this row was last set from, and what ReminderDue repeats of it.
    task_version BIGINT NOT NULL,
    title        TEXT NOT NULL,
    due_at       TIMESTAMPTZ,
    -- The event that armed it: ReminderDue's causation and correlation.
    armed_by     UUID,
    correlation_id TEXT NOT NULL DEFAULT '',
    -- Set when it fires; fired_at - fire_at is its lateness.
    fired_at     TIMESTAMPTZ,
    -- The ReminderDue event written when it fired.
    fired_event  UUID,
    PRIMARY KEY (task_id, reminder_id)
);
CREATE INDEX reminder_timers_agenda ON reminder_timers (fire_at) WHERE state = 'pending';

-- Seed from the tasks stored before the worker existed, at their current versions: open
-- tasks' reminders whose instant is ahead are pending, the rest expired. Events older than
-- these versions are then skipped as replays.
INSERT INTO reminder_tasks (task_id, user_id, version)
    SELECT id, user_id, version FROM tasks WHERE deleted_at IS NULL;
INSERT INTO reminder_timers (task_id, reminder_id, user_id, fire_at, state, task_version,
                             title, due_at)
    SELECT t.id, (r->>'id')::uuid, t.user_id, f.fire_at,
           CASE WHEN t.status = 'open' AND f.fire_at > now() THEN 'pending' ELSE 'expired' END,
           t.version, t.title, t.due_at
    FROM tasks t
    CROSS JOIN LATERAL jsonb_array_elements(t.reminders) AS e(r)
    CROSS JOIN LATERAL (SELECT COALESCE(
        (r->>'snoozed_until')::timestamptz,
        (r->>'at')::timestamptz,
        t.due_at - make_interval(secs => (r->>'before_seconds')::double precision))) AS f(fire_at)
    WHERE t.deleted_at IS NULL AND r->>'id' IS NOT NULL AND f.fire_at IS NOT NULL;

-- Least privilege (see 20261122000005): the reminders worker keeps both tables; nobody else
-- writes them. Timers are never deleted by the service except when a reminder is removed
-- from its task.
GRANT SELECT, INSERT, UPDATE ON reminder_tasks TO taskflow_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON reminder_timers TO taskflow_app;
