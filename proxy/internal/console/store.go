package console

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apihost"
	"github.com/nounsai/sdserver/shared/jobs"
)

// Store is what the console reads and writes in the database, through the
// tables' owners: the drain flag of api_hosts (shared/apihost) and the job
// queue counts (shared/jobs). Its methods are safe for concurrent use.
type Store struct {
	db *pgxpool.Pool
}

// NewStore returns a store on db.
func NewStore(db *pgxpool.Pool) *Store { return &Store{db: db} }

// SetDraining sets api_hosts.draining of the host id. The table's trigger
// NOTIFYs every proxy, which applies the change. A missing id is NotFound.
func (s *Store) SetDraining(ctx context.Context, id int64, draining bool) error {
	return apihost.SetDraining(ctx, s.db, id, draining)
}

// JobCount is the number of jobs of one kind in one state.
type JobCount = jobs.Count

// JobCounts are the queue counts the console shows.
type JobCounts = jobs.Counts

// JobCounts reads the queue counts (jobs.CountQueues).
func (s *Store) JobCounts(ctx context.Context) (JobCounts, error) {
	return jobs.CountQueues(ctx, s.db)
}
