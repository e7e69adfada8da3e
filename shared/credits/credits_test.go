package credits_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// clock is a settable clock safe for concurrent use.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newLedger(tb testing.TB) (*pgxpool.Pool, *credits.Ledger, *clock) {
	tb.Helper()
	pool := dbtest.New(tb)
	c := &clock{now: t0}
	return pool, credits.NewLedger(pool, credits.Options{Now: c.Now}), c
}

func newUser(tb testing.TB, pool *pgxpool.Pool) int64 {
	tb.Helper()
	var id int64
	err := pool.QueryRow(context.Background(),
		`INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("u%d@example.com", rand.Int64())).Scan(&id)
	require.NoError(tb, err)
	return id
}

func days(n int) *time.Time {
	t := t0.Add(time.Duration(n) * 24 * time.Hour)
	return &t
}

func grant(tb testing.TB, l *credits.Ledger, user, amount int64, expires *time.Time) credits.Grant {
	tb.Helper()
	g, err := l.Grant(context.Background(), nil, credits.GrantInput{UserID: user, Amount: amount, ExpiresAt: expires, Memo: "test"})
	require.NoError(tb, err)
	return g
}

func requireBalance(tb testing.TB, l *credits.Ledger, user, want int64) {
	tb.Helper()
	got, err := l.Balance(context.Background(), user)
	require.NoError(tb, err)
	require.Equal(tb, want, got, "balance of user %d", user)
}

func requireInsufficient(tb testing.TB, err error, have, need int64) {
	tb.Helper()
	require.Error(tb, err)
	ae, ok := apperr.As(err)
	require.True(tb, ok, "not an apperr: %v", err)
	require.Equal(tb, apperr.KindInsufficientCredits, ae.Kind)
	require.Equal(tb, "Insufficient credits", ae.Message)
	require.Equal(tb, map[string]any{"credits": have, "required": need}, ae.Fields)
}

// requireInvariants checks the ledger invariants over the whole database:
// 0 <= amount_remaining <= amount per grant; every debit's allocations sum
// to its amount; per grant, amount − amount_remaining equals what unrefunded
// debits took from it; per user, debited − refunded = Σ (amount −
// amount_remaining) over grants.
func requireInvariants(tb testing.TB, pool *pgxpool.Pool) {
	tb.Helper()
	ctx := context.Background()
	var badGrants, badDebits, badConsumed, badUsers int
	err := pool.QueryRow(ctx, `
SELECT
  (SELECT count(*) FROM transactions WHERE type = 'credit' AND (amount_remaining < 0 OR amount_remaining > amount)),
  (SELECT count(*) FROM transactions d WHERE type = 'debit'
     AND amount <> (SELECT COALESCE(sum(amount), 0) FROM transaction_allocations a WHERE a.debit_id = d.id)),
  (SELECT count(*) FROM transactions g WHERE type = 'credit'
     AND amount - amount_remaining <> (
       SELECT COALESCE(sum(a.amount), 0) FROM transaction_allocations a
       WHERE a.grant_id = g.id
         AND NOT EXISTS (SELECT 1 FROM transactions r WHERE r.type = 'refund' AND r.refund_of = a.debit_id))),
  (SELECT count(*) FROM users u WHERE
       COALESCE((SELECT sum(amount) FROM transactions WHERE user_id = u.id AND type = 'debit'), 0)
     - COALESCE((SELECT sum(amount) FROM transactions WHERE user_id = u.id AND type = 'refund'), 0)
    <> COALESCE((SELECT sum(amount - amount_remaining) FROM transactions WHERE user_id = u.id AND type = 'credit'), 0))`).
		Scan(&badGrants, &badDebits, &badConsumed, &badUsers)
	require.NoError(tb, err)
	require.Zero(tb, badGrants, "grants outside 0 <= amount_remaining <= amount")
	require.Zero(tb, badDebits, "debits whose allocations do not sum to their amount")
	require.Zero(tb, badConsumed, "grants whose consumption differs from their unrefunded allocations")
	require.Zero(tb, badUsers, "users whose debited − refunded differs from their consumed grants")
}

func TestExpiryOrdering(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)

	never := grant(t, l, user, 10, nil)
	late := grant(t, l, user, 10, days(10))
	soon := grant(t, l, user, 10, days(2))
	soonLater := grant(t, l, user, 10, days(2)) // same expiry, created later (higher id)
	requireBalance(t, l, user, 40)

	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 15, Reason: "txt2img"})
	require.NoError(t, err)
	require.Equal(t, []credits.Allocation{{GrantID: soon.ID, Amount: 10}, {GrantID: soonLater.ID, Amount: 5}}, d.Allocations)

	d, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 15})
	require.NoError(t, err)
	require.Equal(t, []credits.Allocation{{GrantID: soonLater.ID, Amount: 5}, {GrantID: late.ID, Amount: 10}}, d.Allocations)

	d, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 4})
	require.NoError(t, err)
	require.Equal(t, []credits.Allocation{{GrantID: never.ID, Amount: 4}}, d.Allocations)
	requireBalance(t, l, user, 6)
	requireInvariants(t, pool)
}

func TestOldestFirstAmongEqualExpiry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)

	older := grant(t, l, user, 3, days(5))
	c.Advance(time.Hour)
	newer := grant(t, l, user, 3, days(5))
	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 4})
	require.NoError(t, err)
	require.Equal(t, []credits.Allocation{{GrantID: older.ID, Amount: 3}, {GrantID: newer.ID, Amount: 1}}, d.Allocations)
}

func TestPartialConsumptionAcrossGrants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)
	other := newUser(t, pool)

	g1 := grant(t, l, user, 3, days(1))
	g2 := grant(t, l, user, 4, days(2))
	g3 := grant(t, l, user, 5, days(3))
	grant(t, l, other, 100, days(1))

	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 9, IdempotencyKey: "job-1", Reason: "img2img",
		Metadata: json.RawMessage(`{"job_id": "job-1"}`)})
	require.NoError(t, err)
	require.NotZero(t, d.ID)
	require.False(t, d.Replayed)
	require.Equal(t, int64(9), d.Amount)
	require.Equal(t, "img2img", d.Reason)
	require.Equal(t, t0, d.CreatedAt)
	require.Equal(t, []credits.Allocation{{GrantID: g1.ID, Amount: 3}, {GrantID: g2.ID, Amount: 4}, {GrantID: g3.ID, Amount: 2}}, d.Allocations)
	requireBalance(t, l, user, 3)
	requireBalance(t, l, other, 100)

	var remaining []int64
	rows, err := pool.Query(ctx, `SELECT amount_remaining FROM transactions WHERE id = ANY($1) ORDER BY id`, []int64{g1.ID, g2.ID, g3.ID})
	require.NoError(t, err)
	remaining, err = pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{0, 0, 3}, remaining)

	// Short balance: the kind, the body fields, and nothing changes.
	_, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 4})
	requireInsufficient(t, err, 3, 4)
	requireBalance(t, l, user, 3)
	var debits int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'debit'`, user).Scan(&debits))
	require.Equal(t, 1, debits)
	requireInvariants(t, pool)
}

