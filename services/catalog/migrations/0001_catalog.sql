-- Catalog schema: products with their regions, SKUs, prices and the stock
-- view, plus the transactional outbox that CDC streams to `product.events`.
--
-- Every table carries tenant_id and every key and index starts with it: no
-- query crosses tenants. Money is integer minor units plus an ISO 4217 code.
-- Instants are Unix milliseconds (`*_ms`) taken from the service's clock port,
-- except outbox.created_at, a timestamptz built from the same clock.

CREATE TABLE product (
    tenant_id       TEXT        NOT NULL,
    id              UUID        NOT NULL,
    slug            TEXT        NOT NULL,
    -- "C" collation: byte order, the same order the in-memory adapter uses,
    -- so `sort=name` pages identically on every adapter and locale.
    title           TEXT        COLLATE "C" NOT NULL,
    description     TEXT        NOT NULL DEFAULT '',
    category        TEXT        NOT NULL,
    tags            TEXT[]      NOT NULL DEFAULT '{}',
    image_key       TEXT,
    -- Lowest SKU price: the key of `sort=price_*`, maintained on every write.
    min_price_minor BIGINT      NOT NULL CHECK (min_price_minor >= 0),
    -- Bumped on every write to the product, its SKUs, prices or stock.
    version         BIGINT      NOT NULL CHECK (version >= 1),
    created_at_ms   BIGINT      NOT NULL,
    updated_at_ms   BIGINT      NOT NULL,
    CONSTRAINT product_pkey PRIMARY KEY (tenant_id, id),
    CONSTRAINT product_tenant_slug_key UNIQUE (tenant_id, slug)
);

-- Keyset pagination: one index per sort, each ending in id (the tie-break).
CREATE INDEX product_newest_idx ON product (tenant_id, created_at_ms DESC, id DESC);
CREATE INDEX product_price_idx ON product (tenant_id, min_price_minor, id);
CREATE INDEX product_title_idx ON product (tenant_id, title, id);
CREATE INDEX product_category_idx ON product (tenant_id, category);

-- The regions a product is sold in; position 0 is its home region.
CREATE TABLE product_region (
    tenant_id   TEXT     NOT NULL,
    product_id  UUID     NOT NULL,
    region      TEXT     NOT NULL,
    position    SMALLINT NOT NULL,
    CONSTRAINT product_region_pkey PRIMARY KEY (tenant_id, product_id, region),
    CONSTRAINT product_region_product_fkey FOREIGN KEY (tenant_id, product_id)
        REFERENCES product (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX product_region_region_idx ON product_region (tenant_id, region, product_id);

-- A sellable variant. sku_id is the merchant's SKU code, unique per tenant.
CREATE TABLE sku (
    tenant_id   TEXT    NOT NULL,
    sku_id      TEXT    NOT NULL,
    product_id  UUID    NOT NULL,
    name        TEXT    NOT NULL,
    attributes  JSONB   NOT NULL DEFAULT '{}',
    position    INTEGER NOT NULL,
    CONSTRAINT sku_pkey PRIMARY KEY (tenant_id, sku_id),
    CONSTRAINT sku_product_fkey FOREIGN KEY (tenant_id, product_id)
        REFERENCES product (tenant_id, id) ON DELETE CASCADE
);

CREATE INDEX sku_product_idx ON sku (tenant_id, product_id, position);

CREATE TABLE price (
    tenant_id    TEXT    NOT NULL,
    sku_id       TEXT    NOT NULL,
    amount_minor BIGINT  NOT NULL CHECK (amount_minor >= 0),
    currency     CHAR(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    CONSTRAINT price_pkey PRIMARY KEY (tenant_id, sku_id),
    CONSTRAINT price_sku_fkey FOREIGN KEY (tenant_id, sku_id)
        REFERENCES sku (tenant_id, sku_id) ON DELETE CASCADE
);

CREATE INDEX price_amount_idx ON price (tenant_id, amount_minor);

-- The catalog's view of stock; inventory owns the authoritative counts.
CREATE TABLE stock (
    tenant_id     TEXT   NOT NULL,
    sku_id        TEXT   NOT NULL,
    quantity      BIGINT NOT NULL CHECK (quantity >= 0),
    updated_at_ms BIGINT NOT NULL,
    CONSTRAINT stock_pkey PRIMARY KEY (tenant_id, sku_id),
    CONSTRAINT stock_sku_fkey FOREIGN KEY (tenant_id, sku_id)
        REFERENCES sku (tenant_id, sku_id) ON DELETE CASCADE
);

-- Transactional outbox: written in the same transaction as the change it
-- describes; the CDC service streams inserts to `product.events`.
CREATE TABLE outbox (
    id           UUID        NOT NULL,
    tenant_id    TEXT        NOT NULL,
    aggregate_id UUID        NOT NULL,
    event_type   TEXT        NOT NULL,
    payload      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    CONSTRAINT outbox_pkey PRIMARY KEY (tenant_id, id)
);

CREATE INDEX outbox_aggregate_idx ON outbox (tenant_id, aggregate_id, created_at);
