-- Credit holds (shared/credits, issue 14): a debit made by a synchronous
-- request is a hold until the request settles it (its images stored, its
-- answer ready) or it is refunded. A hold whose request died with its host
-- is refunded by the sweeper once its deadline has passed.
--
--   * hold_until: on a 'debit' row, the deadline of a hold that is neither
--     settled nor refunded (UTC, like the other legacy timestamps); NULL for
--     a settled hold, a refunded one and every plain debit. Settling and
--     refunding both clear it with one guarded UPDATE (... WHERE hold_until
--     IS NOT NULL), so exactly one of them wins.
--   * hold_owner: who made the hold (the gpusvc's address), for operators.
-- No legacy row is changed: both columns are NULL on existing rows.

-- +goose Up
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS hold_until TIMESTAMP;
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS hold_owner VARCHAR(255);
-- The sweeper's scan: open holds by deadline.
CREATE INDEX IF NOT EXISTS transactions_open_holds_idx ON transactions (hold_until) WHERE hold_until IS NOT NULL;

-- +goose Down
DROP INDEX IF EXISTS transactions_open_holds_idx;
ALTER TABLE transactions DROP COLUMN IF EXISTS hold_owner;
ALTER TABLE transactions DROP COLUMN IF EXISTS hold_until;
