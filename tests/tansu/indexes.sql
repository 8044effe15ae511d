-- Indexes tansu 0.6.0's sqlite schema lacks, added to the test broker's
-- database once tansu has created it (tests/src/broker.rs, .ci/run).
--
-- Every fetched record looks up its headers with
--   header h JOIN record r ON h.topition = r.topition AND h.offset_id = r.offset_id
-- and `header` has no index on those columns: each record fetched scans every
-- header the broker has ever stored, so a consumer's cost grows with the
-- broker's age (20,000 events of three headers each made the last fetches
-- scan 60,000 rows per record). Every produce and fetch also finds its
-- partition's watermark by `topition`, unindexed as well.
--
-- Both are plain secondary indexes: tansu's statements and results are
-- unchanged, only their plans. Redpanda, the production broker, has no such
-- tables.
CREATE INDEX IF NOT EXISTS taskflow_header_record ON header (topition, offset_id);
CREATE INDEX IF NOT EXISTS taskflow_watermark_topition ON watermark (topition);
