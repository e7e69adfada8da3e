package apihost_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apihost"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestRegisterDrainList walks a gpusvc's life in the table (register,
// drain, register again), the console's drain edit and the proxy's load,
// with the NOTIFY each change sends.
func TestRegisterDrainList(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	conn, err := pgx.ConnectConfig(ctx, pool.Config().ConnConfig.Copy())
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	require.NoError(t, apihost.Listen(ctx, conn))
	notified := func() {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		n, err := conn.WaitForNotification(wctx)
		require.NoError(t, err)
		require.Equal(t, apihost.Channel, n.Channel)
	}

	rows, err := apihost.List(ctx, pool)
	require.NoError(t, err)
	require.Empty(t, rows)

	a := apihost.NewRegistrar(pool, "http://127.0.0.1:18291")
	b := apihost.NewRegistrar(pool, "http://127.0.0.1:18292")
	require.NoError(t, a.Register(ctx))
	notified()
	require.NoError(t, b.Register(ctx))
	notified()
	require.NoError(t, a.Drain(ctx))
	notified()
	rows, err = apihost.List(ctx, pool)
	require.NoError(t, err)
	require.Len(t, rows, 2)
	require.Equal(t, "http://127.0.0.1:18291", rows[0].Address)
	require.True(t, rows[0].Draining)
	require.True(t, rows[0].Enabled)
	require.False(t, rows[1].Draining)

	// A restart clears draining; the operator's drain edit sets it again.
	require.NoError(t, a.Register(ctx))
	notified()
	require.NoError(t, apihost.SetDraining(ctx, pool, rows[1].ID, true))
	notified()
	rows, err = apihost.List(ctx, pool)
	require.NoError(t, err)
	require.False(t, rows[0].Draining)
	require.True(t, rows[1].Draining)

	err = apihost.SetDraining(ctx, pool, rows[1].ID+100, true)
	require.Equal(t, apperr.KindNotFound, apperr.KindOf(err))
}
