package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestCheckAfterTerminatedBackends is issue 14's database blip on the path of
// every signed-in request: all backends of the database are terminated, and
// the token-version reads that follow must all succeed (they failed with 503
// "read token version ... terminating connection due to administrator
// command").
func TestCheckAfterTerminatedBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewURL(t)
	pool, err := db.Open(ctx, url, db.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	userID := createUser(t, pool, "blip@example.com")
	rev := auth.NewRevocations(pool, nil, "", time.Time{})
	is := auth.Issuer{Secret: secret}
	_, claims, err := is.Issue(userID, 0)
	require.NoError(t, err)
	claims.JTI = "" // no deny-list lookup: this test is about PostgreSQL

	for round := range 2 {
		// Four connections, all used just now.
		conns := make([]*pgxpool.Conn, 0, 4)
		for range 4 {
			c, err := pool.Acquire(ctx)
			require.NoError(t, err)
			conns = append(conns, c)
		}
		for _, c := range conns {
			_, err := c.Exec(ctx, `SELECT 1`)
			require.NoError(t, err)
			c.Release()
		}
		_, err := admin.Exec(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`)
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			var left int
			err := admin.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left)
			return err == nil && left == 0
		}, 10*time.Second, 5*time.Millisecond)
		for i := range 4 {
			require.NoError(t, rev.Check(ctx, claims), "round %d check %d", round, i)
		}
	}
}
