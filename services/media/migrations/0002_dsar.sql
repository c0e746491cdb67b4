-- DSAR (ADR 0012): erasing a person's assets deletes a variant's object
-- only when no other asset records the same content key (variants are
-- content-addressed: two people's identical pictures share objects). This
-- index answers "who else records this key".
CREATE INDEX variants_by_key ON variants (key);
