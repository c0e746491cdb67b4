-- The feed's own database.

-- One row per (actor, client id): what a PublishActivity call recorded, so a
-- replay answers the same and a reused client id with another request is a
-- conflict. Its outbox event is written in the same transaction.
CREATE TABLE activity_keys (
    tenant      text   NOT NULL,
    actor_id    uuid   NOT NULL,
    client_id   text   NOT NULL,
    activity_id uuid   NOT NULL,
    kind        text   NOT NULL,
    object      text   NOT NULL,
    body        text   NOT NULL DEFAULT '',
    ts_ms       bigint NOT NULL,
    PRIMARY KEY (tenant, actor_id, client_id)
);

-- The timeline's Postgres adapter: the wide-column keys as a primary key.
-- Partition (tenant, user_id, day); clustering (ts_ms, activity_id), read
-- backwards.
CREATE TABLE timeline (
    tenant      text   NOT NULL,
    user_id     uuid   NOT NULL,
    day         int    NOT NULL,
    ts_ms       bigint NOT NULL,
    activity_id uuid   NOT NULL,
    kind        text   NOT NULL,
    object      text   NOT NULL,
    body        text   NOT NULL DEFAULT '',
    client_id   text   NOT NULL,
    PRIMARY KEY (tenant, user_id, day, ts_ms, activity_id)
);

-- The feature job's input log: the signals each consumed event gave, once
-- per event id. The job's in-memory features are a fold of this table, so a
-- restart reloads them and a replay adds nothing twice.
CREATE TABLE signal_log (
    tenant   text   NOT NULL,
    event_id uuid   NOT NULL,
    topic    text   NOT NULL,
    signals  jsonb  NOT NULL,
    ts_ms    bigint NOT NULL,
    PRIMARY KEY (tenant, event_id)
);

-- Each user's slice (the Redis sorted set's durable copy, and the fallback
-- when Redis misses or is down).
CREATE TABLE slices (
    tenant  text             NOT NULL,
    user_id text             NOT NULL,
    -- Byte order, as Redis orders equal scores (and the cursors compare).
    item_id text COLLATE "C" NOT NULL,
    score   double precision NOT NULL,
    PRIMARY KEY (tenant, user_id, item_id)
);
CREATE INDEX slices_by_rank ON slices (tenant, user_id, score DESC, item_id DESC);

CREATE TABLE slice_meta (
    tenant      text   NOT NULL,
    user_id     text   NOT NULL,
    computed_ms bigint NOT NULL,
    cards       int    NOT NULL,
    PRIMARY KEY (tenant, user_id)
);
