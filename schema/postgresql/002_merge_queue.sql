-- The merge queue takes one merge at a time per project with a lease, so a crashed server's
-- merge is taken over (and cleaned up) once its lease runs out; `target_before` lets recovery
-- tell whether the target branch already moved.
ALTER TABLE merges ADD COLUMN runner TEXT;
ALTER TABLE merges ADD COLUMN lease_expires_at DOUBLE PRECISION;
ALTER TABLE merges ADD COLUMN target_before TEXT;
ALTER TABLE merges ADD COLUMN head_commit TEXT;
CREATE INDEX idx_merges_active ON merges(status, lease_expires_at) WHERE status IN ('checking', 'merging', 'testing');
