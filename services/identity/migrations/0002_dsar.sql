-- DSAR (ADR 0012): a user's sessions are found by user id (scan, export,
-- erase); until now they were only found by family.
CREATE INDEX refresh_families_by_user ON refresh_families (tenant_id, user_id);
