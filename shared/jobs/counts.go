package jobs

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/db"
)

// Count is the number of jobs of one kind in one state.
type Count struct {
	Kind  string
	State string
	Count int64
}

// Counts are the queue counts an operator sees (the proxy's console).
type Counts struct {
	// River counts river_job rows by kind and state; nil when River's table
	// does not exist.
	River []Count
	// RiverTable reports whether river_job exists.
	RiverTable bool
	// Jobs counts the jobs table's active (QUEUED, PROCESSING) rows by kind
	// and state; finished rows are kept for ever, so they are not counted.
	Jobs []Count
	// JobsTable reports whether the jobs table exists.
	JobsTable bool
}

// CountQueues reads the queue counts with q. A table that does not exist
// (an older schema, or a database River was never migrated on) is
// reported as absent, not as an error.
func CountQueues(ctx context.Context, q db.Querier) (Counts, error) {
	var out Counts
	err := q.QueryRow(ctx, `
		SELECT to_regclass('river_job') IS NOT NULL, to_regclass('jobs') IS NOT NULL`,
	).Scan(&out.RiverTable, &out.JobsTable)
	if err != nil {
		return out, fmt.Errorf("look up job tables: %w", err)
	}
	if out.RiverTable {
		// River deletes finalized rows after a retention period, so the
		// table stays small enough to count whole.
		out.River, err = counts(ctx, q, `
			SELECT kind, state::text, count(*)
			FROM river_job
			GROUP BY kind, state
			ORDER BY kind, state`)
		if err != nil {
			return out, fmt.Errorf("count river jobs: %w", err)
		}
	}
	if out.JobsTable {
		out.Jobs, err = counts(ctx, q, `
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

func counts(ctx context.Context, q db.Querier, sql string) ([]Count, error) {
	rows, err := q.Query(ctx, sql)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (Count, error) {
		var c Count
		err := row.Scan(&c.Kind, &c.State, &c.Count)
		return c, err
	})
}
