-- DSAR (ADR 0012): one person's signals without reading the whole log. A
-- signal names a person as `user` (views, likes, comments, purchases),
-- `follower` or `followee` (follows); the export, erase and scan find them
-- by containment (`signals @> '[{"user": "<id>"}]'`), which this index
-- answers.
CREATE INDEX signal_log_people ON signal_log USING gin (signals jsonb_path_ops);
