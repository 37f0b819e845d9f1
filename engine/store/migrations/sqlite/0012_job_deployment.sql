-- A deploy stage's job keeps what it deployed (deployment id, status, rolled back or not, version)
-- with the run, so a run read back later (`cicd-mcp show`, get_run) says it too. NULL: not a deploy.
ALTER TABLE jobs ADD COLUMN deployment_json TEXT;
