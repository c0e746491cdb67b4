-- The saga reads its own log back when a workflow task is replayed (ADR 0004,
-- steps as local activities), so a failed step must say exactly what the saga
-- took from it: why it failed (the order's cancel reason is set only once the
-- order is cancelled, after any compensation), and whether its retries ran out
-- without an answer ("outcome unknown", ADR 0006: undone like a success) or it
-- was refused (it had no effect).
ALTER TABLE order_steps
    ADD COLUMN failure_reason TEXT,
    ADD COLUMN uncertain BOOLEAN NOT NULL DEFAULT false;