func TestExpiredGrantsStopCounting(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)

	grant(t, l, user, 5, days(1))
	grant(t, l, user, 7, days(3))
	requireBalance(t, l, user, 12)

	c.Advance(24 * time.Hour) // the first grant expires exactly now
	requireBalance(t, l, user, 7)
	_, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 8})
	requireInsufficient(t, err, 7, 8)

	c.Advance(2 * 24 * time.Hour)
	requireBalance(t, l, user, 0)
	_, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 1})
	requireInsufficient(t, err, 0, 1)
	requireInvariants(t, pool)
}

func TestLegacyRowsCount(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)

	// Rows as the legacy system wrote them: the referral reward, an
	// expired one, a NULL expiry (now: never expires) and a legacy debit row.
	_, err := pool.Exec(ctx, `
INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo) VALUES
    ('{}', '2025-02-01 00:00:00', '2025-02-01 00:00:00', '2025-03-20 00:00:00', $1, 'credit', 100, 40, 'rewards_referral_verify'),
    ('{}', '2025-01-01 00:00:00', '2025-01-01 00:00:00', '2025-02-01 00:00:00', $1, 'credit', 100, 100, 'rewards_referral_verify'),
    ('{}', '2025-01-01 00:00:00', '2025-01-01 00:00:00', NULL, $1, 'credit', 50, 50, 'signup_bonus'),
    ('{"image_id": 1}', DEFAULT, DEFAULT, NULL, $1, 'debit', 10, 0, 'generation')`, user)
	require.NoError(t, err)
	requireBalance(t, l, user, 90)

	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 45})
	require.NoError(t, err)
	require.Len(t, d.Allocations, 2)
	require.Equal(t, int64(40), d.Allocations[0].Amount, "the dated legacy grant goes first")
	require.Equal(t, int64(5), d.Allocations[1].Amount, "then the never-expiring one")
	requireBalance(t, l, user, 45)

	var legacyDebit int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT id FROM transactions WHERE user_id = $1 AND memo = 'generation'`, user).Scan(&legacyDebit))
	_, err = l.Refund(ctx, legacyDebit)
	require.True(t, apperr.Is(err, apperr.KindConflict), "got %v", err)
}

func TestIdempotency(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	other := newUser(t, pool)
	grant(t, l, user, 10, nil)
	grant(t, l, other, 10, nil)

	first, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 3, IdempotencyKey: "gen-42", Reason: "txt2img"})
	require.NoError(t, err)
	c.Advance(time.Minute)
	again, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 3, IdempotencyKey: "gen-42", Reason: "txt2img"})
	require.NoError(t, err)
	require.True(t, again.Replayed)
	again.Replayed = false
	first.Metadata, again.Metadata = nil, nil
	require.Equal(t, first, again)
	requireBalance(t, l, user, 7)

	// Same key, different amount: a conflict, nothing charged.
	_, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 4, IdempotencyKey: "gen-42"})
	require.True(t, apperr.Is(err, apperr.KindConflict), "got %v", err)
	requireBalance(t, l, user, 7)

	// Keys are per user.
	d, err := l.Debit(ctx, credits.DebitInput{UserID: other, Amount: 3, IdempotencyKey: "gen-42"})
	require.NoError(t, err)
	require.False(t, d.Replayed)

	// An insufficient attempt records nothing, so the key stays usable.
	_, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 8, IdempotencyKey: "gen-43"})
	requireInsufficient(t, err, 7, 8)
	grant(t, l, user, 1, nil)
	d, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 8, IdempotencyKey: "gen-43"})
	require.NoError(t, err)
	require.False(t, d.Replayed)

	// Concurrent attempts with one key are one debit.
	grant(t, l, user, 20, nil)
	var wg sync.WaitGroup
	ids := make([]int64, 20)
	errs := make([]error, 20)
	for i := range ids {
		wg.Go(func() {
			d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 2, IdempotencyKey: "gen-44"})
			ids[i], errs[i] = d.ID, err
		})
	}
	wg.Wait()
	for i := range ids {
		require.NoError(t, errs[i])
		require.Equal(t, ids[0], ids[i])
	}
	requireBalance(t, l, user, 18)

	// The unique constraint is the backstop.
	_, err = pool.Exec(ctx, `INSERT INTO transactions (metadata, user_id, type, amount, amount_remaining, memo, idempotency_key)
		VALUES ('{}', $1, 'debit', 1, 0, 'x', 'gen-42')`, user)
	require.ErrorContains(t, err, "transactions_user_id_idempotency_key_uniq")
	requireInvariants(t, pool)
}

func TestRefund(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	g1 := grant(t, l, user, 4, days(5))
	g2 := grant(t, l, user, 6, days(9))

	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 7, IdempotencyKey: "job-7"})
	require.NoError(t, err)
	requireBalance(t, l, user, 3)

	c.Advance(time.Hour)
	r, err := l.Refund(ctx, d.ID)
	require.NoError(t, err)
	require.False(t, r.Replayed)
	require.Equal(t, d.ID, r.DebitID)
	require.Equal(t, int64(7), r.Amount)
	require.Equal(t, []credits.Allocation{{GrantID: g1.ID, Amount: 4}, {GrantID: g2.ID, Amount: 3}}, r.Restored)
	require.Zero(t, r.ReplacementGrantID)
	requireBalance(t, l, user, 10)
	requireInvariants(t, pool)

	// A second refund (by id or by key) is a no-op returning the first.
	again, err := l.Refund(ctx, d.ID)
	require.NoError(t, err)
	require.True(t, again.Replayed)
	again.Replayed = false
	require.Equal(t, r, again)
	byKey, err := l.RefundByKey(ctx, user, "job-7")
	require.NoError(t, err)
	require.Equal(t, r.ID, byKey.ID)
	requireBalance(t, l, user, 10)

	// Concurrent refunds of one debit refund once.
	d2, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 5})
	require.NoError(t, err)
	var wg sync.WaitGroup
	refundIDs := make([]int64, 10)
	for i := range refundIDs {
		wg.Go(func() {
			r, err := l.Refund(ctx, d2.ID)
			if err == nil {
				refundIDs[i] = r.ID
			}
		})
	}
	wg.Wait()
	for _, id := range refundIDs {
		require.Equal(t, refundIDs[0], id)
	}
	requireBalance(t, l, user, 10)

	_, err = l.Refund(ctx, 999999)
	require.True(t, apperr.Is(err, apperr.KindNotFound), "got %v", err)
	_, err = l.RefundByKey(ctx, user, "nope")
	require.True(t, apperr.Is(err, apperr.KindNotFound), "got %v", err)
	_, err = l.Refund(ctx, g1.ID) // a grant is not a debit
	require.True(t, apperr.Is(err, apperr.KindNotFound), "got %v", err)
	requireInvariants(t, pool)
}

func TestRefundAfterGrantExpired(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	short := grant(t, l, user, 5, days(1))
	long := grant(t, l, user, 5, nil)

	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 8})
	require.NoError(t, err)
	require.Equal(t, []credits.Allocation{{GrantID: short.ID, Amount: 5}, {GrantID: long.ID, Amount: 3}}, d.Allocations)
	requireBalance(t, l, user, 2)

	c.Advance(2 * 24 * time.Hour) // the short grant has expired
	r, err := l.Refund(ctx, d.ID)
	require.NoError(t, err)
	require.Equal(t, int64(8), r.Amount)
	require.Equal(t, int64(5), r.ReplacementAmount)
	require.NotZero(t, r.ReplacementGrantID)
	// 3 back to the live grant, 5 as a replacement grant.
	requireBalance(t, l, user, 10)

	var amount, remaining int64
	var expires time.Time
	var memo string
	var refundOf int64
	require.NoError(t, pool.QueryRow(ctx, `SELECT amount, amount_remaining, expires_at, memo, refund_of FROM transactions WHERE id = $1 AND type = 'credit'`,
		r.ReplacementGrantID).Scan(&amount, &remaining, &expires, &memo, &refundOf))
	require.Equal(t, int64(5), amount)
	require.Equal(t, int64(5), remaining)
	require.Equal(t, c.Now().Add(credits.DefaultRefundGrantTTL), expires.UTC(), "documented expiry: RefundGrantTTL after the refund")
	require.Equal(t, "refund", memo)
	require.Equal(t, d.ID, refundOf)
	requireInvariants(t, pool)

	// The replacement expires like any grant.
	c.Advance(credits.DefaultRefundGrantTTL)
	requireBalance(t, l, user, 5)

	again, err := l.Refund(ctx, d.ID)
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Equal(t, r.ReplacementGrantID, again.ReplacementGrantID)
	requireBalance(t, l, user, 5)
	requireInvariants(t, pool)
}

func TestGrant(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)

	g, err := l.Grant(ctx, nil, credits.GrantInput{UserID: user, Amount: 50, ExpiresAt: days(30), Memo: "signup_bonus",
		IdempotencyKey: "signup_bonus", Metadata: json.RawMessage(`{"source": "test"}`)})
	require.NoError(t, err)
	require.Equal(t, int64(50), g.Remaining)
	require.Equal(t, *days(30), *g.ExpiresAt)
	require.JSONEq(t, `{"source": "test"}`, string(g.Metadata))
	again, err := l.Grant(ctx, nil, credits.GrantInput{UserID: user, Amount: 50, ExpiresAt: days(30), Memo: "signup_bonus", IdempotencyKey: "signup_bonus"})
	require.NoError(t, err)
	require.True(t, again.Replayed)
	require.Equal(t, g.ID, again.ID)
	requireBalance(t, l, user, 50)

	// Inside the caller's transaction: rolled back with it.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = l.Grant(ctx, tx, credits.GrantInput{UserID: user, Amount: 5, Memo: "rewards_referral_verify"})
	require.NoError(t, err)
	requireBalance(t, l, user, 50)
	require.NoError(t, tx.Rollback(ctx))
	requireBalance(t, l, user, 50)

	_, err = l.Grant(ctx, nil, credits.GrantInput{UserID: 987654, Amount: 5, Memo: "x"})
	require.True(t, apperr.Is(err, apperr.KindNotFound), "got %v", err)
	_, err = l.Debit(ctx, credits.DebitInput{UserID: 987654, Amount: 5})
	require.True(t, apperr.Is(err, apperr.KindNotFound), "got %v", err)
}

func TestValidation(t *testing.T) {
	t.Parallel()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)
	long := string(make([]rune, 257))
	tests := []struct {
		name string
		in   credits.GrantInput
	}{
		{"zero amount", credits.GrantInput{UserID: user, Amount: 0, Memo: "m"}},
		{"negative amount", credits.GrantInput{UserID: user, Amount: -1, Memo: "m"}},
		{"huge amount", credits.GrantInput{UserID: user, Amount: credits.MaxAmount + 1, Memo: "m"}},
		{"no user", credits.GrantInput{Amount: 1, Memo: "m"}},
		{"no memo", credits.GrantInput{UserID: user, Amount: 1}},
		{"long memo", credits.GrantInput{UserID: user, Amount: 1, Memo: "a" + long}},
		{"NUL memo", credits.GrantInput{UserID: user, Amount: 1, Memo: "a\x00b"}},
		{"past expiry", credits.GrantInput{UserID: user, Amount: 1, Memo: "m", ExpiresAt: days(-1)}},
		{"metadata not an object", credits.GrantInput{UserID: user, Amount: 1, Memo: "m", Metadata: json.RawMessage(`[1]`)}},
		{"metadata malformed", credits.GrantInput{UserID: user, Amount: 1, Memo: "m", Metadata: json.RawMessage(`{`)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := l.Grant(t.Context(), nil, tt.in)
			require.True(t, apperr.Is(err, apperr.KindInvalid), "got %v", err)
		})
	}
	t.Run("debit", func(t *testing.T) {
		t.Parallel()
		for _, in := range []credits.DebitInput{
			{UserID: user, Amount: 0}, {UserID: 0, Amount: 1}, {UserID: user, Amount: 1, IdempotencyKey: "k" + long},
			{UserID: user, Amount: 1, Reason: "\xff"}, {UserID: user, Amount: 1, Metadata: json.RawMessage(`"x"`)},
		} {
			_, err := l.Debit(t.Context(), in)
			require.True(t, apperr.Is(err, apperr.KindInvalid), "%+v: got %v", in, err)
		}
	})
}

func TestHistory(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	user := newUser(t, pool)
	g1 := grant(t, l, user, 5, days(2))
	c.Advance(time.Second)
	g2 := grant(t, l, user, 5, nil)
	c.Advance(time.Second)
	d, err := l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 7, Reason: "txt2img"})
	require.NoError(t, err)
	c.Advance(time.Second)
	r, err := l.Refund(ctx, d.ID)
	require.NoError(t, err)

	h, err := l.History(ctx, user, 1, 100)
	require.NoError(t, err)
	require.Len(t, h, 4)
	require.Equal(t, []int64{r.ID, d.ID, g2.ID, g1.ID}, []int64{h[0].ID, h[1].ID, h[2].ID, h[3].ID})
	require.Equal(t, credits.TypeRefund, h[0].Type)
	require.Equal(t, d.ID, *h[0].RefundOf)
	require.Equal(t, credits.TypeDebit, h[1].Type)
	require.Equal(t, "txt2img", h[1].Memo)
	require.Equal(t, d.Allocations, h[1].Allocations)
	require.Equal(t, credits.TypeCredit, h[3].Type)
	require.Equal(t, *days(2), *h[3].ExpiresAt)
	require.Nil(t, h[2].ExpiresAt)

	page, err := l.History(ctx, user, 2, 3)
	require.NoError(t, err)
	require.Len(t, page, 1)
	require.Equal(t, g1.ID, page[0].ID)

	_, err = l.History(ctx, user, 0, 10)
	require.True(t, apperr.Is(err, apperr.KindInvalid))
	_, err = l.History(ctx, user, 1, 101)
	require.True(t, apperr.Is(err, apperr.KindInvalid))
}

// TestConcurrentDebits: 200 concurrent debits of 1 credit against a balance
// of 50 spread over several grants.
func TestConcurrentDebits(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, _ := newLedger(t)
	user := newUser(t, pool)
	for i := range 5 {
		grant(t, l, user, 10, days(i+1))
	}
	requireBalance(t, l, user, 50)

	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			_, errs[i] = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 1, IdempotencyKey: fmt.Sprintf("c-%d", i)})
		})
	}
	close(start)
	wg.Wait()

	var ok, short int
	for _, err := range errs {
		switch {
		case err == nil:
			ok++
		case apperr.Is(err, apperr.KindInsufficientCredits):
			short++
		default:
			t.Fatalf("unexpected error: %v", err)
		}
	}
	require.Equal(t, 50, ok)
	require.Equal(t, 150, short)
	requireBalance(t, l, user, 0)
	requireInvariants(t, pool)
}

// model is an independent, in-memory account of one user's grants, for the
// randomised test.
type model struct {
	grants  map[int64]*modelGrant
	debits  map[int64][]credits.Allocation
	refunds map[int64]bool
}

type modelGrant struct {
	id        int64
	remaining int64
	expires   *time.Time
}

func (m *model) balance(now time.Time) int64 {
	var n int64
	for _, g := range m.grants {
		if g.expires == nil || g.expires.After(now) {
			n += g.remaining
		}
	}
	return n
}

// TestRandomisedInvariants runs 1,000 random grants, debits and refunds
// against three users while time passes, checking the invariants as it goes
// and the balances against an in-memory model.
func TestRandomisedInvariants(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, l, c := newLedger(t)
	rng := rand.New(rand.NewPCG(1, 2))
	users := []int64{newUser(t, pool), newUser(t, pool), newUser(t, pool)}
	models := map[int64]*model{}
	for _, u := range users {
		models[u] = &model{grants: map[int64]*modelGrant{}, debits: map[int64][]credits.Allocation{}, refunds: map[int64]bool{}}
	}

	var granted, debited, short, refunded, replacements int
	for i := range 1000 {
		u := users[rng.IntN(len(users))]
		m := models[u]
		now := c.Now()
		switch op := rng.IntN(10); {
		case op < 4:
			var exp *time.Time
			if rng.IntN(4) > 0 {
				t := now.Add(time.Duration(1+rng.IntN(72)) * time.Hour)
				exp = &t
			}
			g, err := l.Grant(ctx, nil, credits.GrantInput{UserID: u, Amount: int64(1 + rng.IntN(20)), ExpiresAt: exp, Memo: "random"})
			require.NoError(t, err)
			m.grants[g.ID] = &modelGrant{id: g.ID, remaining: g.Amount, expires: g.ExpiresAt}
			granted++
		case op < 8:
			amount := int64(1 + rng.IntN(25))
			want := m.balance(now)
			d, err := l.Debit(ctx, credits.DebitInput{UserID: u, Amount: amount, IdempotencyKey: fmt.Sprintf("r-%d", i)})
			if amount > want {
				requireInsufficient(t, err, want, amount)
				short++
				break
			}
			require.NoError(t, err)
			var sum int64
			for _, a := range d.Allocations {
				g := m.grants[a.GrantID]
				require.NotNil(t, g, "debit took from a grant of another user")
				require.True(t, g.expires == nil || g.expires.After(now), "debit took from an expired grant")
				g.remaining -= a.Amount
				require.GreaterOrEqual(t, g.remaining, int64(0))
				sum += a.Amount
			}
			require.Equal(t, amount, sum)
			m.debits[d.ID] = d.Allocations
			debited++
		default:
			var ids []int64
			for id := range m.debits {
				ids = append(ids, id)
			}
			// Map order is random: sort so the seed replays a failure.
			slices.Sort(ids)
			if len(ids) == 0 {
				break
			}
			id := ids[rng.IntN(len(ids))]
			r, err := l.Refund(ctx, id)
			require.NoError(t, err)
			require.Equal(t, m.refunds[id], r.Replayed)
			if !r.Replayed {
				m.refunds[id] = true
				refunded++
				for _, a := range m.debits[id] {
					m.grants[a.GrantID].remaining += a.Amount
				}
				if r.ReplacementGrantID != 0 {
					replacements++
					m.grants[r.ReplacementGrantID] = &modelGrant{id: r.ReplacementGrantID, remaining: r.ReplacementAmount,
						expires: new(now.Add(credits.DefaultRefundGrantTTL))}
				}
			}
		}
		c.Advance(time.Duration(rng.IntN(90)) * time.Minute)
		if i%100 == 99 {
			requireInvariants(t, pool)
			for _, u := range users {
				requireBalance(t, l, u, models[u].balance(c.Now()))
			}
		}
	}
	t.Logf("grants %d, debits %d, insufficient %d, refunds %d (with replacement grant %d)", granted, debited, short, refunded, replacements)
	for _, n := range []int{granted, debited, short, refunded, replacements} {
		require.Positive(t, n, "the random sequence must exercise every path")
	}
}

func TestCharge(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	pool, _, c := newLedger(t)
	pricing, err := credits.NewPricing(map[string]int64{credits.OpMask: 0})
	require.NoError(t, err)
	l := credits.NewLedger(pool, credits.Options{Now: c.Now, Pricing: pricing})
	user := newUser(t, pool)
	grant(t, l, user, 10, nil)

	d, err := l.Charge(ctx, credits.ChargeInput{UserID: user, Op: credits.OpTxt2Img, Units: 4, IdempotencyKey: "j1"})
	require.NoError(t, err)
	require.Equal(t, int64(4), d.Amount)
	require.Equal(t, credits.OpTxt2Img, d.Reason)
	requireBalance(t, l, user, 6)

	d, err = l.Charge(ctx, credits.ChargeInput{UserID: 67, Anonymous: true, Op: credits.OpTxt2Img, Units: 4})
	require.NoError(t, err)
	require.True(t, d.Free)
	require.Zero(t, d.ID)

	d, err = l.Charge(ctx, credits.ChargeInput{UserID: user, Op: credits.OpMask})
	require.NoError(t, err)
	require.True(t, d.Free, "a zero price is free")

	_, err = l.Charge(ctx, credits.ChargeInput{UserID: user, Op: credits.OpVideo, Units: 10})
	requireInsufficient(t, err, 6, 20)
	_, err = l.Charge(ctx, credits.ChargeInput{UserID: user, Op: "teleport"})
	require.True(t, apperr.Is(err, apperr.KindInvalid))
}

// TestInvalidLegacyGrantIsIgnored: a legacy row with amount_remaining >
// amount (possible in old data; the CHECK stays NOT VALID for it) neither
// counts nor breaks debits of the user's valid grants.
func TestInvalidLegacyGrantIsIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	var user int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ('bad-legacy@example.com', 'x', '{}') RETURNING id`).Scan(&user))
	rows, err := pool.Query(ctx, `SELECT conname FROM pg_constraint WHERE conrelid = 'transactions'::regclass AND contype = 'c'`)
	require.NoError(t, err)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	for _, n := range names { // drop the CHECKs so the legacy row can exist
		_, err = pool.Exec(ctx, `ALTER TABLE transactions DROP CONSTRAINT `+pgx.Identifier{n}.Sanitize())
		require.NoError(t, err)
	}
	_, err = pool.Exec(ctx, `INSERT INTO transactions (metadata, user_id, type, amount, amount_remaining, memo) VALUES ('{}', $1, 'credit', 5, 50, 'legacy')`, user)
	require.NoError(t, err)
	l := credits.NewLedger(pool, credits.Options{})
	_, err = l.Grant(ctx, nil, credits.GrantInput{UserID: user, Amount: 3, Memo: "ok"})
	require.NoError(t, err)
	bal, err := l.Balance(ctx, user)
	require.NoError(t, err)
	require.Equal(t, int64(3), bal)
	_, err = l.Debit(ctx, credits.DebitInput{UserID: user, Amount: 2, IdempotencyKey: "k", Reason: "test"})
	require.NoError(t, err)
}
