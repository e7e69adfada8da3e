package db_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// openTestPool opens a production pool (db.Open) on a fresh test database and
// an admin connection to the same database for the faults.
func openTestPool(t *testing.T) (*pgxpool.Pool, *pgx.Conn) {
	t.Helper()
	ctx := context.Background()
	url := dbtest.NewURL(t)
	pool, err := db.Open(ctx, url, db.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })
	return pool, admin
}

// terminateAll ends every backend of the test database but the admin one, as
// an operator's pg_terminate_backend (or a failover) does, waits until they
// are gone, and returns how many it ended.
func terminateAll(t *testing.T, admin *pgx.Conn) int {
	t.Helper()
	var n int
	err := admin.QueryRow(context.Background(), `
		SELECT count(*) FILTER (WHERE pg_terminate_backend(pid))
		FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&n)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		var left int
		err := admin.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()`).Scan(&left)
		return err == nil && left == 0
	}, 10*time.Second, 5*time.Millisecond)
	return n
}

// warm makes the pool hold n open connections that were just used, so none
// of them is old enough for pgxpool's own ping-after-idle check.
func warm(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	ctx := context.Background()
	conns := make([]*pgxpool.Conn, 0, n)
	for range n {
		c, err := pool.Acquire(ctx)
		require.NoError(t, err)
		conns = append(conns, c)
	}
	for _, c := range conns {
		_, err := c.Exec(ctx, "SELECT 1")
		require.NoError(t, err)
		c.Release()
	}
}

// TestPoolSurvivesTerminatedBackends is the database blip of issue 14: every
// backend is terminated, and the very next reads and writes must succeed on
// fresh connections instead of failing on the dead ones.
func TestPoolSurvivesTerminatedBackends(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, admin := openTestPool(t)
	_, err := pool.Exec(ctx, `INSERT INTO users (email, password, metadata) VALUES ('blip@example.com', 'x', '{}')`)
	require.NoError(t, err)

	for round := range 3 {
		warm(t, pool, 4)
		require.Equal(t, 4, terminateAll(t, admin), "round %d", round)
		// Every pooled connection is dead now; each of these would be
		// handed one.
		for i := range 4 {
			var version int
			err := pool.QueryRow(ctx, `SELECT token_version FROM users WHERE email = 'blip@example.com'`).Scan(&version)
			require.NoError(t, err, "round %d read %d", round, i)
			require.Equal(t, round, version)
		}
		warm(t, pool, 4)
		require.Equal(t, 4, terminateAll(t, admin))
		_, err := pool.Exec(ctx, `UPDATE users SET token_version = token_version + 1 WHERE email = 'blip@example.com'`)
		require.NoError(t, err, "round %d write", round)
	}
}

// TestReadRetriesLostConnection terminates the backend while a read is
// running on it: db.Read answers from a fresh connection. Without Read the
// same read fails.
func TestReadRetriesLostConnection(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, admin := openTestPool(t)

	// read sleeps on its first attempt (long enough to be killed) and not
	// on the next, and returns the backend that answered. Each phase marks
	// its statement, so that the killer cannot pick the still-exiting
	// backend of the phase before.
	attempts, phase := 0, "phase1"
	read := func(ctx context.Context) (int32, error) {
		attempts++
		var pid int32
		err := pool.QueryRow(ctx, `/* `+phase+` */ SELECT pg_backend_pid() FROM pg_sleep($1)`,
			map[bool]float64{true: 60, false: 0}[attempts == 1]).Scan(&pid)
		return pid, err
	}
	killSleeper := func(phase string) {
		assert.Eventually(t, func() bool {
			var killed bool
			err := admin.QueryRow(ctx, `
				SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
				WHERE datname = current_database() AND query LIKE $1 AND state = 'active'
				  AND pid <> pg_backend_pid()`, "/* "+phase+" */%").Scan(&killed)
			return err == nil && killed
		}, 10*time.Second, 5*time.Millisecond)
	}

	// Without Read: the read in flight fails.
	done := make(chan struct{})
	go func() { defer close(done); killSleeper("phase1") }()
	_, err := read(ctx)
	<-done
	require.Error(t, err)
	require.True(t, db.ConnectionLost(err), "%v", err)

	// With Read: the same fault is invisible.
	attempts, phase = 0, "phase2"
	done = make(chan struct{})
	go func() { defer close(done); killSleeper("phase2") }()
	var pid int32
	err = db.Read(ctx, func(ctx context.Context) error {
		var err error
		pid, err = read(ctx)
		return err
	})
	<-done
	require.NoError(t, err)
	require.NotZero(t, pid)
	require.Equal(t, 2, attempts)
}

func TestReadDoesNotRetryOtherErrors(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := openTestPool(t)
	for name, sql := range map[string]string{
		"syntax":  `SELEC 1`,
		"no rows": `SELECT 1 WHERE false`,
		"runtime": `SELECT 1/0`,
	} {
		attempts := 0
		err := db.Read(ctx, func(ctx context.Context) error {
			attempts++
			var n int
			return pool.QueryRow(ctx, sql).Scan(&n)
		})
		require.Error(t, err, name)
		require.False(t, db.ConnectionLost(err), name)
		require.Equal(t, 1, attempts, name)
	}

	// A cancelled request is not retried either.
	cctx, cancel := context.WithCancel(ctx)
	attempts := 0
	err := db.Read(cctx, func(ctx context.Context) error {
		attempts++
		cancel()
		_, err := pool.Exec(ctx, `SELECT 1`)
		return err
	})
	require.Error(t, err)
	require.Equal(t, 1, attempts)
}
