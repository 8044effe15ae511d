-- Dead letters replayed by `taskflow-admin dlq replay`, one row per DLQ record.
--
-- A replay inserts the row and produces the record back to its source topic inside one
-- transaction, committed only after the broker acknowledged the record: a second run (or a
-- concurrent one, which waits on the row's unique key) skips what is recorded here, so each
-- dead letter is sent back once. A consumer-group offset on the DLQ topic could only record
-- a prefix, while an operator replays single offsets out of order.
CREATE TABLE dlq_replays (
    dlq_topic     text        NOT NULL,
    dlq_partition integer     NOT NULL,
    dlq_offset    bigint      NOT NULL,
    target_topic  text        NOT NULL,
    replayed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dlq_topic, dlq_partition, dlq_offset)
);

-- The operator's tool connects as the services do (TASKFLOW_DATABASE_URL); rows are never
-- changed or removed by it.
GRANT SELECT, INSERT ON dlq_replays TO taskflow_app;
