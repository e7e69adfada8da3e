package credits

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Refund is the reversal of a debit (a transactions row of type refund).
type Refund struct {
	ID      int64
	DebitID int64
	UserID  int64
	// Amount is the number of credits given back: the debit's amount.
	Amount int64
	// Restored lists what went back to each grant, in the debit's
	// consumption order (expired grants included).
	Restored []Allocation
	// ReplacementGrantID is the new grant issued for the credits whose
	// grant had expired; 0 when every grant was still unexpired.
	ReplacementGrantID int64
	// ReplacementAmount is that grant's amount; 0 when there is none.
	ReplacementAmount int64
	CreatedAt         time.Time
	// Replayed is set when the debit had already been refunded; the first
	// refund is returned and nothing changes.
	Replayed bool
}

// refundMetadata is stored in the refund row's metadata, so that a replayed
// refund returns the first result and the history shows what happened.
type refundMetadata struct {
	Restored           []allocationJSON `json:"restored"`
	ReplacementGrantID int64            `json:"replacement_grant_id,omitempty"`
	ReplacementAmount  int64            `json:"replacement_amount,omitempty"`
}

type allocationJSON struct {
	GrantID int64 `json:"grant_id"`
	Amount  int64 `json:"amount"`
}

// Refund gives back exactly what the debit consumed, once (see the package
// documentation): to the same grants, plus a replacement grant expiring
// RefundGrantTTL from now for the part whose grants have expired. Refunding
// an already refunded debit returns the first refund with Replayed set. An
// unknown debit is NotFound; a legacy debit row without allocations is a
// Conflict (there is nothing the ledger knows how to give back).
func (l *Ledger) Refund(ctx context.Context, debitID int64) (Refund, error) {
	if debitID <= 0 {
		return Refund{}, apperr.NotFound("Debit not found")
	}
	r, err := l.refund(ctx, debitID, refundAny, time.Time{})
	if err != nil {
		return Refund{}, wrapRefund(err, fmt.Sprintf("refund debit %d", debitID))
	}
	return r, nil
}

// lookupDebit returns the user and amount of the debit debitID.
func lookupDebit(ctx context.Context, q db.Querier, debitID int64) (int64, int64, error) {
	var userID, amount int64
	err := q.QueryRow(ctx, `SELECT user_id, amount FROM transactions WHERE id = $1 AND type = 'debit'`, debitID).Scan(&userID, &amount)
	return userID, amount, err
}

// RefundByKey is Refund for the user's debit with the idempotency key.
func (l *Ledger) RefundByKey(ctx context.Context, userID int64, key string) (Refund, error) {
	if userID <= 0 || key == "" {
		return Refund{}, apperr.NotFound("Debit not found")
	}
	var debitID int64
	err := l.pool.QueryRow(ctx, `SELECT id FROM transactions WHERE user_id = $1 AND idempotency_key = $2 AND type = 'debit'`,
		userID, key).Scan(&debitID)
	if errors.Is(err, pgx.ErrNoRows) {
		return Refund{}, apperr.Wrap(apperr.KindNotFound, "Debit not found", err)
	}
	if err != nil {
		return Refund{}, fmt.Errorf("refund debit with key %q of user %d: %w", key, userID, err)
	}
	return l.Refund(ctx, debitID)
}

func wrapRefund(err error, op string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Wrap(apperr.KindNotFound, "Debit not found", err)
	}
	if _, ok := apperr.As(err); ok {
		return err
	}
	return fmt.Errorf("%s: %w", op, err)
}

// refundMode says which debits a refund may give back.
type refundMode int

const (
	// refundAny refunds any debit with allocations (an open hold is
	// closed by it).
	refundAny refundMode = iota
	// refundHeld refunds only an open hold (Release).
	refundHeld
	// refundExpired refunds only an open hold whose deadline is at or
	// before the given time (SweepHolds).
	refundExpired
)

// errNotHeld is refund's answer in refundHeld and refundExpired modes when
// the debit is not (or no longer) an open hold that qualifies.
var errNotHeld = errors.New("debit is not an open hold")

