package credits

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// DebitInput describes a charge.
type DebitInput struct {
	// UserID pays. Required.
	UserID int64
	// Amount is the number of credits, 1..MaxAmount.
	Amount int64
	// IdempotencyKey, when set, makes the debit happen once per user (for
	// example the generation job's id). Empty means no deduplication.
	IdempotencyKey string
	// Reason is stored as the memo (e.g. "txt2img"); empty means "debit".
	Reason string
	// Metadata is an optional JSON object stored with the row.
	Metadata json.RawMessage
	// HoldFor, when positive, makes the debit a hold: it must be settled
	// (Settle) or released (Release) within HoldFor, or the sweeper
	// (SweepHolds) refunds it. Zero makes a plain debit, settled at once.
	HoldFor time.Duration
	// HoldOwner names who holds the credits (a gpusvc's address), for
	// operators; at most MaxKeyLen characters.
	HoldOwner string
}

// Debit is a recorded charge (a transactions row of type debit).
type Debit struct {
	// ID is the debit's row id; 0 for a Free charge, which writes nothing.
	ID     int64
	UserID int64
	Amount int64
	// IdempotencyKey is the caller's key, "" when none.
	IdempotencyKey string
	Reason         string
	Metadata       json.RawMessage
	// Allocations are the grants consumed, in consumption order.
	Allocations []Allocation
	CreatedAt   time.Time
	// Replayed is set when an earlier debit with the same idempotency key
	// was returned instead of charging again.
	Replayed bool
	// Free is set by Charge for callers that are not charged (anonymous
	// callers, zero-priced operations); nothing was written.
	Free bool
	// HoldUntil is the deadline of a hold that is neither settled nor
	// refunded; nil for a plain debit and a settled or refunded hold.
	HoldUntil *time.Time
}

// Debit charges a user, consuming grants soonest-expiring first, then
// oldest, atomically (see the package documentation). A short balance is
// the apperr kind InsufficientCredits, with the balance and the amount, and
// changes nothing. An unknown user is NotFound. With an idempotency key
// already used by a debit of the same amount, the first debit is returned
// with Replayed set; with a different amount, or a key used by a grant, the
// result is a Conflict.
func (l *Ledger) Debit(ctx context.Context, in DebitInput) (Debit, error) {
	if in.UserID <= 0 {
		return Debit{}, apperr.Invalid("user_id must be a positive integer")
	}
	if err := validateAmount(in.Amount); err != nil {
		return Debit{}, err
	}
	if in.Reason == "" {
		in.Reason = TypeDebit
	}
	if err := validateText("reason", in.Reason, MaxMemoLen); err != nil {
		return Debit{}, err
	}
	if err := validateText("idempotency key", in.IdempotencyKey, MaxKeyLen); err != nil {
		return Debit{}, err
	}
	if err := validateText("hold owner", in.HoldOwner, MaxKeyLen); err != nil {
		return Debit{}, err
	}
	if in.HoldFor < 0 {
		return Debit{}, apperr.Invalid("hold must not be negative")
	}
	meta, err := normalizeMetadata(in.Metadata)
	if err != nil {
		return Debit{}, err
	}
	now := l.clock()

	var out Debit
	err = db.InTx(ctx, l.pool, func(tx pgx.Tx) error {
		if err := lockUser(ctx, tx, in.UserID); err != nil {
			return err
		}
		if in.IdempotencyKey != "" {
			d, found, err := debitByKey(ctx, tx, in.UserID, in.IdempotencyKey)
			if err != nil {
				return err
			}
			if found {
				if d.Amount != in.Amount {
					return apperr.Conflict("Idempotency key already used for a different amount")
				}
				d.Replayed = true
				out = d
				return nil
			}
		}
		allocs, taken, err := consume(ctx, tx, in.UserID, in.Amount, now)
		if err != nil {
			return err
		}
		if taken < in.Amount {
			// Everything available was taken, so taken is the balance;
			// returning an error rolls the consumption back.
			return apperr.InsufficientCredits(taken, in.Amount)
		}
		out = Debit{UserID: in.UserID, Amount: in.Amount, IdempotencyKey: in.IdempotencyKey,
			Reason: in.Reason, Metadata: meta, Allocations: allocs}
		if in.HoldFor > 0 {
			until := now.Add(in.HoldFor).Truncate(time.Microsecond)
			out.HoldUntil = &until
		}
		out.ID, out.CreatedAt, err = insertDebit(ctx, tx, out, in.HoldOwner, now)
		return err
	})
	if err != nil {
		if db.IsUniqueViolation(err, "transactions_user_id_idempotency_key_uniq") {
			return Debit{}, apperr.Wrap(apperr.KindConflict, "Idempotency key already used for a different entry", err)
		}
		if _, ok := apperr.As(err); ok {
			return Debit{}, err
		}
		return Debit{}, fmt.Errorf("debit %d credits from user %d: %w", in.Amount, in.UserID, err)
	}
	return out, nil
}

