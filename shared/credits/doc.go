// Package credits is the prepaid-credits ledger shared by accountsvc
// (balance, signup bonus, referral rewards, operator grants, history) and
// gpusvc (charging for generation). There is exactly one implementation of
// debit and refund, this one.
//
// # Model
//
// The ledger lives in the legacy `transactions` table (migration 00003 adds
// idempotency_key, refund_of and the transaction_allocations table):
//
//   - A grant is a row of type "credit": amount (credits granted),
//     amount_remaining (not yet spent), expires_at, memo, metadata. Legacy
//     rows of type "credit" are grants with their legacy meaning.
//   - A debit is a row of type "debit" with amount = the credits charged and
//     amount_remaining = 0; memo is the reason. Its transaction_allocations
//     rows list the grants it consumed and how much of each.
//   - A refund is a row of type "refund" with amount = the credits given back,
//     amount_remaining = 0 and refund_of = the debit's id. There is at most
//     one refund per debit (a unique index).
//
// # Balance and expiry
//
// The balance is the sum of amount_remaining over the user's grants that
// have not expired at the ledger's clock: expires_at > now. A NULL expires_at
// means the grant never expires (the legacy code ignored such rows; "never"
// is what NULL naturally means and what the signup bonus uses when its
// lifetime is configured as 0 days). Expired grants simply stop counting: no
// cron job has to run for the balance or a debit to be correct. Time is UTC;
// the legacy timestamp columns have no time zone and are read as UTC. A
// legacy row that breaks 0 ≤ amount_remaining ≤ amount (the CHECK added by
// migration 00003 stays NOT VALID for such rows) is ignored: it neither
// counts nor is consumed, so it can never make a debit fail.
//
// # Debit
//
// Debit consumes grants soonest-expiring first (never-expiring ones last),
// then oldest (created_at), then by id, in one database transaction. It takes
// a per-user row lock (SELECT ... FROM users ... FOR NO KEY UPDATE, which does
// not block inserts that reference the user), so debits and refunds of one
// user are serialized while those of different users run in parallel; the
// grants are consumed by a single UPDATE ... RETURNING, never by a
// read-check-write in Go. A short balance returns the apperr kind
// InsufficientCredits (HTTP 402 {"message": "Insufficient credits",
// "credits": <balance>, "required": <amount>}) and changes nothing.
//
// An idempotency key makes a debit happen once: the same (user, key) again
// returns the first debit with Replayed set, whatever happened in between
// (a unique index enforces it). Reusing a key for a different amount, or a key
// already used by a grant, is a Conflict. A debit without a key is never
// deduplicated. Keys are per user and shared by every entry type.
//
// # Refund
//
// Refund reverses a debit exactly once; a second refund of the same debit is
// a no-op that returns the first refund with Replayed set. Every allocation
// is given back to the grant it came from. Credits given back to a grant that
// has expired in the meantime cannot be spent, so for those the refund also
// issues one replacement grant of their total (type "credit", refund_of = the
// debit, memo "refund"), expiring Options.RefundGrantTTL after the refund (30
// days by default). Giving the credits back to the expired grant first keeps
// the books exact: the expired grant ends as if the debit had never happened.
//
// # Holds: crash-consistent charging
//
// A synchronous request (gpusvc's POST /images and model routes) charges
// before it runs and cannot know whether its process survives the run, so
// its debit is a hold (DebitInput.HoldFor): an ordinary debit row whose
// hold_until column carries a deadline (and hold_owner the host). Exactly
// one of three things then ends the hold, each by clearing hold_until with
// one guarded UPDATE on the debit's row (... WHERE hold_until IS NOT NULL),
// so that they are mutually exclusive:
//
//   - Settle: the request delivered. It runs in the same transaction as the
//     request's result (the image rows), so images exist exactly when the
//     hold is settled. A hold refunded first makes Settle fail with
//     ErrHoldReleased, and the result is rolled back (the client gets 504).
//   - Release: the request failed and gives the credits back itself.
//   - SweepHolds: the deadline passed with neither (the process died); any
//     live service refunds the hold (RunSweeper). Concurrent sweepers are
//     safe: the guard and the one-refund-per-debit index make the refund
//     happen once.
//
// The deadline must exceed the longest a request can run (gpusvc uses
// GPU_QUEUE_WAIT + GENERATION_TIMEOUT + CHARGE_HOLD_MARGIN); a request that
// outlives it anyway is refunded and fails, it is never both refunded and
// delivered. Refund (by id or key) is unguarded: it closes an open hold
// too, and is for debits that are not holds (async jobs, operators).
//
// # Invariants
//
// At every commit, for every grant 0 <= amount_remaining <= amount (also a
// CHECK constraint), every debit's allocations sum to its amount, and per user
//
//	Σ debit amounts − Σ refund amounts = Σ over grants (amount − amount_remaining)
//
// for the entries written by this ledger. Legacy grants that the old system
// recorded as partly used (amount_remaining < amount with no debit rows)
// count as consumed before the ledger existed.
//
// # Pricing, signup bonus, anonymous callers
//
// Pricing maps each operation to a per-unit price (per image, per request or
// per second; see DefaultPricing and LoadPricing for the table and the
// PRICE_* variables). Config adds the signup bonus (SIGNUP_BONUS_CREDITS,
// SIGNUP_BONUS_DAYS: 0 credits by default in production, 50 credits for 30
// days in the local stack) and the refund grant lifetime. Callers without a
// token run as the legacy anonymous user 67 (when ANONYMOUS_ENABLED); they
// are never charged (see Ledger.Charge) and are rate-limited instead.
//
// This package must never import HTTP frameworks, write HTTP responses or
// log: it returns *apperr.Error values for the shared error handler. It must
// never read the environment except through a config.Loader handed to it.
package credits
