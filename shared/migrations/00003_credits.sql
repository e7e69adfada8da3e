-- The credits ledger (shared/credits): grants that are actually spent.
--
-- transactions keeps its legacy columns and meaning, so production rows of
-- type 'credit' count as grants: amount, amount_remaining, expires_at (NULL
-- now means "never expires"), memo, metadata. This migration only adds:
--   * idempotency_key: the caller's key of a debit (or a grant); unique per
--     user, so the same key twice is one entry.
--   * refund_of: on a 'refund' row (and on the replacement 'credit' a refund
--     may issue) the id of the debit it reverses; one refund per debit.
--   * transaction_allocations: which grants a debit consumed, and how much
--     of each.
--   * a CHECK 0 <= amount_remaining <= amount, added NOT VALID so legacy rows
--     are never re-checked or rejected; it is validated only when every
--     existing row already passes (otherwise a NOTICE says so).
--   * the partial index the balance and the consumption order use, and one
--     for the newest-first history.
-- No legacy row is rewritten.

-- +goose Up
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS idempotency_key VARCHAR(255);
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS refund_of INT REFERENCES transactions (id) ON DELETE CASCADE;

-- +goose StatementBegin
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_constraint
                   WHERE conrelid = 'transactions'::regclass AND conname = 'transactions_amount_remaining_range') THEN
        ALTER TABLE transactions ADD CONSTRAINT transactions_amount_remaining_range
            CHECK (amount_remaining >= 0 AND amount_remaining <= amount) NOT VALID;
    END IF;
    IF EXISTS (SELECT 1 FROM transactions WHERE NOT (amount_remaining >= 0 AND amount_remaining <= amount)) THEN
        RAISE NOTICE 'transactions has rows outside 0 <= amount_remaining <= amount; the CHECK stays NOT VALID (new and updated rows are checked)';
    ELSE
        ALTER TABLE transactions VALIDATE CONSTRAINT transactions_amount_remaining_range;
    END IF;
END
$$;
-- +goose StatementEnd

CREATE TABLE IF NOT EXISTS transaction_allocations (
    debit_id INT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
    grant_id INT NOT NULL REFERENCES transactions (id) ON DELETE CASCADE,
    amount   INT NOT NULL CHECK (amount > 0),
    PRIMARY KEY (debit_id, grant_id)
);
CREATE INDEX IF NOT EXISTS transaction_allocations_grant_id_idx ON transaction_allocations (grant_id);

CREATE UNIQUE INDEX IF NOT EXISTS transactions_user_id_idempotency_key_uniq
    ON transactions (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL;
CREATE UNIQUE INDEX IF NOT EXISTS transactions_refund_of_uniq
    ON transactions (refund_of) WHERE type = 'refund';
CREATE INDEX IF NOT EXISTS transactions_refund_of_idx ON transactions (refund_of) WHERE refund_of IS NOT NULL;

-- Open grants in consumption order (soonest expiry first, never-expiring
-- last, then oldest). The balance is a range scan of this index:
-- user_id = $1 AND COALESCE(expires_at, 'infinity') > now.
CREATE INDEX IF NOT EXISTS transactions_open_credits_idx
    ON transactions (user_id, (COALESCE(expires_at, 'infinity'::timestamp)), created_at, id)
    INCLUDE (amount_remaining, expires_at)
    WHERE type = 'credit' AND amount_remaining > 0 AND amount_remaining <= amount;

CREATE INDEX IF NOT EXISTS transactions_user_id_created_at_idx
    ON transactions (user_id, created_at DESC, id DESC);

-- +goose Down
DROP INDEX IF EXISTS transactions_user_id_created_at_idx;
DROP INDEX IF EXISTS transactions_open_credits_idx;
DROP INDEX IF EXISTS transactions_refund_of_idx;
DROP INDEX IF EXISTS transactions_refund_of_uniq;
DROP INDEX IF EXISTS transactions_user_id_idempotency_key_uniq;
DROP TABLE IF EXISTS transaction_allocations;
ALTER TABLE transactions DROP CONSTRAINT IF EXISTS transactions_amount_remaining_range;
ALTER TABLE transactions DROP COLUMN IF EXISTS refund_of;
ALTER TABLE transactions DROP COLUMN IF EXISTS idempotency_key;