// consumeSQL takes up to $3 credits from the user's open grants in
// consumption order, in one statement. Every open grant holds at least one
// credit, so the first $3 grants always suffice when the balance does; the
// LIMIT keeps a user with thousands of grants cheap. When the balance is
// short, every open grant is emptied and the caller rolls back.
const consumeSQL = `
WITH open AS (
    SELECT id, amount_remaining, COALESCE(expires_at, 'infinity'::timestamp) AS expiry, created_at
    FROM transactions
    WHERE user_id = $1 AND type = 'credit' AND amount_remaining > 0 AND amount_remaining <= amount
      AND COALESCE(expires_at, 'infinity'::timestamp) > $2
    ORDER BY COALESCE(expires_at, 'infinity'::timestamp), created_at, id
    LIMIT $3
), ranked AS (
    SELECT id, amount_remaining,
           row_number() OVER (ORDER BY expiry, created_at, id) AS pos,
           COALESCE(sum(amount_remaining) OVER (ORDER BY expiry, created_at, id
                    ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
    FROM open
), take AS (
    SELECT id, LEAST(amount_remaining, $3 - before) AS n, pos
    FROM ranked
    WHERE before < $3
)
UPDATE transactions t
SET amount_remaining = t.amount_remaining - take.n, updated_at = $2
FROM take
WHERE t.id = take.id
RETURNING t.id, take.n, take.pos`

func consume(ctx context.Context, tx pgx.Tx, userID, amount int64, now time.Time) ([]Allocation, int64, error) {
	rows, err := tx.Query(ctx, consumeSQL, userID, now, amount)
	if err != nil {
		return nil, 0, fmt.Errorf("consume grants: %w", err)
	}
	type taken struct {
		Allocation
		pos int64
	}
	list, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (taken, error) {
		var t taken
		err := r.Scan(&t.GrantID, &t.Amount, &t.pos)
		return t, err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("consume grants: %w", err)
	}
	// RETURNING has no order; restore the consumption order.
	slices.SortFunc(list, func(a, b taken) int { return cmp.Compare(a.pos, b.pos) })
	allocs := make([]Allocation, len(list))
	var total int64
	for i, t := range list {
		allocs[i] = t.Allocation
		total += t.Amount
	}
	return allocs, total, nil
}

// insertDebit writes the debit row and its allocations in one statement.
func insertDebit(ctx context.Context, tx pgx.Tx, d Debit, owner string, now time.Time) (int64, time.Time, error) {
	grants := make([]int64, len(d.Allocations))
	amounts := make([]int64, len(d.Allocations))
	for i, a := range d.Allocations {
		grants[i], amounts[i] = a.GrantID, a.Amount
	}
	var key *string
	if d.IdempotencyKey != "" {
		key = &d.IdempotencyKey
	}
	var holdOwner *string
	if d.HoldUntil != nil && owner != "" {
		holdOwner = &owner
	}
	var id int64
	err := tx.QueryRow(ctx, `
WITH d AS (
    INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo, idempotency_key, hold_until, hold_owner)
    VALUES ($1, $2, $2, NULL, $3, 'debit', $4, 0, $5, $6, $9, $10)
    RETURNING id
), a AS (
    INSERT INTO transaction_allocations (debit_id, grant_id, amount)
    SELECT d.id, u.grant_id, u.amount FROM d, unnest($7::int[], $8::int[]) AS u(grant_id, amount)
)
SELECT id FROM d`,
		d.Metadata, now, d.UserID, d.Amount, d.Reason, key, grants, amounts, d.HoldUntil, holdOwner).Scan(&id)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("insert debit: %w", err)
	}
	return id, now, nil
}

// debitByKey returns the user's entry with the idempotency key. An entry
// that is not a debit is a Conflict.
func debitByKey(ctx context.Context, q db.Querier, userID int64, key string) (Debit, bool, error) {
	var typ string
	var d Debit
	err := q.QueryRow(ctx, `
SELECT id, type, user_id, amount, memo, metadata, created_at, hold_until
FROM transactions WHERE user_id = $1 AND idempotency_key = $2`, userID, key).
		Scan(&d.ID, &typ, &d.UserID, &d.Amount, &d.Reason, &d.Metadata, &d.CreatedAt, &d.HoldUntil)
	if errors.Is(err, pgx.ErrNoRows) {
		return Debit{}, false, nil
	}
	if err != nil {
		return Debit{}, false, fmt.Errorf("read debit with key %q: %w", key, err)
	}
	if typ != TypeDebit {
		return Debit{}, false, apperr.Conflict("Idempotency key already used for a different entry")
	}
	d.IdempotencyKey = key
	d.CreatedAt = d.CreatedAt.UTC()
	if d.HoldUntil != nil {
		t := d.HoldUntil.UTC()
		d.HoldUntil = &t
	}
	if d.Allocations, err = allocationsOf(ctx, q, d.ID); err != nil {
		return Debit{}, false, err
	}
	return d, true, nil
}

// allocationsOf returns a debit's allocations in consumption order.
func allocationsOf(ctx context.Context, q db.Querier, debitID int64) ([]Allocation, error) {
	rows, err := q.Query(ctx, `
SELECT a.grant_id, a.amount
FROM transaction_allocations a JOIN transactions g ON g.id = a.grant_id
WHERE a.debit_id = $1
ORDER BY COALESCE(g.expires_at, 'infinity'::timestamp), g.created_at, g.id`, debitID)
	if err != nil {
		return nil, fmt.Errorf("read allocations of debit %d: %w", debitID, err)
	}
	allocs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Allocation])
	if err != nil {
		return nil, fmt.Errorf("read allocations of debit %d: %w", debitID, err)
	}
	return allocs, nil
}
