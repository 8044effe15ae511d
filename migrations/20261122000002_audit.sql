-- Append-only audit log, written by the audit worker (consumer group taskflow-audit) from
-- taskflow.task-events and taskflow.reminders.
--
-- * Partitioned by month on occurred_at: history queries touch a few partitions, and old
--   months can be detached/archived by an admin without touching the rest.
-- * Idempotent by event: UNIQUE (event_id, occurred_at). A unique index on a partitioned
--   table must contain the partition key; occurred_at is part of the immutable event, so one
--   event id always maps to one (event_id, occurred_at) pair and the pair is as good as the id.
--   The worker inserts with ON CONFLICT DO NOTHING, so redelivery and replay change nothing.
-- * Immutable: row triggers refuse UPDATE and DELETE, statement triggers refuse TRUNCATE on the
--   parent and on every partition, and UPDATE/DELETE/TRUNCATE are revoked from PUBLIC. An
--   admin rebuild goes through a new database or ALTER TABLE ... DISABLE TRIGGER (see the
--   audit replay docs).

CREATE TABLE audit_log (
    event_id         UUID        NOT NULL,
    event_type       TEXT        NOT NULL,
    task_id          UUID        NOT NULL,
    user_id          UUID        NOT NULL,
    occurred_at      TIMESTAMPTZ NOT NULL,
    version          BIGINT      NOT NULL,
    correlation_id   TEXT        NOT NULL,
    causation_id     TEXT,
    payload          JSONB       NOT NULL,
    source_topic     TEXT        NOT NULL,
    source_partition INT         NOT NULL,
    source_offset    BIGINT      NOT NULL,
    recorded_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    CONSTRAINT audit_log_event_unique UNIQUE (event_id, occurred_at)
) PARTITION BY RANGE (occurred_at);

-- History of one task in order, and a user's activity over time.
CREATE INDEX audit_log_task_history ON audit_log (task_id, occurred_at, version);
CREATE INDEX audit_log_user_history ON audit_log (user_id, occurred_at);

CREATE FUNCTION audit_log_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_log is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

-- Row-level triggers on a partitioned table are cloned to every partition, present and future.
CREATE TRIGGER audit_log_immutable
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION audit_log_refuse_change();

-- Statement-level TRUNCATE triggers are not inherited, and a partition can be truncated
-- directly: every partition gets its own (see audit_ensure_partition).
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

REVOKE UPDATE, DELETE, TRUNCATE ON audit_log FROM PUBLIC;

-- Safety net for instants outside every monthly partition. Rows here stay here: a month
-- whose range already has rows in the default partition is not created (see below).
CREATE TABLE audit_log_default PARTITION OF audit_log DEFAULT;
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log_default
    FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change();

-- Creates the monthly partition containing ts (UTC months), if missing. Idempotent and safe to
-- call concurrently from several workers (advisory lock). The worker calls it once per month
-- it sees, before inserting.
CREATE FUNCTION audit_ensure_partition(ts TIMESTAMPTZ) RETURNS VOID
LANGUAGE plpgsql AS $$
DECLARE
    month_start TIMESTAMPTZ := date_trunc('month', ts AT TIME ZONE 'UTC') AT TIME ZONE 'UTC';
    month_end   TIMESTAMPTZ := (date_trunc('month', ts AT TIME ZONE 'UTC') + INTERVAL '1 month') AT TIME ZONE 'UTC';
    part_name   TEXT := 'audit_log_' || to_char(ts AT TIME ZONE 'UTC', 'YYYY_MM');
BEGIN
    IF to_regclass(format('%I', part_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Serialise creators: two concurrent CREATE TABLEs of one partition would fail.
    PERFORM pg_advisory_xact_lock(hashtext('audit_ensure_partition'));
    IF to_regclass(format('%I', part_name)) IS NOT NULL THEN
        RETURN;
    END IF;
    -- Creating a partition fails if the default partition holds rows of its range; moving
    -- them would need a DELETE, which the audit log refuses. Leave that month in the default.
    IF EXISTS (SELECT 1 FROM audit_log_default WHERE occurred_at >= month_start AND occurred_at < month_end) THEN
        RAISE NOTICE 'audit_log: rows for % already in the default partition; not creating %', month_start, part_name;
        RETURN;
    END IF;
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)',
                   part_name, month_start, month_end);
    EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION audit_log_refuse_change()', part_name);
    EXECUTE format('REVOKE UPDATE, DELETE, TRUNCATE ON %I FROM PUBLIC', part_name);
END;
$$;

-- Months created ahead: 2025-01 .. 2028-12.
DO $$
DECLARE
    m TIMESTAMPTZ;
BEGIN
    FOR m IN SELECT generate_series(TIMESTAMPTZ '2025-01-01 00:00:00+00', TIMESTAMPTZ '2028-12-01 00:00:00+00', INTERVAL '1 month') LOOP
        PERFORM audit_ensure_partition(m);
    END LOOP;
END;
$$;
