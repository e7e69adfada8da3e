package credits

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Entry types, the values of transactions.type.
const (
	TypeCredit = "credit"
	TypeDebit  = "debit"
	TypeRefund = "refund"
)

// Limits on inputs.
const (
	// MaxAmount is the largest amount of one grant or debit (the amount
	// columns are 32-bit).
	MaxAmount = 1_000_000_000
	// MaxMemoLen is the longest memo or reason, in characters (VARCHAR(256)).
	MaxMemoLen = 256
	// MaxKeyLen is the longest idempotency key, in characters.
	MaxKeyLen = 255
	// MaxMetadataLen is the largest metadata JSON object, in bytes.
	MaxMetadataLen = 16 << 10
	// MaxPageSize is the largest History page.
	MaxPageSize = 100
	// DefaultRefundGrantTTL is the lifetime of the replacement grant a
	// refund issues for credits whose grant has expired.
	DefaultRefundGrantTTL = 30 * 24 * time.Hour
)

// Options configure a Ledger. The zero value is usable.
type Options struct {
	// Now is the clock; nil means time.Now. Tests move it to expire grants.
	Now func() time.Time
	// RefundGrantTTL is the lifetime of the replacement grant a refund
	// issues for credits whose grant has expired; zero means
	// DefaultRefundGrantTTL.
	RefundGrantTTL time.Duration
	// Pricing prices operations for Charge; the zero value is DefaultPricing.
	Pricing Pricing
}

// Ledger is the credits ledger over a PostgreSQL pool. It is safe for
// concurrent use, across goroutines and processes: every guarantee is
// enforced by the database.
type Ledger struct {
	pool      *pgxpool.Pool
	now       func() time.Time
	refundTTL time.Duration
	pricing   Pricing
}

// NewLedger returns a ledger over pool.
func NewLedger(pool *pgxpool.Pool, opts Options) *Ledger {
	l := &Ledger{pool: pool, now: opts.Now, refundTTL: opts.RefundGrantTTL, pricing: opts.Pricing}
	if l.now == nil {
		l.now = time.Now
	}
	if l.refundTTL <= 0 {
		l.refundTTL = DefaultRefundGrantTTL
	}
	return l
}

// Pricing returns the prices Charge uses.
func (l *Ledger) Pricing() Pricing { return l.pricing }

// clock returns the current time as stored: UTC, microsecond precision.
func (l *Ledger) clock() time.Time { return l.now().UTC().Truncate(time.Microsecond) }

// Allocation is the part of a debit taken from one grant (or, in a refund,
// given back to it).
type Allocation struct {
	// GrantID is the id of the grant (a transactions row of type credit).
	GrantID int64
	// Amount is the number of credits, at least 1.
	Amount int64
}

// Grant is a grant of credits (a transactions row of type credit).
type Grant struct {
	ID     int64
	UserID int64
	// Amount is the number of credits granted; Remaining how many are not
	// yet spent.
	Amount, Remaining int64
	// ExpiresAt is when the grant stops counting; nil means never.
	ExpiresAt *time.Time
	Memo      string
	// Metadata is a JSON object, "{}" when none was given.
	Metadata json.RawMessage
	// IdempotencyKey is the caller's key, "" when none.
	IdempotencyKey string
	CreatedAt      time.Time
	// Replayed is set when an earlier grant with the same idempotency key
	// was returned instead of creating a new one.
	Replayed bool
}

// GrantInput describes a grant.
type GrantInput struct {
	// UserID receives the credits. Required.
	UserID int64
	// Amount is the number of credits, 1..MaxAmount.
	Amount int64
	// ExpiresAt is when the credits stop counting; nil means never. It must
	// be in the future.
	ExpiresAt *time.Time
	// Memo says why (legacy values: "rewards_referral_verify",
	// "signup_bonus"). Required, at most MaxMemoLen characters.
	Memo string
	// Metadata is an optional JSON object stored with the row.
	Metadata json.RawMessage
	// IdempotencyKey, when set, makes the grant happen once per user: the
	// same key again returns the first grant (e.g. "signup_bonus").
	IdempotencyKey string
}

