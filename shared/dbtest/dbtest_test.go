package dbtest_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/dbtest"
)

func TestNewDatabasesAreIsolated(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	a, b := dbtest.New(t), dbtest.New(t)

	_, err := a.Exec(ctx, `INSERT INTO api_hosts (address) VALUES ('http://a.test')`)
	require.NoError(t, err)

	var n int
	require.NoError(t, b.QueryRow(ctx, `SELECT count(*) FROM api_hosts`).Scan(&n))
	require.Zero(t, n)
	require.NoError(t, a.QueryRow(ctx, `SELECT count(*) FROM api_hosts`).Scan(&n))
	require.Equal(t, 1, n)

	var nameA, nameB string
	require.NoError(t, a.QueryRow(ctx, `SELECT current_database()`).Scan(&nameA))
	require.NoError(t, b.QueryRow(ctx, `SELECT current_database()`).Scan(&nameB))
	require.NotEqual(t, nameA, nameB)
}

func TestDatabaseDroppedAtCleanup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var name string
	t.Run("use", func(t *testing.T) {
		url := dbtest.NewURL(t)
		conn, err := pgx.Connect(ctx, url)
		require.NoError(t, err)
		// Left open on purpose: the drop must force it closed.
		require.NoError(t, conn.QueryRow(ctx, `SELECT current_database()`).Scan(&name))
	})

	admin, err := pgx.Connect(ctx, dbtest.AdminURL())
	require.NoError(t, err)
	defer admin.Close(ctx)
	var exists bool
	require.NoError(t, admin.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists))
	require.False(t, exists, "database %s survived its test", name)
}

func TestEmptyHasNoTables(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	conn, err := pgx.Connect(ctx, dbtest.Empty(t))
	require.NoError(t, err)
	defer conn.Close(context.Background())

	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n))
	require.Zero(t, n)
}

func TestRedisPrefixCleanup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	var prefix string
	t.Run("use", func(t *testing.T) {
		client, p := dbtest.Redis(t)
		prefix = p
		require.Regexp(t, `^test:[0-9a-f]+:$`, prefix)
		for i := range 1200 {
			require.NoError(t, client.Set(ctx, prefix+strconv.Itoa(i), "v", 0).Err())
		}
	})

	client, other := dbtest.Redis(t)
	require.NotEqual(t, prefix, other)
	keys, _, err := client.Scan(ctx, 0, prefix+"*", 10000).Result()
	require.NoError(t, err)
	require.Empty(t, keys)
}
