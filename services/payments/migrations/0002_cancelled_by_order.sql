-- A payment cancelled by order id before any CreateIntent arrived (the saga's
-- undo of an authorize whose answers were all lost) has no amount yet.
ALTER TABLE payments DROP CONSTRAINT payments_amount_minor_check;
ALTER TABLE payments ADD CONSTRAINT payments_amount_minor_check
    CHECK (amount_minor > 0 OR (status = 'cancelled' AND provider_ref = ''));

-- The payment-method token of the creation, so a cancel can replay a creation
-- whose answer was lost (payments crashed after the provider acted) under its
-- idempotency key and void what it finds. A token, never card data.
ALTER TABLE payments ADD COLUMN payment_method TEXT NOT NULL DEFAULT '';
