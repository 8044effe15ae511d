-- A position for every audit row, in the order rows become visible to readers, so `GET /audit`
-- can page by it and a client following `next_cursor` never misses a row (the audit worker
-- inserts asynchronously, so `occurred_at` order is not arrival order).
--
-- A sequence alone is not enough: sequence values are taken before commit, so a row with a
-- lower value can become visible after a reader has passed it. Each row therefore also records
-- the id of the transaction that inserted it (`insert_xid`, a 64-bit xid8 that never wraps),
-- and readers page by (insert_xid, seq) but only over rows whose transaction is older than
-- the oldest transaction still running when the reader's snapshot was taken
-- (`pg_snapshot_xmin(pg_current_snapshot())`). Every such transaction has ended, so that part
-- of the log is final; any row that commits later has an insert_xid at or above that horizon,
-- hence after every position already handed out. Rows of one transaction share the xid and
-- become visible together; `seq` orders them. See producer/src/audit/store.rs.
--
-- Cost of the horizon: a row is listed once every transaction older than its own has ended,
-- cluster-wide; a long-running transaction delays (never loses) rows. xid8 values are
-- specific to one PostgreSQL cluster: a physical backup or pg_upgrade keeps them, a logical
-- dump restored into another cluster must be followed by a replay (docs/operations.md).

CREATE SEQUENCE audit_log_seq AS BIGINT;

-- Both defaults are volatile, so existing rows are rewritten with this transaction's xid and
-- a fresh seq each (no UPDATE: the immutability triggers do not fire on a table rewrite).
-- The service role may not supply either column (column-level INSERT grant, migration 5).
ALTER TABLE audit_log
    ADD COLUMN insert_xid xid8   NOT NULL DEFAULT pg_current_xact_id(),
    ADD COLUMN seq        BIGINT NOT NULL DEFAULT nextval('audit_log_seq');
ALTER SEQUENCE audit_log_seq OWNED BY audit_log.seq;

-- The feed: one user's rows in position order.
CREATE INDEX audit_log_user_position ON audit_log (user_id, insert_xid, seq);
