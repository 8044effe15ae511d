-- Users, tasks, idempotency keys and the transactional outbox.
-- The outbox row is written in the same transaction as the task change it
-- describes, so a 2xx from the API implies the event will be published.

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX users_email_lower ON users (lower(email));

CREATE TABLE tasks (
    id           UUID PRIMARY KEY,
    user_id      UUID NOT NULL REFERENCES users (id),
    title        TEXT NOT NULL CHECK (char_length(title) BETWEEN 1 AND 500),
    description  TEXT,
    status       TEXT NOT NULL CHECK (status IN ('open', 'completed')),
    due_at       TIMESTAMPTZ,
    priority     TEXT NOT NULL CHECK (priority IN ('low', 'medium', 'high', 'urgent')),
    tags         TEXT[] NOT NULL DEFAULT '{}',
    recurrence   JSONB,
    reminders    JSONB NOT NULL DEFAULT '[]',
    version      BIGINT NOT NULL,
    completed_at TIMESTAMPTZ,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    -- Soft delete keeps the version sequence monotonic for the TaskDeleted event
    -- and lets a late PATCH with a stale id answer 404 rather than recreate.
    deleted_at   TIMESTAMPTZ
);
-- Cursor pagination walks (created_at, id) per user.
CREATE INDEX tasks_user_created ON tasks (user_id, created_at, id) WHERE deleted_at IS NULL;
CREATE INDEX tasks_user_tags ON tasks USING GIN (tags) WHERE deleted_at IS NULL;

CREATE TABLE idempotency_keys (
    user_id         UUID NOT NULL REFERENCES users (id),
    key             TEXT NOT NULL,
    request_hash    TEXT NOT NULL,
    response_status SMALLINT NOT NULL,
    response_body   JSONB NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

-- Rows are deleted once the broker has acknowledged them. The relay never
-- polls by "id greater than the last seen": it selects whatever is left,
-- FOR UPDATE SKIP LOCKED, in id order, so a row whose transaction commits
-- late is still picked up on the next pass.
CREATE TABLE outbox (
    id            BIGSERIAL PRIMARY KEY,
    event_id      UUID NOT NULL UNIQUE,
    topic         TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    payload       JSONB NOT NULL,
    traceparent   TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    attempts      INT NOT NULL DEFAULT 0,
    last_error    TEXT
);
