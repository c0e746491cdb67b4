-- Notifications' own database. `processed_events` (the consumer's deduper)
-- is created by the platform.

-- Who owns each order, from order.state_changed: payments' events carry only
-- the order id, and a refund e-mail goes to the order's owner.
CREATE TABLE order_owners (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);

-- One row per e-mail key (event, template): what happened to it. A key that
-- is `sent` or `dead` is never sent again (see ADR 0009).
CREATE TABLE email_sends (
    key TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    template TEXT NOT NULL,
    recipients TEXT[] NOT NULL,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('sending', 'retrying', 'sent', 'dead')),
    attempts INT NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX email_sends_recipients ON email_sends USING GIN (recipients);

-- Delivery channels users registered (RegisterChannel). E-mail channels
-- replace the account's address for the topics they name (all when empty).
CREATE TABLE channels (
    channel_id UUID PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('email')),
    address TEXT NOT NULL,
    topics TEXT[] NOT NULL DEFAULT '{}',
    created_at_ms BIGINT NOT NULL,
    UNIQUE (tenant_id, user_id, kind, address)
);
