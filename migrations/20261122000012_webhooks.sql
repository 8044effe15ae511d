-- Delivery channels beyond the feed: signed webhooks (Standard Webhooks), and the delivery
-- log every channel shares.
--
-- A delivery is one event for one target (a webhook endpoint; later an email address). Its
-- row is written by the notifier in the same transaction as the event's feed entry, and
-- `UNIQUE (channel, target, event_id)` makes that idempotent: a redelivered event or a
-- restarted notifier finds the row and plans nothing new. The row's id is the
-- `webhook-id` a receiver deduplicates by, the same on every attempt.
CREATE TABLE webhook_endpoints (
    id                        UUID PRIMARY KEY,
    user_id                   UUID NOT NULL REFERENCES users (id),
    url                       TEXT NOT NULL,
    description               TEXT NOT NULL DEFAULT '',
    -- `whsec_<base64>`; shown to the user once, at creation and at rotation.
    secret                    TEXT NOT NULL,
    -- After a rotation, deliveries are signed with both secrets until this instant.
    previous_secret           TEXT,
    previous_secret_until     TIMESTAMPTZ,
    enabled                   BOOLEAN NOT NULL DEFAULT true,
    disabled_at               TIMESTAMPTZ,
    disabled_reason           TEXT,
    -- The first failure of the current run of failures; cleared by a success.
    failing_since             TIMESTAMPTZ,
    created_at                TIMESTAMPTZ NOT NULL DEFAULT now(),
    deleted_at                TIMESTAMPTZ
);
CREATE INDEX webhook_endpoints_user ON webhook_endpoints (user_id) WHERE deleted_at IS NULL;

CREATE TABLE deliveries (
    -- `msg_<id>` is the `webhook-id` header.
    id              UUID PRIMARY KEY,
    user_id         UUID NOT NULL,
    channel         TEXT NOT NULL CHECK (channel IN ('webhook')),
    -- The endpoint id for a webhook.
    target          TEXT NOT NULL,
    endpoint_id     UUID REFERENCES webhook_endpoints (id),
    event_id        UUID NOT NULL,
    -- The Standard Webhooks event type (`reminder.due`, `task.created`, ...).
    kind            TEXT NOT NULL,
    -- The exact bytes signed and sent (JSON), fixed at planning so every attempt is equal.
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'succeeded', 'failed', 'cancelled')),
    attempts        INT NOT NULL DEFAULT 0,
    -- When the next attempt may start (the first: at once).
    next_attempt_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- A sender that claimed it; another may take it over only after this instant.
    leased_until    TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    completed_at    TIMESTAMPTZ,
    UNIQUE (channel, target, event_id)
);
-- The senders' claim and wake-up read these in order, never the whole backlog.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX deliveries_leased ON deliveries (leased_until)
    WHERE state = 'pending' AND leased_until IS NOT NULL;
CREATE INDEX deliveries_endpoint ON deliveries (endpoint_id, created_at DESC);

CREATE TABLE delivery_attempts (
    delivery_id UUID NOT NULL REFERENCES deliveries (id),
    attempt     INT NOT NULL,
    started_at  TIMESTAMPTZ NOT NULL,
    latency_ms  INT NOT NULL,
    -- The receiver's HTTP status, when one came.
    status      INT,
    error       TEXT,
    succeeded   BOOLEAN NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- Least privilege (see 20261122000005): the API manages endpoints and reads the log; the
-- notifier plans, claims and records deliveries and disables failing endpoints.
GRANT SELECT, INSERT, UPDATE ON webhook_endpoints TO taskflow_app;
GRANT SELECT, INSERT, UPDATE ON deliveries TO taskflow_app;
GRANT SELECT, INSERT ON delivery_attempts TO taskflow_app;
