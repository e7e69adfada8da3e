package credits

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/db"
)

// ErrHoldReleased is Settle's answer when the hold was refunded before it
// could be settled (the sweeper found it past its deadline): the request
// must not deliver its result. It is a 504 for the client, whose credits
// are back.
var ErrHoldReleased = apperr.New(apperr.KindTimeout, "The request took too long and was not completed; its credits were refunded")

// Settle makes a hold final: the credits stay spent and the sweeper no
// longer refunds them. q is where it runs: nil for the ledger's pool, or
// the caller's transaction, so that the request's result (its image rows)
// and the settlement commit together. It is one guarded UPDATE on the
// debit's row, mutually exclusive with Release and SweepHolds: when the
// hold was refunded first, Settle returns ErrHoldReleased and the caller
// must roll back its result. Settling a settled hold or a plain debit
// does nothing; a zero debitID (a free charge) does nothing. An unknown
// debit is NotFound.
func (l *Ledger) Settle(ctx context.Context, q db.Querier, debitID int64) error {
	if debitID == 0 {
		return nil
	}
	if q == nil {
		q = l.pool
	}
	tag, err := q.Exec(ctx, `
UPDATE transactions SET hold_until = NULL, updated_at = $2 WHERE id = $1 AND type = 'debit' AND hold_until IS NOT NULL`,
		debitID, l.clock())
	if err != nil {
		return fmt.Errorf("settle debit %d: %w", debitID, err)
	}
	if tag.RowsAffected() == 1 {
		return nil
	}
	// Not an open hold: settled already, a plain debit, or refunded. This
	// is a statement of its own, so under READ COMMITTED it sees a refund
	// committed by the sweeper the UPDATE above waited for.
	var exists, refunded bool
	err = q.QueryRow(ctx, `
SELECT EXISTS (SELECT 1 FROM transactions WHERE id = $1 AND type = 'debit'),
       EXISTS (SELECT 1 FROM transactions WHERE refund_of = $1 AND type = 'refund')`, debitID).Scan(&exists, &refunded)
	switch {
	case err != nil:
		return fmt.Errorf("settle debit %d: %w", debitID, err)
	case !exists:
		return apperr.NotFound("Debit not found")
	case refunded:
		return ErrHoldReleased
	}
	return nil
}

// Release refunds a hold that has not been settled, once (the failure path
// of the request that made it). A hold that was already refunded returns
// that refund with Replayed set; a settled hold or a plain debit is a
// Conflict and changes nothing, so a request whose settlement committed is
// never refunded as well. An unknown debit is NotFound.
func (l *Ledger) Release(ctx context.Context, debitID int64) (Refund, error) {
	if debitID <= 0 {
		return Refund{}, apperr.NotFound("Debit not found")
	}
	r, err := l.refund(ctx, debitID, refundHeld, time.Time{})
	if errors.Is(err, errNotHeld) {
		return Refund{}, apperr.Conflict("This charge was settled and cannot be released")
	}
	if err != nil {
		return Refund{}, wrapRefund(err, fmt.Sprintf("release hold %d", debitID))
	}
	return r, nil
}

// DefaultSweepInterval is RunSweeper's interval when none is given.
const DefaultSweepInterval = 15 * time.Second

// SweepResult is what one SweepHolds call did.
type SweepResult struct {
	// Refunded are the holds this call refunded (not those another
	// sweeper or the request refunded first).
	Refunded []Refund
	// Skipped counts holds found past their deadline that were settled or
	// refunded by someone else before this call got to them.
	Skipped int
}

// SweepHolds refunds up to limit holds whose deadline has passed, oldest
// deadline first: the debits of requests that died (a killed gpusvc)
// before settling or releasing them. Each refund is guarded (see Settle),
// so any number of sweepers may run at once and each hold is refunded at
// most once; a hold settled meanwhile is skipped. Errors of single holds
// do not stop the sweep; they are returned joined. limit <= 0 means 100.
func (l *Ledger) SweepHolds(ctx context.Context, limit int) (SweepResult, error) {
	if limit <= 0 {
		limit = 100
	}
	now := l.clock()
	rows, err := l.pool.Query(ctx, `
SELECT id FROM transactions WHERE hold_until IS NOT NULL AND hold_until <= $1 ORDER BY hold_until, id LIMIT $2`, now, limit)
	if err != nil {
		return SweepResult{}, fmt.Errorf("find expired holds: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return SweepResult{}, fmt.Errorf("find expired holds: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return SweepResult{}, fmt.Errorf("find expired holds: %w", err)
	}
	var out SweepResult
	var errs []error
	for _, id := range ids {
		r, err := l.refund(ctx, id, refundExpired, now)
		switch {
		case errors.Is(err, errNotHeld):
			out.Skipped++
		case err != nil:
			errs = append(errs, wrapRefund(err, fmt.Sprintf("refund expired hold %d", id)))
		case r.Replayed:
			out.Skipped++
		default:
			out.Refunded = append(out.Refunded, r)
		}
	}
	return out, errors.Join(errs...)
}

// RunSweeper calls SweepHolds every interval until ctx ends, and once at
// once. report receives every call's result (for the caller's log and
// metrics; this package does not log). A sweep that refunded a full page
// runs again without waiting. interval <= 0 means DefaultSweepInterval.
func (l *Ledger) RunSweeper(ctx context.Context, interval time.Duration, report func(SweepResult, error)) {
	const page = 100
	if interval <= 0 {
		interval = DefaultSweepInterval
	}
	sweep := func(ctx context.Context) {
		for {
			res, err := l.SweepHolds(ctx, page)
			if ctx.Err() != nil {
				return
			}
			report(res, err)
			if err != nil || len(res.Refunded)+res.Skipped < page {
				return
			}
		}
	}
	sweep(ctx)
	clock.Every(ctx, interval, sweep)
}
