-- Jobs run on a named executor (`runs_on:`); what a crashed runner left behind is recorded as the
-- executor's name and its own recovery record (JSON), which replaces the bare process-group id.
-- Jobs are listed in plan order by an explicit column rather than by insertion order.
ALTER TABLE jobs ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN executor TEXT;
ALTER TABLE jobs ADD COLUMN recovery_json TEXT;
UPDATE jobs SET seq = rowid;
ALTER TABLE jobs DROP COLUMN pgid;
CREATE INDEX runs_by_created ON runs (created_at);
