-- A bearer token may be limited to environments and tools (`cicd-mcp token create --environments
-- staging --tools deploy,get_run`): JSON lists of names; NULL is no limit, as for tokens made before.
ALTER TABLE tokens ADD COLUMN environments_json TEXT;
ALTER TABLE tokens ADD COLUMN tools_json TEXT;
