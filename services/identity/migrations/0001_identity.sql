CREATE TABLE users (
    tenant_id TEXT NOT NULL,
    id UUID NOT NULL,
    email TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    roles TEXT[] NOT NULL DEFAULT '{customer}',
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, email)
);

CREATE TABLE refresh_families (
    tenant_id TEXT NOT NULL,
    family_id UUID NOT NULL,
    user_id UUID NOT NULL,
    revoked_at_ms BIGINT,
    revoked_reason TEXT,
    PRIMARY KEY (tenant_id, family_id)
);

-- Only a SHA-256 of each refresh token is stored.
CREATE TABLE refresh_tokens (
    tenant_id TEXT NOT NULL,
    token_hash BYTEA NOT NULL,
    family_id UUID NOT NULL,
    user_id UUID NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    consumed_at_ms BIGINT,
    PRIMARY KEY (tenant_id, token_hash),
    FOREIGN KEY (tenant_id, family_id) REFERENCES refresh_families (tenant_id, family_id)
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (tenant_id, family_id);
