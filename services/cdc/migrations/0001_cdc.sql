-- The CDC service's own state: per replication slot, the highest LSN whose
-- changes Kafka acknowledged. Written after the broker acknowledged and
-- before nothing else, so it is never ahead of Kafka. On start the stream
-- resumes from max(this, the slot's confirmed_flush_lsn) and skips commits
-- at or below it: the slot's own position is only flushed to disk at
-- checkpoints, so after a Postgres crash it can lag behind this table.
-- snapshot_done: the rows that existed when the slot was created were
-- published (op "r"); until then every start snapshots again.
CREATE TABLE cdc_checkpoint (
    slot          TEXT    NOT NULL,
    lsn           BIGINT  NOT NULL CHECK (lsn >= 0),
    updated_at_ms BIGINT  NOT NULL,
    snapshot_done BOOLEAN NOT NULL DEFAULT FALSE,
    CONSTRAINT cdc_checkpoint_pkey PRIMARY KEY (slot)
);
