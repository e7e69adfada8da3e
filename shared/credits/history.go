package credits

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
)

// MaxPage bounds History's page number, so that the offset stays sane.
const MaxPage = 1_000_000

// Entry is one row of a user's ledger history: a grant, a debit, a refund
// (or a legacy row of another type), with the legacy columns.
type Entry struct {
	ID     int64
	UserID int64
	// Type is TypeCredit, TypeDebit, TypeRefund or a legacy value.
	Type            string
	Amount          int64
	AmountRemaining int64
	// ExpiresAt is nil for entries that never expire (and for debits).
	ExpiresAt *time.Time
	Memo      string
	Metadata  json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
	// RefundOf is the debit a refund (or a refund's replacement grant)
	// reverses; nil otherwise.
	RefundOf *int64
	// Allocations are the grants a debit consumed; nil for other types.
	Allocations []Allocation
}

// History returns a page of the user's entries, newest first. page starts
// at 1 (at most MaxPage); limit is 1..MaxPageSize.
func (l *Ledger) History(ctx context.Context, userID int64, page, limit int) ([]Entry, error) {
	if page < 1 || page > MaxPage {
		return nil, apperr.Invalid(fmt.Sprintf("page must be between 1 and %d", MaxPage))
	}
	if limit < 1 || limit > MaxPageSize {
		return nil, apperr.Invalid(fmt.Sprintf("limit must be between 1 and %d", MaxPageSize))
	}
	rows, err := l.pool.Query(ctx, `
SELECT id, user_id, type, amount, amount_remaining, expires_at, memo, metadata, created_at, updated_at, refund_of
FROM transactions
WHERE user_id = $1
ORDER BY created_at DESC, id DESC
LIMIT $2 OFFSET $3`, userID, limit, int64(page-1)*int64(limit))
	if err != nil {
		return nil, fmt.Errorf("history of user %d: %w", userID, err)
	}
	entries, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.ID, &e.UserID, &e.Type, &e.Amount, &e.AmountRemaining, &e.ExpiresAt, &e.Memo,
			&e.Metadata, &e.CreatedAt, &e.UpdatedAt, &e.RefundOf)
		if e.ExpiresAt != nil {
			t := e.ExpiresAt.UTC()
			e.ExpiresAt = &t
		}
		e.CreatedAt, e.UpdatedAt = e.CreatedAt.UTC(), e.UpdatedAt.UTC()
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("history of user %d: %w", userID, err)
	}

	var debits []int64
	index := map[int64]int{}
	for i, e := range entries {
		if e.Type == TypeDebit {
			debits = append(debits, e.ID)
			index[e.ID] = i
			entries[i].Allocations = []Allocation{}
		}
	}
	if len(debits) == 0 {
		return entries, nil
	}
	rows, err = l.pool.Query(ctx, `
SELECT a.debit_id, a.grant_id, a.amount
FROM transaction_allocations a JOIN transactions g ON g.id = a.grant_id
WHERE a.debit_id = ANY($1::int[])
ORDER BY a.debit_id, COALESCE(g.expires_at, 'infinity'::timestamp), g.created_at, g.id`, debits)
	if err != nil {
		return nil, fmt.Errorf("history allocations of user %d: %w", userID, err)
	}
	var debitID int64
	var a Allocation
	_, err = pgx.ForEachRow(rows, []any{&debitID, &a.GrantID, &a.Amount}, func() error {
		i := index[debitID]
		entries[i].Allocations = append(entries[i].Allocations, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("history allocations of user %d: %w", userID, err)
	}
	return entries, nil
}
