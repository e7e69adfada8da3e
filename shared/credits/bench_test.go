package credits_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// contenders is the number of goroutines debiting one user at once.
const contenders = 32

// BenchmarkDebitContention measures debits per second when 32 goroutines
// charge the same user 1 credit each (with idempotency keys, as gpusvc
// does), through a pool of 32 connections, so every debit waits for the
// per-user lock.
func BenchmarkDebitContention(b *testing.B) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dbtest.NewURL(b))
	require.NoError(b, err)
	cfg.MaxConns = contenders
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(b, err)
	b.Cleanup(pool.Close)
	l := credits.NewLedger(pool, credits.Options{})
	user := newUser(b, pool)
	// A realistic spread of grants: 100 of them, soonest-expiring first.
	per := int64(b.N/100 + 1)
	for i := range 100 {
		exp := time.Now().Add(time.Duration(i+1) * time.Hour)
		_, err := l.Grant(ctx, nil, credits.GrantInput{UserID: user, Amount: per, ExpiresAt: &exp, Memo: "bench"})
		require.NoError(b, err)
	}

	var next, failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range contenders {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if _, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 1, IdempotencyKey: fmt.Sprintf("bench-%d", i), Reason: "txt2img"}); err != nil {
					failed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	require.Zero(b, failed.Load(), "debits failed")
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "debits/s")
	requireBalance(b, l, user, per*100-int64(b.N))
}

// seedGrants gives user n grants (a tenth expired, a tenth spent, the rest
// open, in many expiry buckets) and 5 grants each to 2,000 other users, so
// the planner has a real table to choose plans on.
func seedGrants(tb testing.TB, pool *pgxpool.Pool, user int64, n int) {
	tb.Helper()
	ctx := context.Background()
	_, err := pool.Exec(ctx, `
INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo)
SELECT '{}', now() - interval '1 day', now(),
       CASE WHEN i % 10 = 0 THEN now() - interval '1 hour'
            WHEN i % 7 = 0 THEN NULL
            ELSE now() + (i % 90 + 1) * interval '1 day' END,
       $1, 'credit', 10, CASE WHEN i % 10 = 1 THEN 0 ELSE 10 END, 'seed'
FROM generate_series(1, $2) AS i`, user, n)
	require.NoError(tb, err)
	_, err = pool.Exec(ctx, `
WITH u AS (
    INSERT INTO users (email, password, metadata)
    SELECT 'seed' || i || '@example.com', 'x', '{}' FROM generate_series(1, 2000) AS i
    RETURNING id
)
INSERT INTO transactions (metadata, expires_at, user_id, type, amount, amount_remaining, memo)
SELECT '{}', now() + interval '10 days', u.id, 'credit', 10, 10, 'seed'
FROM u, generate_series(1, 5)`)
	require.NoError(tb, err)
	_, err = pool.Exec(ctx, `VACUUM ANALYZE transactions`)
	require.NoError(tb, err)
}

// BenchmarkBalance10k measures the balance of a user with 10,000 grants and
// logs the query plan, which must use transactions_open_credits_idx.
func BenchmarkBalance10k(b *testing.B) {
	ctx := context.Background()
	pool := dbtest.New(b)
	l := credits.NewLedger(pool, credits.Options{})
	user := newUser(b, pool)
	seedGrants(b, pool, user, 10_000)

	plan, err := l.ExplainBalance(ctx, user)
	require.NoError(b, err)
	require.Contains(b, plan, "transactions_open_credits_idx")
	b.Logf("balance query plan for a user with 10,000 grants:\n%s", plan)

	b.ResetTimer()
	for b.Loop() {
		if _, err := l.Balance(ctx, user); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBalanceUsesIndex checks the plan the benchmark reports: the balance of
// a user with 10,000 grants is an index scan of the partial index.
func TestBalanceUsesIndex(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool := dbtest.New(t)
	user := newUser(t, pool)
	seedGrants(t, pool, user, 10_000)
	l := credits.NewLedger(pool, credits.Options{}) // real clock: the seed is relative to now()

	plan, err := l.ExplainBalance(ctx, user)
	require.NoError(t, err)
	require.Contains(t, plan, "transactions_open_credits_idx", plan)
	require.False(t, strings.Contains(plan, "Seq Scan"), plan)

	// 10,000 grants: every 10th expired, every 10th (i%10 = 1) spent.
	requireBalance(t, l, user, 8_000*10)
}