// Balance returns the user's spendable credits now: the sum of
// amount_remaining over unexpired grants. An unknown user has 0. A read
// whose connection was lost is retried once (db.Read).
func (l *Ledger) Balance(ctx context.Context, userID int64) (int64, error) {
	var n int64
	err := db.Read(ctx, func(ctx context.Context) error {
		var err error
		n, err = balance(ctx, l.pool, userID, l.clock())
		return err
	})
	return n, err
}

// balanceSQL is a range scan of transactions_open_credits_idx.
const balanceSQL = `
SELECT COALESCE(sum(amount_remaining), 0)
FROM transactions
WHERE user_id = $1 AND type = 'credit' AND amount_remaining > 0 AND amount_remaining <= amount
  AND COALESCE(expires_at, 'infinity'::timestamp) > $2`

// BalanceWith is Balance read with q, typically the caller's transaction:
// a caller that holds a transaction (and maybe a lock) must not wait for
// a second pool connection, or a burst of such callers exhausts the pool
// and every one of them waits for ever.
func (l *Ledger) BalanceWith(ctx context.Context, q db.Querier, userID int64) (int64, error) {
	return balance(ctx, q, userID, l.clock())
}

func balance(ctx context.Context, q db.Querier, userID int64, now time.Time) (int64, error) {
	var n int64
	if err := q.QueryRow(ctx, balanceSQL, userID, now).Scan(&n); err != nil {
		return 0, fmt.Errorf("balance of user %d: %w", userID, err)
	}
	return n, nil
}

// Grant adds credits to a user. q is where it runs: nil for the ledger's
// pool, or the caller's transaction (e.g. the referral reward, granted in
// the same transaction as the verification). A grant takes no lock, so it
// never waits for the user's debits. An unknown user is NotFound.
func (l *Ledger) Grant(ctx context.Context, q db.Querier, in GrantInput) (Grant, error) {
	now := l.clock()
	if q == nil {
		q = l.pool
	}
	if err := validateGrant(in, now); err != nil {
		return Grant{}, err
	}
	meta, err := normalizeMetadata(in.Metadata)
	if err != nil {
		return Grant{}, err
	}
	var expires *time.Time
	if in.ExpiresAt != nil {
		t := in.ExpiresAt.UTC().Truncate(time.Microsecond)
		expires = &t
	}
	g, err := insertGrant(ctx, q, grantRow{
		userID: in.UserID, amount: in.Amount, expiresAt: expires, memo: in.Memo,
		metadata: meta, key: in.IdempotencyKey, now: now,
	})
	if err != nil {
		return Grant{}, fmt.Errorf("grant %d credits to user %d: %w", in.Amount, in.UserID, err)
	}
	return g, nil
}

type grantRow struct {
	userID, amount int64
	expiresAt      *time.Time
	memo           string
	metadata       json.RawMessage
	key            string
	refundOf       *int64
	now            time.Time
}

const grantColumns = `id, user_id, amount, amount_remaining, expires_at, memo, metadata, COALESCE(idempotency_key, ''), created_at`

func scanGrant(row pgx.Row) (Grant, error) {
	var g Grant
	err := row.Scan(&g.ID, &g.UserID, &g.Amount, &g.Remaining, &g.ExpiresAt, &g.Memo, &g.Metadata, &g.IdempotencyKey, &g.CreatedAt)
	if g.ExpiresAt != nil {
		t := g.ExpiresAt.UTC()
		g.ExpiresAt = &t
	}
	g.CreatedAt = g.CreatedAt.UTC()
	return g, err
}

// insertGrant inserts a credit row. With a key it is idempotent: ON
// CONFLICT DO NOTHING does not abort a caller's transaction, and the
// existing row is returned with Replayed set.
func insertGrant(ctx context.Context, q db.Querier, r grantRow) (Grant, error) {
	var key *string
	if r.key != "" {
		key = &r.key
	}
	g, err := scanGrant(q.QueryRow(ctx, `
INSERT INTO transactions (metadata, created_at, updated_at, expires_at, user_id, type, amount, amount_remaining, memo, idempotency_key, refund_of)
VALUES ($1, $2, $2, $3, $4, 'credit', $5, $5, $6, $7, $8)
ON CONFLICT (user_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING `+grantColumns,
		r.metadata, r.now, r.expiresAt, r.userID, r.amount, r.memo, key, r.refundOf))
	if errors.Is(err, pgx.ErrNoRows) && key != nil {
		return replayGrant(ctx, q, r)
	}
	if db.IsForeignKeyViolation(err) {
		return Grant{}, apperr.Wrap(apperr.KindNotFound, "User not found", err)
	}
	return g, err
}

