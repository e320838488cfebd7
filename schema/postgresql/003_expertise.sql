-- Expertise bookkeeping: completed tasks of the domain (part of its confidence), and the hash and
-- time of the expertise.yaml last written, so a file edited by hand since is recognised and imported.
ALTER TABLE expertise_files ADD COLUMN completions INTEGER NOT NULL DEFAULT 0;
ALTER TABLE expertise_files ADD COLUMN exported_hash TEXT;
ALTER TABLE expertise_files ADD COLUMN exported_at DOUBLE PRECISION;
