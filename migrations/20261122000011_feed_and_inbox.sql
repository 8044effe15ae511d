-- The user's feed (every change to the user's tasks and every notification, in one order per
-- user) and the inbox (notifications with read state). The notifier writes both; the API
-- serves them (Server-Sent Events, the inbox API) and writes read-state changes to the feed.
--
-- Per-user order without "id greater than the last seen" pitfalls: a feed row's `seq` is
-- taken from the user's `feed_heads` row, which the writer's transaction holds locked until
-- it commits, so rows of one user commit in `seq` order and a reader tailing by
-- `seq > last seen` can never miss one that commits late. Seqs may have gaps (a duplicate
-- event still moves the head); readers never assume consecutive numbers.
CREATE TABLE feed_heads (
    user_id        UUID PRIMARY KEY,
    last_seq       BIGINT NOT NULL,
    -- Rows at or below this seq have been pruned: a client resuming from there must resync.
    pruned_through BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE feed (
    user_id     UUID NOT NULL,
    seq         BIGINT NOT NULL,
    -- Idempotency: one row per event per user.
    event_id    UUID NOT NULL,
    -- The event type (TaskCreated, ..., ReminderDue) or a feed-only kind (NotificationRead).
    kind        TEXT NOT NULL,
    task_id     UUID,
    occurred_at TIMESTAMPTZ NOT NULL,
    -- What a stream sends as the SSE `data` (JSON).
    data        JSONB NOT NULL,
    recorded_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (user_id, seq),
    UNIQUE (user_id, event_id)
);
CREATE INDEX feed_recorded ON feed (recorded_at);

CREATE TABLE notifications (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    -- The event it came from: one notification per event.
    event_id    UUID NOT NULL,
    kind        TEXT NOT NULL,
    task_id     UUID,
    title       TEXT NOT NULL,
    body        TEXT,
    data        JSONB NOT NULL DEFAULT '{}',
    created_at  TIMESTAMPTZ NOT NULL,
    read_at     TIMESTAMPTZ,
    UNIQUE (user_id, event_id)
);
-- Unread first, newest first, for the inbox; and the unread count.
CREATE INDEX notifications_inbox ON notifications (user_id, (read_at IS NULL) DESC, created_at DESC, id DESC);
CREATE INDEX notifications_unread ON notifications (user_id) WHERE read_at IS NULL;

-- Least privilege (see 20261122000005): the notifier appends (and prunes) the feed and
-- creates notifications; the API reads them, marks notifications read and appends the
-- read-state change to the feed.
GRANT SELECT, INSERT, UPDATE ON feed_heads TO taskflow_app;
GRANT SELECT, INSERT, DELETE ON feed TO taskflow_app;
GRANT SELECT, INSERT, UPDATE (read_at) ON notifications TO taskflow_app;
