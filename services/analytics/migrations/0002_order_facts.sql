-- The consistency check asks for the facts of given orders (GetOrderFacts).
CREATE INDEX facts_by_order ON facts (tenant_id, (fact->>'order_id'));