func replayGrant(ctx context.Context, q db.Querier, r grantRow) (Grant, error) {
	var typ string
	var g Grant
	err := q.QueryRow(ctx, `
SELECT type, `+grantColumns+`
FROM transactions WHERE user_id = $1 AND idempotency_key = $2`, r.userID, r.key).
		Scan(&typ, &g.ID, &g.UserID, &g.Amount, &g.Remaining, &g.ExpiresAt, &g.Memo, &g.Metadata, &g.IdempotencyKey, &g.CreatedAt)
	if err != nil {
		return Grant{}, fmt.Errorf("read grant with key %q: %w", r.key, err)
	}
	if typ != TypeCredit || g.Amount != r.amount {
		return Grant{}, apperr.Conflict("Idempotency key already used for a different entry")
	}
	if g.ExpiresAt != nil {
		t := g.ExpiresAt.UTC()
		g.ExpiresAt = &t
	}
	g.CreatedAt = g.CreatedAt.UTC()
	g.Replayed = true
	return g, nil
}

// lockUser takes the per-user ledger lock for the rest of tx. FOR NO KEY
// UPDATE serializes the user's debits and refunds but does not block inserts
// referencing the user (their foreign-key check takes FOR KEY SHARE).
func lockUser(ctx context.Context, tx pgx.Tx, userID int64) error {
	var one int
	err := tx.QueryRow(ctx, `SELECT 1 FROM users WHERE id = $1 FOR NO KEY UPDATE`, userID).Scan(&one)
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Wrap(apperr.KindNotFound, "User not found", err)
	}
	if err != nil {
		return fmt.Errorf("lock user %d: %w", userID, err)
	}
	return nil
}

func validateGrant(in GrantInput, now time.Time) error {
	if in.UserID <= 0 {
		return apperr.Invalid("user_id must be a positive integer")
	}
	if err := validateAmount(in.Amount); err != nil {
		return err
	}
	if in.ExpiresAt != nil && !in.ExpiresAt.After(now) {
		return apperr.Invalid("expires_at must be in the future")
	}
	if strings.TrimSpace(in.Memo) == "" {
		return apperr.Invalid("memo is required")
	}
	if err := validateText("memo", in.Memo, MaxMemoLen); err != nil {
		return err
	}
	return validateText("idempotency key", in.IdempotencyKey, MaxKeyLen)
}

func validateAmount(n int64) error {
	if n < 1 || n > MaxAmount {
		return apperr.Invalid(fmt.Sprintf("amount must be between 1 and %d", MaxAmount))
	}
	return nil
}

// validateText accepts valid UTF-8 without NUL (PostgreSQL rejects NUL in
// text) of at most max characters.
func validateText(what, s string, max int) error {
	if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
		return apperr.Invalid(what + " must be valid text")
	}
	if utf8.RuneCountInString(s) > max {
		return apperr.Invalid(fmt.Sprintf("%s must be at most %d characters", what, max))
	}
	return nil
}

// normalizeMetadata returns m compacted, "{}" when empty; it must be a JSON
// object of at most MaxMetadataLen bytes.
func normalizeMetadata(m json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(m)) == 0 {
		return json.RawMessage(`{}`), nil
	}
	if len(m) > MaxMetadataLen {
		return nil, apperr.Invalid(fmt.Sprintf("metadata must be at most %d bytes", MaxMetadataLen))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(m, &obj); err != nil || obj == nil {
		return nil, apperr.Invalid("metadata must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, m); err != nil {
		return nil, apperr.Invalid("metadata must be a JSON object")
	}
	if bytes.Contains(buf.Bytes(), []byte(`\u0000`)) {
		return nil, apperr.Invalid("metadata must not contain NUL characters")
	}
	return buf.Bytes(), nil
}
