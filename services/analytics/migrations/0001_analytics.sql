-- Analytics' own database. `processed_events` (the consumer's deduper) is
-- created by the platform.

-- Every fact counted, by (tenant, day): the raw material a day is rebuilt
-- from (at start, and when a late fact corrects a closed day).
CREATE TABLE facts (
    tenant_id TEXT NOT NULL,
    -- Days since 1970-01-01 (UTC).
    day INT NOT NULL,
    -- The event id: a fact counts once.
    id TEXT NOT NULL,
    fact JSONB NOT NULL,
    PRIMARY KEY (tenant_id, day, id)
);

-- When each order was placed, for its checkout duration when it completes.
CREATE TABLE order_placed (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    placed_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

-- Closed days: their statistics as of the last change. `version` is 1 when
-- the day closed and goes up by one with each late fact.
CREATE TABLE daily (
    tenant_id TEXT NOT NULL,
    day INT NOT NULL,
    stats JSONB NOT NULL,
    version INT NOT NULL,
    closed_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, day)
);
