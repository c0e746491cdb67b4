CREATE TABLE payments (
    tenant_id TEXT NOT NULL,
    id UUID NOT NULL,
    order_id TEXT NOT NULL,
    create_key TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN
        ('pending', 'authorized', 'captured', 'partially_refunded', 'refunded', 'failed', 'cancelled')),
    amount_minor BIGINT NOT NULL CHECK (amount_minor > 0),
    currency TEXT NOT NULL,
    captured_minor BIGINT NOT NULL DEFAULT 0 CHECK (captured_minor >= 0),
    refunded_minor BIGINT NOT NULL DEFAULT 0 CHECK (refunded_minor >= 0),
    refunds JSONB NOT NULL DEFAULT '{}',
    provider_ref TEXT NOT NULL DEFAULT '',
    failure_code TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, order_id)
);
CREATE INDEX payments_provider_ref ON payments (tenant_id, provider_ref) WHERE provider_ref <> '';
-- The reconciler's work list: payments whose provider outcome may be unknown.
CREATE INDEX payments_in_flight ON payments (updated_at_ms)
    WHERE status IN ('pending', 'authorized') AND provider_ref <> '';

-- Stripe event ids already applied: a redelivery is a no-op.
CREATE TABLE webhook_events (
    event_id TEXT PRIMARY KEY,
    event_type TEXT NOT NULL,
    received_at_ms BIGINT NOT NULL
);
