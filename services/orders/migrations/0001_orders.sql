-- Orders, their lines, the checkout saga's steps. Every key starts with the
-- tenant. The idempotency key is unique per (tenant, user) and kept with the
-- order, so a repeat is answered from here for as long as the order exists.
CREATE TABLE orders (
    tenant_id        TEXT    NOT NULL,
    order_id         UUID    NOT NULL,
    user_id          TEXT    NOT NULL,
    state            TEXT    NOT NULL,
    cancel_reason    TEXT,
    cancel_detail    TEXT    NOT NULL DEFAULT '',
    total_minor      BIGINT  NOT NULL CHECK (total_minor >= 0),
    currency         TEXT    NOT NULL,
    payment_method   TEXT    NOT NULL,
    reservation_id   TEXT    NOT NULL DEFAULT '',
    payment_id       TEXT    NOT NULL DEFAULT '',
    idempotency_key  TEXT    NOT NULL,
    fingerprint      TEXT    NOT NULL,
    workflow_started BOOLEAN NOT NULL DEFAULT false,
    created_at_ms    BIGINT  NOT NULL,
    updated_at_ms    BIGINT  NOT NULL,
    CONSTRAINT orders_pkey PRIMARY KEY (tenant_id, order_id),
    CONSTRAINT orders_idempotency UNIQUE (tenant_id, user_id, idempotency_key)
);

CREATE INDEX orders_by_user ON orders (tenant_id, user_id, created_at_ms DESC, order_id DESC);
CREATE INDEX orders_by_tenant ON orders (tenant_id, created_at_ms DESC, order_id DESC);
CREATE INDEX orders_unstarted ON orders (created_at_ms) WHERE NOT workflow_started;

CREATE TABLE order_items (
    tenant_id        TEXT    NOT NULL,
    order_id         UUID    NOT NULL,
    line_no          INT     NOT NULL,
    product_id       TEXT    NOT NULL,
    sku_id           TEXT    NOT NULL,
    quantity         INT     NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT  NOT NULL,
    line_total_minor BIGINT  NOT NULL,
    CONSTRAINT order_items_pkey PRIMARY KEY (tenant_id, order_id, line_no),
    CONSTRAINT order_items_order FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, order_id)
);

CREATE TABLE order_steps (
    tenant_id     TEXT   NOT NULL,
    order_id      UUID   NOT NULL,
    seq           INT    NOT NULL,
    step          TEXT   NOT NULL,
    outcome       TEXT   NOT NULL,
    state         TEXT   NOT NULL,
    cancel_reason TEXT,
    detail        TEXT   NOT NULL,
    attempts      INT    NOT NULL,
    at_ms         BIGINT NOT NULL,
    CONSTRAINT order_steps_pkey PRIMARY KEY (tenant_id, order_id, seq),
    CONSTRAINT order_steps_order FOREIGN KEY (tenant_id, order_id) REFERENCES orders (tenant_id, order_id)
);
