-- Bearer tokens expire: `cicd-mcp token create --expires-in 30d` (default 90 days; `never` for
-- none). Tokens made before this migration keep NULL: they do not expire, as when they were made.
ALTER TABLE tokens ADD COLUMN expires_at REAL;
