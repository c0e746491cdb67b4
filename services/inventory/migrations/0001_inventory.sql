CREATE TABLE stock (
    tenant_id TEXT NOT NULL,
    sku_id TEXT NOT NULL,
    on_hand BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    committed BIGINT NOT NULL DEFAULT 0 CHECK (committed >= 0),
    CHECK (reserved <= on_hand),
    PRIMARY KEY (tenant_id, sku_id)
);

CREATE TABLE reservations (
    tenant_id TEXT NOT NULL,
    id UUID NOT NULL,
    order_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('held', 'committed', 'released', 'expired')),
    expires_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, id),
    UNIQUE (tenant_id, order_id)
);
CREATE INDEX reservations_due ON reservations (expires_at_ms) WHERE state = 'held';

CREATE TABLE reservation_lines (
    tenant_id TEXT NOT NULL,
    reservation_id UUID NOT NULL,
    sku_id TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (tenant_id, reservation_id, sku_id),
    FOREIGN KEY (tenant_id, reservation_id) REFERENCES reservations (tenant_id, id)
);
