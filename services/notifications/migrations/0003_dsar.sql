-- DSAR (ADR 0012): find a person's rows by user id and by e-mail address,
-- in any case, without a scan of the table.

-- The addresses of an array, lower-cased (immutable, so it can be indexed).
CREATE FUNCTION lower_addresses(addresses TEXT[]) RETURNS TEXT[]
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    AS $$ SELECT coalesce(array_agg(lower(a)), '{}') FROM unnest(addresses) AS a $$;

CREATE INDEX email_sends_recipients_lower ON email_sends USING GIN (lower_addresses(recipients));
CREATE INDEX channels_address_lower ON channels (tenant_id, lower(address));
CREATE INDEX order_owners_user ON order_owners (tenant_id, user_id);
