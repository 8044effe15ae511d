-- Least privilege. Migrations run as the owner of the schema's objects
-- (TASKFLOW_DATABASE_MIGRATION_URL); the services connect as a login role that is a member of
-- `taskflow_app` (TASKFLOW_DATABASE_URL) and holds only what the API, the outbox relay and the
-- audit worker need. In particular the services cannot UPDATE, DELETE or TRUNCATE audit rows,
-- and, not owning `audit_log`, cannot ALTER it to disable its immutability triggers.
--
-- `taskflow_app` is a NOLOGIN group role. Roles are global to the PostgreSQL cluster while
-- grants are per database, so it is created only if missing (an operator may create it
-- beforehand, and then the owner needs no CREATEROLE), and a concurrent creation by another
-- database's migration is not an error. The login role (password, connection limit) belongs
-- to the deployment: see docs/operations.md.
--
-- A later migration that adds a table or sequence the services use grants it here-alike.

DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'taskflow_app') THEN
        BEGIN
            CREATE ROLE taskflow_app NOLOGIN;
        EXCEPTION WHEN duplicate_object OR unique_violation THEN
            NULL; -- created concurrently (another database of this cluster migrating)
        END;
    END IF;
END
$$;

-- API: sign-up and login.
GRANT SELECT, INSERT ON users TO taskflow_app;
-- API: tasks are soft-deleted (UPDATE), never removed; SELECT ... FOR UPDATE needs UPDATE.
GRANT SELECT, INSERT, UPDATE ON tasks TO taskflow_app;
-- API: stored responses, replaced and expired.
GRANT SELECT, INSERT, UPDATE, DELETE ON idempotency_keys TO taskflow_app;
-- API writes outbox rows; the relay locks, marks (attempts, errors) and deletes them.
GRANT SELECT, INSERT, UPDATE, DELETE ON outbox TO taskflow_app;
GRANT USAGE ON SEQUENCE outbox_id_seq TO taskflow_app;
-- The relay's leadership row (epoch, holder) and its send fence.
GRANT SELECT, UPDATE ON outbox_leader TO taskflow_app;
GRANT SELECT, UPDATE ON outbox_send_fence TO taskflow_app;

-- Audit log: read by the API, appended to by the audit worker. Only the event's own columns
-- may be supplied: the position (insert_xid, seq) and recorded_at always come from their
-- defaults, so a writer cannot place a row behind a reader's cursor. Partitions get no grants:
-- the services reach them through the parent only.
GRANT SELECT ON audit_log TO taskflow_app;
GRANT INSERT (event_id, event_type, task_id, user_id, occurred_at, version, correlation_id,
              causation_id, payload, source_topic, source_partition, source_offset)
    ON audit_log TO taskflow_app;
GRANT USAGE ON SEQUENCE audit_log_seq TO taskflow_app;

-- The worker creates monthly partitions on demand. The function runs with its owner's
-- rights (SECURITY DEFINER), so a new partition belongs to the owner, not to the service,
-- which therefore cannot disable that partition's TRUNCATE trigger either. A fixed
-- search_path with pg_temp last keeps a caller's temporary tables from shadowing ours.
DO $$
BEGIN
    EXECUTE format('ALTER FUNCTION audit_ensure_partition(timestamptz) SECURITY DEFINER '
                   'SET search_path = %I, pg_temp', current_schema());
END
$$;
REVOKE EXECUTE ON FUNCTION audit_ensure_partition(timestamptz) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION audit_ensure_partition(timestamptz) TO taskflow_app;