func (l *Ledger) refund(ctx context.Context, debitID int64, mode refundMode, expiredAt time.Time) (Refund, error) {
	now := l.clock()
	var out Refund
	err := db.InTx(ctx, l.pool, func(tx pgx.Tx) error {
		userID, amount, err := lookupDebit(ctx, tx, debitID)
		if err != nil {
			return err
		}
		if err := lockUser(ctx, tx, userID); err != nil {
			return err
		}
		if r, found, err := refundOf(ctx, tx, debitID); err != nil || found {
			out = r
			return err
		}
		// Closing the hold is the guard that makes a refund and a
		// settlement of the same hold mutually exclusive: both clear
		// hold_until with a guarded UPDATE on the debit's row, so the
		// second one waits for the first and then finds nothing to do.
		var deadline *time.Time
		if mode == refundExpired {
			deadline = &expiredAt
		}
		tag, err := tx.Exec(ctx, `
UPDATE transactions SET hold_until = NULL, updated_at = $2
WHERE id = $1 AND hold_until IS NOT NULL AND ($3::timestamp IS NULL OR hold_until <= $3::timestamp)`, debitID, now, deadline)
		if err != nil {
			return fmt.Errorf("close hold of debit %d: %w", debitID, err)
		}
		if mode != refundAny && tag.RowsAffected() == 0 {
			return errNotHeld
		}
		allocs, err := allocationsOf(ctx, tx, debitID)
		if err != nil {
			return err
		}
		if len(allocs) == 0 {
			return apperr.Conflict("This debit cannot be refunded")
		}
		expired, err := restore(ctx, tx, allocs, now)
		if err != nil {
			return err
		}
		out = Refund{DebitID: debitID, UserID: userID, Amount: amount, Restored: allocs, CreatedAt: now}
		if expired > 0 {
			until := now.Add(l.refundTTL)
			ref := debitID
			g, err := insertGrant(ctx, tx, grantRow{
				userID: userID, amount: expired, expiresAt: &until, memo: TypeRefund,
				metadata: json.RawMessage(fmt.Sprintf(`{"refund_of":%d}`, debitID)), refundOf: &ref, now: now,
			})
			if err != nil {
				return fmt.Errorf("issue replacement grant: %w", err)
			}
			out.ReplacementGrantID, out.ReplacementAmount = g.ID, g.Amount
		}
		meta := refundMetadata{ReplacementGrantID: out.ReplacementGrantID, ReplacementAmount: out.ReplacementAmount}
		for _, a := range allocs {
			meta.Restored = append(meta.Restored, allocationJSON(a))
		}
		b, err := json.Marshal(meta)
		if err != nil {
			return fmt.Errorf("encode refund metadata: %w", err)
		}
		return tx.QueryRow(ctx, `
INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo, refund_of)
VALUES ($1, $2, $2, NULL, $3, 'refund', $4, 0, 'refund', $5)
RETURNING id`, json.RawMessage(b), now, userID, amount, debitID).Scan(&out.ID)
	})
	return out, err
}

// restore gives each allocation back to its grant and returns how many of
// those credits went to grants that have expired at now.
func restore(ctx context.Context, tx pgx.Tx, allocs []Allocation, now time.Time) (int64, error) {
	grants := make([]int64, len(allocs))
	amounts := make([]int64, len(allocs))
	for i, a := range allocs {
		grants[i], amounts[i] = a.GrantID, a.Amount
	}
	var expired int64
	err := tx.QueryRow(ctx, `
WITH r AS (
    UPDATE transactions t
    SET amount_remaining = t.amount_remaining + u.amount, updated_at = $3
    FROM unnest($1::int[], $2::int[]) AS u(grant_id, amount)
    WHERE t.id = u.grant_id
    RETURNING u.amount, COALESCE(t.expires_at, 'infinity'::timestamp) <= $3 AS expired
)
SELECT COALESCE(sum(amount) FILTER (WHERE expired), 0), count(*) FROM r`, grants, amounts, now).Scan(&expired, new(int64))
	if err != nil {
		return 0, fmt.Errorf("restore grants: %w", err)
	}
	return expired, nil
}

// refundOf returns the existing refund of the debit, if any.
func refundOf(ctx context.Context, q db.Querier, debitID int64) (Refund, bool, error) {
	r := Refund{DebitID: debitID, Replayed: true}
	var raw []byte
	err := q.QueryRow(ctx, `
SELECT id, user_id, amount, metadata, created_at FROM transactions WHERE refund_of = $1 AND type = 'refund'`, debitID).
		Scan(&r.ID, &r.UserID, &r.Amount, &raw, &r.CreatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Refund{}, false, nil
	}
	if err != nil {
		return Refund{}, false, fmt.Errorf("read refund of debit %d: %w", debitID, err)
	}
	r.CreatedAt = r.CreatedAt.UTC()
	var meta refundMetadata
	if json.Unmarshal(raw, &meta) == nil {
		r.ReplacementGrantID, r.ReplacementAmount = meta.ReplacementGrantID, meta.ReplacementAmount
		for _, a := range meta.Restored {
			r.Restored = append(r.Restored, Allocation(a))
		}
	}
	return r, true, nil
}
