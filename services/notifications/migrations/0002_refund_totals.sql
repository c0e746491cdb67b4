-- Payments' refund events carry the running total refunded for an order;
-- the last total e-mailed per order makes each refund e-mail name this
-- refund's amount.
CREATE TABLE refund_totals (
    tenant_id TEXT NOT NULL,
    order_id TEXT NOT NULL,
    refunded_minor BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, order_id)
);
