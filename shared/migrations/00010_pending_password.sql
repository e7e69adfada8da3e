-- Pending password of a repeated signup (accountsvc/internal/account).
--
-- When an address that is still unverified signs up again, the new signup's
-- argon2id hash is kept in users.pending_password next to the re-issued
-- verification key instead of being dropped. Verifying with that key proves
-- the inbox owner, so the verification moves the pending hash into
-- users.password (and bumps token_version) in the same statement. This closes
-- the pre-registration takeover where someone signs up with a victim's
-- address first and the victim later verifies an account whose password the
-- squatter knows. NULL means no pending password (every legacy row).

-- +goose Up
ALTER TABLE users ADD COLUMN IF NOT EXISTS pending_password VARCHAR(255);

-- +goose Down
ALTER TABLE users DROP COLUMN IF EXISTS pending_password;
