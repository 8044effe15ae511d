-- Outbox relay: per-task order, parked rows, and a fencing epoch.
--
-- The relay publishes only the head (lowest id) of each task's rows, and the
-- next row of a task only after the previous one was acknowledged and deleted.
-- A row that fails waits (`not_before`) or is set aside (`parked_at`) and, as
-- the head of its task, holds the task's later rows back, while every other
-- task keeps flowing.
ALTER TABLE outbox
    ADD COLUMN not_before TIMESTAMPTZ,
    ADD COLUMN parked_at  TIMESTAMPTZ;

-- "Is there an earlier row of this task?" is one probe of this index.
CREATE INDEX outbox_task_order ON outbox (topic, partition_key, id);
CREATE INDEX outbox_parked ON outbox (id) WHERE parked_at IS NOT NULL;

-- One row: who leads, and the leadership epoch. A relay that holds the
-- advisory lock takes this row only if its holder's session is gone (so two
-- relays configured with two lock keys by mistake do not take turns), and
-- bumps the epoch; every batch locks this row and checks the epoch is still
-- its own, so two relays never publish in the same moment and a deposed one
-- notices at its next batch.
CREATE TABLE outbox_leader (
    singleton      BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    epoch          BIGINT NOT NULL,
    holder         TEXT,
    holder_pid     INT,
    holder_started TIMESTAMPTZ,
    since          TIMESTAMPTZ
);
INSERT INTO outbox_leader (singleton, epoch) VALUES (true, 0);

-- Until when a message handed to the leader's producer may still reach the
-- broker (its librdkafka `message.timeout.ms` after the hand-over). Written,
-- and committed, before every hand-over; a new leader waits it out (plus a
-- margin) before its first send, so nothing of a deposed leader lands after a
-- message of the new one. Kept apart from `outbox_leader`, which each batch
-- holds locked.
CREATE TABLE outbox_send_fence (
    singleton     BOOLEAN PRIMARY KEY DEFAULT true CHECK (singleton),
    send_deadline TIMESTAMPTZ
);
INSERT INTO outbox_send_fence (singleton, send_deadline) VALUES (true, NULL);
