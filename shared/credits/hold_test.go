package credits_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
)

const holdFor = 5 * time.Minute

// hold charges 3 credits as a hold of holdFor, as a synchronous request
// does.
func hold(t *testing.T, l *credits.Ledger, user int64, key string) credits.Debit {
	t.Helper()
	d, err := l.Debit(context.Background(), credits.DebitInput{UserID: user, Amount: 3, IdempotencyKey: key,
		Reason: "txt2img", HoldFor: holdFor, HoldOwner: "http://10.0.0.7:8091"})
	require.NoError(t, err)
	require.NotNil(t, d.HoldUntil)
	require.Equal(t, t0.Add(holdFor), *d.HoldUntil)
	return d
}

func countRefunds(t *testing.T, pool interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}, debitID int64) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT count(*) FROM transactions WHERE refund_of = $1 AND type = 'refund'`, debitID).Scan(&n))
	return n
}

// TestSweepRefundsAbandonedHoldOnce is the debit left by a killed process
// (issue 14): nobody settles or releases it. Before its deadline the sweep
// leaves it; after it, concurrent and repeated sweeps refund it exactly
// once.
func TestSweepRefundsAbandonedHoldOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	grant(t, l, user, 10, nil)
	d := hold(t, l, user, "req-1")
	requireBalance(t, l, user, 7)

	c.Advance(holdFor - time.Second)
	res, err := l.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, res.Refunded, "a hold within its deadline is left alone")
	requireBalance(t, l, user, 7)

	c.Advance(time.Second) // exactly at the deadline
	var wg sync.WaitGroup
	results := make([]credits.SweepResult, 8)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			results[i], err = l.SweepHolds(ctx, 0)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	refunded := 0
	for _, r := range results {
		refunded += len(r.Refunded)
	}
	require.Equal(t, 1, refunded, "concurrent sweepers refund the hold once")
	requireBalance(t, l, user, 10)
	require.Equal(t, 1, countRefunds(t, pool, d.ID))

	res, err = l.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, res.Refunded)
	requireBalance(t, l, user, 10)

	// The request, had it survived, can neither settle nor refund again.
	require.ErrorIs(t, l.Settle(ctx, nil, d.ID), credits.ErrHoldReleased)
	r, err := l.Release(ctx, d.ID)
	require.NoError(t, err)
	require.True(t, r.Replayed)
	require.Equal(t, 1, countRefunds(t, pool, d.ID))
	requireBalance(t, l, user, 10)
	ae, ok := apperr.As(credits.ErrHoldReleased)
	require.True(t, ok)
	require.Equal(t, apperr.KindTimeout, ae.Kind)
}

// TestSettleAndSweepAtTheBound races the request's settlement (in the
// transaction that stores its result) against sweepers at the deadline:
// every time exactly one wins. Settled means kept and never refunded;
// swept means refunded once and the result rolled back.
func TestSettleAndSweepAtTheBound(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	const rounds = 30
	grant(t, l, user, 3*rounds, nil)
	var ds []credits.Debit
	for i := range rounds {
		ds = append(ds, hold(t, l, user, "race-"+string(rune('a'+i))))
	}
	c.Advance(holdFor) // every hold is exactly at its bound
	_, err := pool.Exec(ctx, `CREATE TABLE results (debit_id INT PRIMARY KEY)`)
	require.NoError(t, err)

	settled := make([]bool, rounds)
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// Jitter, so that some requests come before the sweepers
			// and some after (both outcomes are exercised).
			time.Sleep(time.Duration(rand.IntN(150)) * time.Millisecond)
			// The request: store its result and settle, in one transaction.
			err := db.InTx(ctx, pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `INSERT INTO results (debit_id) VALUES ($1)`, d.ID); err != nil {
					return err
				}
				return l.Settle(ctx, tx, d.ID)
			})
			if err == nil {
				settled[i] = true
				return
			}
			require.ErrorIs(t, err, credits.ErrHoldReleased)
		}()
		go func() {
			defer wg.Done()
			_, err := l.SweepHolds(ctx, 0)
			require.NoError(t, err)
		}()
	}
	wg.Wait()
	// A last sweep picks up any hold whose sweeper ran before its request
	// moved (none is left open).
	_, err = l.SweepHolds(ctx, 0)
	require.NoError(t, err)

	kept := int64(0)
	nSettled := 0
	for i, d := range ds {
		var results int
		require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM results WHERE debit_id = $1`, d.ID).Scan(&results))
		refunds := countRefunds(t, pool, d.ID)
		if settled[i] {
			nSettled++
			kept += d.Amount
			require.Equal(t, 1, results, "a settled request keeps its result")
			require.Zero(t, refunds, "a settled request is never refunded")
		} else {
			require.Zero(t, results, "a swept request delivers nothing")
			require.Equal(t, 1, refunds, "a swept request is refunded once")
		}
		var open bool
		require.NoError(t, pool.QueryRow(ctx, `SELECT hold_until IS NOT NULL FROM transactions WHERE id = $1`, d.ID).Scan(&open))
		require.False(t, open)
	}
	requireBalance(t, l, user, 3*rounds-kept)
	t.Logf("%d of %d settled, %d swept", nSettled, rounds, rounds-nSettled)
}

// TestReleaseAndSettle covers the request's own outcomes: a settled hold is
// never refunded by Release or the sweep; a released hold cannot be
// settled; plain debits and free charges settle as a no-op.
func TestReleaseAndSettle(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	grant(t, l, user, 10, nil)

	kept := hold(t, l, user, "kept")
	require.NoError(t, l.Settle(ctx, nil, kept.ID))
	require.NoError(t, l.Settle(ctx, nil, kept.ID), "settling twice is a no-op")
	_, err := l.Release(ctx, kept.ID)
	require.True(t, apperr.Is(err, apperr.KindConflict), "a settled hold cannot be released: %v", err)

	failed := hold(t, l, user, "failed")
	r, err := l.Release(ctx, failed.ID)
	require.NoError(t, err)
	require.False(t, r.Replayed)
	require.Equal(t, int64(3), r.Amount)
	require.ErrorIs(t, l.Settle(ctx, nil, failed.ID), credits.ErrHoldReleased)
	requireBalance(t, l, user, 7)

	c.Advance(2 * holdFor)
	res, err := l.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, res.Refunded, "settled and released holds are not swept")
	requireBalance(t, l, user, 7)

	plain, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 1})
	require.NoError(t, err)
	require.Nil(t, plain.HoldUntil)
	require.NoError(t, l.Settle(ctx, nil, plain.ID))
	require.NoError(t, l.Settle(ctx, nil, 0), "a free charge settles as a no-op")
	require.True(t, apperr.Is(l.Settle(ctx, nil, 1<<30), apperr.KindNotFound))

	// A replayed hold key returns the hold as it is now.
	again, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 3, IdempotencyKey: "kept", HoldFor: holdFor})
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Nil(t, again.HoldUntil)
}
