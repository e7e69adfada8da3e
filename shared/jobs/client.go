package jobs

import (
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// NewInsertClient returns an insert-only River client on pool (no queues,
// no workers): enough to enqueue and cancel jobs from accountsvc. River's
// own logging is discarded; Store logs what matters.
func NewInsertClient(pool *pgxpool.Pool) (*river.Client[pgx.Tx], error) {
	c, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("create river insert client: %w", err)
	}
	return c, nil
}
