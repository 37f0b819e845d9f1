-- Bearer tokens expire (mirrors sqlite/0006_token_expiry.sql); NULL: never.
ALTER TABLE tokens ADD COLUMN expires_at DOUBLE PRECISION;
