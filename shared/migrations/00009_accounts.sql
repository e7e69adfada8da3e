-- Accounts (accountsvc/internal/account): hashed, expiring verification and
-- reset keys, declarative referral rewards paid at most once, and room for
-- argon2id hashes. Fixes legacy defects S4, S7, S10, C3 and part of D3
-- (docs/legacy-contract.md §10) without rewriting a legacy row:
--
--   * users.password is widened to VARCHAR(255) (argon2id PHC strings are
--     about 100 characters today; stronger parameters must still fit).
--   * users.verify_key and password_recovery.reset_key keep their columns
--     but new rows store the hex SHA-256 of the key (64 characters). Legacy
--     rows hold the plaintext key (96 hex characters); the store accepts such
--     a row once, by plaintext match, within the same lifetime as a new key
--     counted from the row's created_at (7 days for verification, 1 hour for
--     a reset), and consumes it. They are left in place here: rewriting them
--     would change legacy data, and the lifetimes retire them anyway.
--   * users.verify_key_expires_at: the expiry of a new verification key;
--     NULL on legacy rows (see above).
--   * reward_rules replaces the executable rewards.sql (S7): one declarative
--     row per reward (amount, lifetime in days). The legacy referral_verify
--     reward (its seeded SQL paid 100 credits expiring in 30 days) becomes
--     the row ('referral_verify', 100, 30). The legacy rewards table is kept
--     as it is and never read again.
--   * reward_payouts records each reward paid, unique per (reward, referred
--     user): a replayed or concurrent verification pays nothing more (C3).
--     Referred users whose metadata already says rewards_referral_verify =
--     true are recorded as paid, so nothing legacy is paid twice.
--   * indexes for key and referral-token lookups; unique ones only where the
--     data allows (as 00002 does), a plain index and a NOTICE otherwise.

-- +goose Up
ALTER TABLE users ALTER COLUMN password TYPE VARCHAR(255);
ALTER TABLE users ADD COLUMN IF NOT EXISTS verify_key_expires_at TIMESTAMP;

CREATE INDEX IF NOT EXISTS users_verify_key_idx ON users (verify_key) WHERE verify_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS password_recovery_reset_key_idx ON password_recovery (reset_key);

-- +goose StatementBegin
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM users WHERE referral_token IS NOT NULL
               GROUP BY referral_token HAVING count(*) > 1) THEN
        RAISE NOTICE 'users has duplicate referral tokens; creating a non-unique index instead';
        CREATE INDEX IF NOT EXISTS users_referral_token_idx ON users (referral_token) WHERE referral_token IS NOT NULL;
    ELSE
        CREATE UNIQUE INDEX IF NOT EXISTS users_referral_token_uniq ON users (referral_token) WHERE referral_token IS NOT NULL;
    END IF;
END
$$;
-- +goose StatementEnd

CREATE TABLE IF NOT EXISTS reward_rules (
    name            VARCHAR(128) PRIMARY KEY,
    amount          INT NOT NULL CHECK (amount >= 0),
    expires_in_days INT CHECK (expires_in_days IS NULL OR expires_in_days > 0),
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    created_at      TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    updated_at      TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC')
);

INSERT INTO reward_rules (name, amount, expires_in_days)
VALUES ('referral_verify', 100, 30)
ON CONFLICT (name) DO NOTHING;

CREATE TABLE IF NOT EXISTS reward_payouts (
    id             INT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    reward_name    VARCHAR(128) NOT NULL REFERENCES reward_rules (name),
    referred_id    INT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    referrer_id    INT REFERENCES users (id) ON DELETE SET NULL,
    amount         INT NOT NULL CHECK (amount >= 0),
    transaction_id INT REFERENCES transactions (id) ON DELETE SET NULL,
    created_at     TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'),
    CONSTRAINT reward_payouts_once UNIQUE (reward_name, referred_id)
);
CREATE INDEX IF NOT EXISTS reward_payouts_referrer_id_idx ON reward_payouts (referrer_id);

-- Rewards the legacy system already paid (it marked the referred user).
INSERT INTO reward_payouts (reward_name, referred_id, referrer_id, amount, created_at)
SELECT DISTINCT ON (r.referred_id) 'referral_verify', r.referred_id, r.referrer_id, 100, r.created_at
FROM referrals r
JOIN users u ON u.id = r.referred_id
WHERE u.metadata::text LIKE '%rewards_referral_verify%'
  AND json_typeof(u.metadata) = 'object'
  AND (u.metadata ->> 'rewards_referral_verify') = 'true'
ORDER BY r.referred_id, r.id
ON CONFLICT ON CONSTRAINT reward_payouts_once DO NOTHING;

-- +goose Down
DROP TABLE IF EXISTS reward_payouts;
DROP TABLE IF EXISTS reward_rules;
DROP INDEX IF EXISTS users_referral_token_uniq;
DROP INDEX IF EXISTS users_referral_token_idx;
DROP INDEX IF EXISTS password_recovery_reset_key_idx;
DROP INDEX IF EXISTS users_verify_key_idx;
ALTER TABLE users DROP COLUMN IF EXISTS verify_key_expires_at;
-- users.password stays VARCHAR(255): argon2id hashes written since may not
-- fit the legacy VARCHAR(128) (they do with the default parameters).
