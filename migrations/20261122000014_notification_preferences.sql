-- Per-user notification preferences: the user's IANA zone, quiet hours in that zone (held
-- push deliveries are released together at the window's end), and per kind of event the
-- channels it goes to (only the kinds the user changed; the rest take the defaults in
-- `taskflow_infra::preferences`). No row: every default.
CREATE TABLE notification_preferences (
    user_id     UUID PRIMARY KEY REFERENCES users (id),
    time_zone   TEXT NOT NULL DEFAULT 'UTC',
    quiet_start TIME,
    quiet_end   TIME,
    channels    JSONB NOT NULL DEFAULT '{}',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK ((quiet_start IS NULL) = (quiet_end IS NULL))
);

-- Least privilege (see 20261122000005): the API writes them, the notifier reads them.
GRANT SELECT, INSERT, UPDATE ON notification_preferences TO taskflow_app;
