-- Token revocation by per-user version (auth): a password change or reset
-- bumps users.token_version and every token carrying an older version (or no
-- version at all, i.e. issued by the legacy system) is refused.

-- +goose Up
ALTER TABLE users ADD COLUMN IF NOT EXISTS token_version INT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE users DROP COLUMN IF EXISTS token_version;
