-- usage-filter events in ClickHouse, inserted straight from the filter's `ndjson` format
-- (one JSON object per line = ClickHouse's JSONEachRow). Tested in `make e2e-receivers` with
-- Debian 12's clickhouse-server (18.16); written to work on current ClickHouse releases too
-- (hence `timestamp` as text plus a parsed `ts`: 18.16 has no DateTime64).
CREATE DATABASE IF NOT EXISTS usage;

CREATE TABLE IF NOT EXISTS usage.events
(
    id               String,   -- UUID v7, unique per event: the deduplication key
    api_path         String,
    subscription_key String,
    method           String,
    response_time_ms UInt32,
    status_code      UInt16,
    success          UInt8,    -- JSON true/false arrive as 1/0
    timestamp        String,   -- RFC 3339, UTC, microseconds, as sent
    ts               DateTime MATERIALIZED parseDateTimeBestEffort(timestamp),
    request_size     UInt64,
    response_size    UInt64,
    request_id       String,   -- the x-request-id header ('' when absent)
    billable         UInt8,
    authority        String
    -- configured `attributes` (e.g. organization_id String) go here too; fields the table
    -- lacks are skipped (input_format_skip_unknown_fields=1 in the insert URL)
)
-- A batch whose answer was lost is sent again (same x-usage-batch-id, same event ids), so the
-- table may hold an event twice until a merge. ReplacingMergeTree collapses rows with the same
-- sorting key: a duplicate is an identical row, so it shares (subscription_key, ts, id).
-- Count with FINAL (or uniqExact(id)) to get exact figures before the merge has happened.
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(ts)
ORDER BY (subscription_key, ts, id);
