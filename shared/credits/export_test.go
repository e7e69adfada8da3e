package credits

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"
)

// ExplainBalance returns PostgreSQL's plan of the balance query for userID
// (EXPLAIN ANALYZE), for benchmarks and operators checking the index is used.
func (l *Ledger) ExplainBalance(ctx context.Context, userID int64) (string, error) {
	rows, err := l.pool.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS) "+balanceSQL, userID, l.clock())
	if err != nil {
		return "", fmt.Errorf("explain balance: %w", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return "", fmt.Errorf("explain balance: %w", err)
	}
	return strings.Join(lines, "\n"), nil
}

// NewPricing returns the default table with the given per-unit prices
// (credits by operation) replacing the defaults. Unknown operations are an
// error, as are negative prices or prices above MaxPrice.
func NewPricing(credits map[string]int64) (Pricing, error) {
	p := DefaultPricing()
	for op, c := range credits {
		i := slices.IndexFunc(p.prices, func(pr Price) bool { return pr.Op == op })
		if i < 0 {
			return Pricing{}, fmt.Errorf("pricing: unknown operation %q", op)
		}
		if c < 0 || c > MaxPrice {
			return Pricing{}, fmt.Errorf("pricing: %s must be between 0 and %d", p.prices[i].Env, MaxPrice)
		}
		p.prices[i].Credits = c
	}
	return p, nil
}
