-- A deploy stage's job keeps what it deployed (mirrors sqlite/0012_job_deployment.sql).
ALTER TABLE jobs ADD COLUMN deployment_json TEXT;
