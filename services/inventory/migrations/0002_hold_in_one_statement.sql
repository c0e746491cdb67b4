-- A hold in one statement (one round trip, one implicit transaction), so a
-- hot SKU's row stays locked only while the server runs this function and
-- commits, not across five client round trips; and a refusal writes
-- nothing (no reservation row inserted and rolled back), so it commits
-- nothing either. Lines come sorted by SKU (the service normalises them),
-- so concurrent holds lock rows in one order. The outcome is a row, not an
-- error: a refused hold is ordinary in a flash sale, and an error would
-- put a line in the server's log for each one.
--
-- outcome: 'held' (reservation_id is p_id), 'exists' (the order already has
-- reservation_id: the caller compares its lines), 'insufficient' or
-- 'unknown_sku' (sku_id names the line; nothing changed).
-- p_hold_ms: the `inventory-lock-contention` fault, the held rows kept
-- locked this much longer.
CREATE FUNCTION reserve_hold(
    p_tenant TEXT,
    p_id UUID,
    p_order TEXT,
    p_expires_at_ms BIGINT,
    p_skus TEXT[],
    p_quantities INTEGER[],
    p_hold_ms BIGINT
) RETURNS TABLE (outcome TEXT, reservation_id UUID, sku_id TEXT)
LANGUAGE plpgsql AS $$
DECLARE
    n INTEGER := coalesce(array_length(p_skus, 1), 0);
    i INTEGER;
    j INTEGER;
    existing UUID;
BEGIN
    SELECT r.id INTO existing FROM reservations r
     WHERE r.tenant_id = p_tenant AND r.order_id = p_order;
    IF FOUND THEN
        RETURN QUERY SELECT 'exists'::TEXT, existing, NULL::TEXT;
        RETURN;
    END IF;
    FOR i IN 1 .. n LOOP
        UPDATE stock s SET reserved = s.reserved + p_quantities[i]
         WHERE s.tenant_id = p_tenant AND s.sku_id = p_skus[i]
           AND s.on_hand - s.reserved >= p_quantities[i];
        IF NOT FOUND THEN
            -- All or nothing: give back the lines already held (their rows
            -- are locked by this transaction, so nobody saw them held).
            FOR j IN 1 .. i - 1 LOOP
                UPDATE stock s SET reserved = s.reserved - p_quantities[j]
                 WHERE s.tenant_id = p_tenant AND s.sku_id = p_skus[j];
            END LOOP;
            RETURN QUERY SELECT
                CASE WHEN EXISTS (SELECT 1 FROM stock s
                                   WHERE s.tenant_id = p_tenant AND s.sku_id = p_skus[i])
                     THEN 'insufficient' ELSE 'unknown_sku' END,
                NULL::UUID, p_skus[i];
            RETURN;
        END IF;
    END LOOP;
    -- One reservation per order. A concurrent hold of the same order that
    -- inserted first makes this wait for it; if it committed, ours gives
    -- its units back and answers that one.
    INSERT INTO reservations (tenant_id, id, order_id, state, expires_at_ms)
    VALUES (p_tenant, p_id, p_order, 'held', p_expires_at_ms)
    ON CONFLICT (tenant_id, order_id) DO NOTHING;
    IF NOT FOUND THEN
        FOR j IN 1 .. n LOOP
            UPDATE stock s SET reserved = s.reserved - p_quantities[j]
             WHERE s.tenant_id = p_tenant AND s.sku_id = p_skus[j];
        END LOOP;
        SELECT r.id INTO existing FROM reservations r
         WHERE r.tenant_id = p_tenant AND r.order_id = p_order;
        RETURN QUERY SELECT 'exists'::TEXT, existing, NULL::TEXT;
        RETURN;
    END IF;
    INSERT INTO reservation_lines (tenant_id, reservation_id, sku_id, quantity)
    SELECT p_tenant, p_id, u.sku, u.quantity
      FROM unnest(p_skus, p_quantities) AS u(sku, quantity);
    IF p_hold_ms > 0 THEN
        PERFORM pg_sleep(p_hold_ms / 1000.0);
    END IF;
    RETURN QUERY SELECT 'held'::TEXT, p_id, NULL::TEXT;
END
$$;
