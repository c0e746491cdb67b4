-- DSAR (ADR 0012). An action's fact names only its visitor (the `ss_vid`
-- cookie's id); the gateway also sends the signed-in user's id. This table
-- keeps which visitor ids a user acted as, so a person's actions can be
-- found, exported and erased.
CREATE TABLE visitor_users (
    tenant_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    first_seen_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, user_id, visitor_id)
);

-- A visitor's actions, without a scan of every fact.
CREATE INDEX facts_by_visitor ON facts (tenant_id, (fact->>'visitor_id'));
