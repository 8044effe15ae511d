-- Recurring tasks as series (issue 8).
--
-- Every instance of a recurring task belongs to a series and records its scheduled instant
-- (`occurrence`). The recurrence worker creates the next instance in one transaction with its
-- outbox row; two unique keys make that effect happen once:
--
-- * (series_id, occurrence): one instance per scheduled instant, whatever caused it
--   (a redelivered completion, two workers racing on one completion);
-- * previous_task_id: each instance has at most one successor, so complete -> reopen ->
--   complete, which may compute another occurrence once time has moved on, adds nothing.
--
-- Both indexes cover soft-deleted rows too: deleting an instance never lets it be recreated.

CREATE TABLE series (
    id         UUID PRIMARY KEY,
    user_id    UUID NOT NULL REFERENCES users (id),
    -- The anchor of the rule: COUNT counts from it, and its local time of day in the rule's
    -- zone is the series' time of day. Reset to the instance's occurrence when a PATCH
    -- changes the rule (the new rule applies from the next instance on).
    dtstart    TIMESTAMPTZ NOT NULL,
    -- Set once: by DELETE ?scope=series, by removing the recurrence, or when the rule is
    -- exhausted (COUNT/UNTIL). The worker creates nothing for an ended series.
    ended_at   TIMESTAMPTZ,
    end_reason TEXT CHECK (end_reason IN ('deleted', 'recurrence_removed', 'rule_ended', 'invalid_rule')),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((ended_at IS NULL) = (end_reason IS NULL))
);

ALTER TABLE tasks
    ADD COLUMN series_id        UUID REFERENCES series (id),
    ADD COLUMN occurrence       TIMESTAMPTZ,
    -- 0 for the first instance of a series; COUNT bounds it in from_completion mode.
    ADD COLUMN series_index     INT,
    -- The instance whose completion created this one, and that completion's event id.
    ADD COLUMN previous_task_id UUID REFERENCES tasks (id),
    ADD COLUMN spawned_by       UUID,
    ADD CONSTRAINT tasks_series_fields CHECK (
        (series_id IS NULL) = (occurrence IS NULL) AND (series_id IS NULL) = (series_index IS NULL));

CREATE UNIQUE INDEX tasks_series_occurrence ON tasks (series_id, occurrence);
CREATE UNIQUE INDEX tasks_previous_task ON tasks (previous_task_id);
-- DELETE ?scope=series finds the open instances of a series.
CREATE INDEX tasks_series_open ON tasks (series_id) WHERE deleted_at IS NULL AND status = 'open';

-- Backfill: every existing recurring task becomes the first instance of its own series,
-- scheduled at its due date (or, in from_completion mode without one, its creation).
CREATE TEMPORARY TABLE series_backfill ON COMMIT DROP AS
    SELECT id AS task_id, gen_random_uuid() AS series_id, user_id,
           date_trunc('second', COALESCE(due_at, created_at)) AS occurrence
    FROM tasks
    WHERE recurrence IS NOT NULL AND series_id IS NULL;
INSERT INTO series (id, user_id, dtstart)
    SELECT series_id, user_id, occurrence FROM series_backfill;
UPDATE tasks t SET series_id = b.series_id, occurrence = b.occurrence, series_index = 0
    FROM series_backfill b WHERE t.id = b.task_id;
-- A backfilled task that is already deleted ends its series.
UPDATE series s SET ended_at = t.deleted_at, end_reason = 'deleted'
    FROM tasks t WHERE t.series_id = s.id AND t.deleted_at IS NOT NULL;

-- Least privilege (see 20261122000005): the API creates, updates (PATCH, end) series; the
-- recurrence worker locks (FOR UPDATE needs UPDATE) and ends them. Nobody deletes a series.
GRANT SELECT, INSERT, UPDATE ON series TO taskflow_app;
