package console

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
)

// Store holds the console's SQL: the drain flag of api_hosts and the job
// queue counts. Its methods are safe for concurrent use.
type Store struct {
	db *pgxpool.Pool
}

// NewStore returns a store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// SetDraining sets api_hosts.draining of the host id. The table's trigger
// NOTIFYs every proxy, which applies the change. A missing id is NotFound.
func (s *Store) SetDraining(ctx context.Context, id int64, draining bool) error {
	tag, err := s.db.Exec(ctx, `UPDATE api_hosts SET draining = $2 WHERE id = $1`, id, draining)
	if err != nil {
		return fmt.Errorf("set draining=%t on api host %d: %w", draining, id, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.NotFound("Host not found")
	}
	return nil
}

// JobCount is the number of jobs of one kind in one state.
type JobCount struct {
	Kind  string
	State string
	Count int64
}

// JobCounts are the queue counts the console shows.
type JobCounts struct {
	// River counts river_job rows by kind and state; nil when River's table
	// does not exist.
	River []JobCount
	// RiverTable reports whether river_job exists.
	RiverTable bool
	// Jobs counts the jobs table's active (QUEUED, PROCESSING) rows by kind
	// and state; finished rows are kept for ever, so they are not counted.
	Jobs []JobCount
	// JobsTable reports whether the jobs table exists.
	JobsTable bool
}

// JobCounts reads the queue counts. A table that does not exist (an older
// schema) is reported as absent, not as an error.
func (s *Store) JobCounts(ctx context.Context) (JobCounts, error) {
	var out JobCounts
	err := s.db.QueryRow(ctx, `
		SELECT to_regclass('river_job') IS NOT NULL, to_regclass('jobs') IS NOT NULL`,
	).Scan(&out.RiverTable, &out.JobsTable)
	if err != nil {
		return out, fmt.Errorf("look up job tables: %w", err)
	}
	if out.RiverTable {
		// River deletes finalized rows after a retention period, so the
		// table stays small enough to count whole.
		out.River, err = counts(ctx, s.db, `
			SELECT kind, state::text, count(*)
			FROM river_job
			GROUP BY kind, state
			ORDER BY kind, state`)
		if err != nil {
			return out, fmt.Errorf("count river jobs: %w", err)
		}
	}
	if out.JobsTable {
		out.Jobs, err = counts(ctx, s.db, `
			SELECT kind, state, count(*)
			FROM jobs
			WHERE state IN ('QUEUED', 'PROCESSING')
			GROUP BY kind, state
			ORDER BY kind, state`)
		if err != nil {
			return out, fmt.Errorf("count jobs: %w", err)
		}
	}
	return out, nil
}

func counts(ctx context.Context, db *pgxpool.Pool, sql string) ([]JobCount, error) {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (JobCount, error) {
		var c JobCount
		err := row.Scan(&c.Kind, &c.State, &c.Count)
		return c, err
	})
}
