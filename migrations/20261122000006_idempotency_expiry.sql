-- Idempotency keys expire (TASKFLOW_IDEMPOTENCY_TTL_SECS, default 24 h): an
-- expired key is taken over as new, and a background task purges old rows
-- by age, which this index serves.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
