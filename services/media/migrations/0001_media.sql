-- Media's own database: assets, their variants (objects in S3), every
-- attempt of every pipeline step, and moderation's blocklist.
-- `event_outbox` (media.events) is created by the platform.

CREATE TABLE assets (
    asset_id UUID PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    declared_type TEXT NOT NULL,
    declared_size BIGINT NOT NULL,
    filename TEXT NOT NULL DEFAULT '',
    -- What it illustrates, e.g. 'product:<id>'; '' for nothing.
    ref TEXT NOT NULL DEFAULT '',
    -- Where the client uploads (presigned PUT); the object-created
    -- notification names it.
    upload_bucket TEXT NOT NULL,
    upload_key TEXT NOT NULL,
    -- Learned by ingest: what the bytes really are, and more.
    format TEXT,
    width INT,
    height INT,
    duration_ms BIGINT,
    phash BIGINT,
    removed_metadata JSONB,
    failed_step TEXT,
    failure_reason TEXT NOT NULL DEFAULT '',
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL,
    UNIQUE (upload_bucket, upload_key)
);

CREATE INDEX assets_ready_by_ref ON assets (tenant_id, ref, updated_ms DESC)
    WHERE ref <> '' AND status = 'ready' AND kind = 'image';
CREATE INDEX assets_by_owner ON assets (tenant_id, owner_id);

-- One row per rendition; `key` is content-addressed (the SHA-256 of the
-- bytes), so a retried step writes the same object under the same key.
CREATE TABLE variants (
    asset_id UUID NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    content_type TEXT NOT NULL,
    width INT NOT NULL,
    height INT NOT NULL,
    size_bytes BIGINT NOT NULL,
    duration_ms BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (asset_id, name)
);

-- Every attempt of every step, as Temporal numbers them.
CREATE TABLE attempts (
    asset_id UUID NOT NULL REFERENCES assets (asset_id) ON DELETE CASCADE,
    step TEXT NOT NULL,
    attempt INT NOT NULL,
    started_ms BIGINT NOT NULL,
    finished_ms BIGINT NOT NULL DEFAULT 0,
    error TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (asset_id, step, attempt)
);

CREATE TABLE blocklist (
    tenant_id TEXT NOT NULL,
    phash BIGINT NOT NULL,
    source_asset UUID,
    added_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, phash)
);
