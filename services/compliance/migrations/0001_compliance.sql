-- Compliance: DSAR requests, the signing key, the suppression list (ADR 0012).

CREATE TABLE dsars (
    dsar_id          uuid PRIMARY KEY,
    tenant_id        text NOT NULL,
    subject_user_id  uuid NOT NULL,
    kind             text NOT NULL CHECK (kind IN ('erase', 'export')),
    state            text NOT NULL CHECK (state IN ('pending', 'running', 'completed', 'failed')),
    idempotency_key  text,
    requested_by     text NOT NULL,
    -- The subject's e-mail addresses while the DSAR runs (the sweep looks
    -- for them in topics); emptied once it ends.
    emails           text[] NOT NULL DEFAULT '{}',
    salt             bytea NOT NULL,
    -- participant name -> its step: state, counts, retained, detail, attempts.
    steps            jsonb NOT NULL DEFAULT '{}',
    sweep            jsonb,
    -- The participant (or check) the workflow is waiting for, with the error.
    waiting_on       text NOT NULL DEFAULT '',
    export_key       text,
    audit_seq        bigint,
    audit_hash       text,
    certificate      text,
    error            text NOT NULL DEFAULT '',
    created_at_ms    bigint NOT NULL,
    completed_at_ms  bigint NOT NULL DEFAULT 0
);

-- One DSAR per subject at a time: a second request joins the running one.
CREATE UNIQUE INDEX dsars_one_active ON dsars (tenant_id, subject_user_id)
    WHERE state IN ('pending', 'running');
CREATE UNIQUE INDEX dsars_idempotency ON dsars (tenant_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
CREATE INDEX dsars_unfinished ON dsars (created_at_ms) WHERE state IN ('pending', 'running');

-- The Ed25519 key certificates and audit records are signed with (the
-- native runtime's; on AWS a KMS key takes its place).
CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    pkcs8          bytea NOT NULL,
    created_at_ms  bigint NOT NULL
);

-- Erased subjects: blocked at the gateway, skipped by backfills and
-- re-erased by participants after a restore. Mirrored into the Redis set
-- dsar:blocked:{tenant}, rebuilt from here when compliance starts.
CREATE TABLE suppressed (
    tenant_id  text NOT NULL,
    user_id    uuid NOT NULL,
    dsar_id    uuid NOT NULL,
    at_ms      bigint NOT NULL,
    PRIMARY KEY (tenant_id, user_id)
);
