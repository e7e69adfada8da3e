package credits_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestBalanceAfterTerminatedBackends: after every backend of the database is
// terminated, the next balance reads (GET /users/<id>/credits) succeed.
func TestBalanceAfterTerminatedBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewURL(t)
	pool, err := db.Open(ctx, url, db.Options{MaxConns: 3})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	var userID int64
	require.NoError(t, pool.QueryRow(ctx,
		`INSERT INTO users (email, password, metadata) VALUES ('blip@example.com', 'x', '{}') RETURNING id`).Scan(&userID))
	ledger := credits.NewLedger(pool, credits.Options{})
	n, err := ledger.Balance(ctx, userID)
	require.NoError(t, err)

	_, err = admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var left int
		err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left)
		return err == nil && left == 0
	}, 10*time.Second, 5*time.Millisecond)
	for i := range 3 {
		got, err := ledger.Balance(ctx, userID)
		require.NoError(t, err, "read %d", i)
		require.Equal(t, n, got)
	}
}
