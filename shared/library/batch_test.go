package library_test

import (
	"context"
	"errors"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/library"
)

// CreateAll inserts its rows in the same transaction as within: when
// within fails, no row and no object is left; when it succeeds, every row
// is there, with dedup inside the batch and against older images.
func TestCreateAllIsAtomicWithWithin(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, fake, imgs := setup(t)
	alice := newUser(t, pool, "alice@example.com")
	older, _, err := imgs.Create(ctx, library.NewImage{UserID: alice, Data: pngBytes(t, 90, 90)})
	require.NoError(t, err)
	require.Equal(t, 2, fake.Count("img"))
	batch := []library.NewImage{
		{UserID: alice, Data: pngBytes(t, 80, 80)},
		{UserID: alice, Data: pngBytes(t, 90, 90)}, // the older image
		{UserID: alice, Data: pngBytes(t, 80, 80)}, // the first item again
	}
	boom := errors.New("settle failed")
	_, _, err = imgs.CreateAll(ctx, batch, func(context.Context, pgx.Tx) error { return boom })
	require.ErrorIs(t, err, boom)
	ids, err := imgs.ListIDs(ctx, library.ListOptions{UserID: alice, Limit: 10})
	require.NoError(t, err)
	require.Equal(t, []int64{older.ID}, ids, "nothing of the failed batch is in the library")
	require.Equal(t, 2, fake.Count("img"), "nor in storage")

	ran := false
	out, created, err := imgs.CreateAll(ctx, batch, func(ctx context.Context, tx pgx.Tx) error {
		var n int
		require.NoError(t, tx.QueryRow(ctx, `SELECT count(*) FROM images WHERE user_id = $1`, alice).Scan(&n))
		require.Equal(t, 2, n, "within sees the batch's rows")
		ran = true
		return nil
	})
	require.NoError(t, err)
	require.True(t, ran)
	require.Equal(t, []bool{true, false, false}, created)
	require.Equal(t, older.ID, out[1].ID)
	require.Equal(t, out[0].ID, out[2].ID)
	require.Equal(t, 4, fake.Count("img"), "only the new image's objects were kept")
}
