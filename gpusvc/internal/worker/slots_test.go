package worker

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
)

// TestOnGPUHoldsASlot: a job's backend call holds one of the host's GPU
// slots (so /health reports it and synchronous requests queue behind it),
// and a full slot queue fails the step transiently.
func TestOnGPUHoldsASlot(t *testing.T) {
	t.Parallel()
	lim := capacity.New(capacity.Options{Slots: 1, Queue: 0})
	r := &Runner{opts: Options{Slots: lim}}
	err := r.onGPU(context.Background(), func() error {
		require.Equal(t, 1, lim.InFlight())
		// The only slot is taken: another caller is refused at once.
		_, err := lim.Acquire(context.Background())
		require.ErrorIs(t, err, capacity.ErrFull)
		err = r.onGPU(context.Background(), func() error { return nil })
		require.ErrorIs(t, err, capacity.ErrFull)
		_, permanent := classify(err)
		require.False(t, permanent, "a busy GPU is worth retrying")
		return nil
	})
	require.NoError(t, err)
	require.Zero(t, lim.InFlight())

	boom := errors.New("boom")
	require.ErrorIs(t, r.onGPU(context.Background(), func() error { return boom }), boom)
	require.Zero(t, lim.InFlight(), "the slot is released on failure too")
}
