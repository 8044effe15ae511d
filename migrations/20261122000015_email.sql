-- The email channel: a reminder is also one `email` delivery to its owner's address.
--
-- Email rows share `deliveries` with webhooks: the same lease-based claiming, attempt log and
-- `UNIQUE (channel, target, event_id)` dedupe key, with the address as the target and no
-- endpoint. The payload (JSON: subject, plain-text and HTML bodies, the reminder's data) is
-- rendered once at planning, so every attempt sends the same mail.
ALTER TABLE deliveries DROP CONSTRAINT deliveries_channel_check;
ALTER TABLE deliveries ADD CONSTRAINT deliveries_channel_check
    CHECK (channel IN ('webhook', 'email'));
-- A webhook always names its endpoint; an email never has one.
ALTER TABLE deliveries ADD CONSTRAINT deliveries_endpoint_by_channel
    CHECK ((channel = 'webhook') = (endpoint_id IS NOT NULL));
-- The sender claims all due email of one address together (one digest mail).
CREATE INDEX deliveries_pending_target ON deliveries (channel, target, next_attempt_at)
    WHERE state = 'pending';
