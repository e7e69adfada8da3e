package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
)

// TestOnGPUHoldsASlot: a job's backend call holds one of the host's GPU
// slots (so /health reports it and synchronous requests queue behind it),
// and releases it on success and failure.
func TestOnGPUHoldsASlot(t *testing.T) {
	t.Parallel()
	lim := capacity.New(capacity.Options{Slots: 1, Queue: 0})
	x := &run{r: &Runner{opts: Options{Slots: lim}}}
	err := x.onGPU(context.Background(), 1, func() error {
		require.Equal(t, 1, lim.InFlight())
		// The only slot is taken: a synchronous caller is refused at once.
		_, err := lim.Acquire(context.Background(), capacity.Claim{})
		require.ErrorIs(t, err, capacity.ErrFull)
		return nil
	})
	require.NoError(t, err)
	require.Zero(t, lim.InFlight())

	boom := errors.New("boom")
	require.ErrorIs(t, x.onGPU(context.Background(), 1, func() error { return boom }), boom)
	require.Zero(t, lim.InFlight(), "the slot is released on failure too")
}

// TestOnGPUWaitsForASlot: a job whose host is full (slots busy, bounded
// queue full) waits for a slot inside the job instead of failing and
// being retried behind every other waiting job (issue 17).
func TestOnGPUWaitsForASlot(t *testing.T) {
	t.Parallel()
	lim := capacity.New(capacity.Options{Slots: 1, Queue: 0})
	x := &run{r: &Runner{opts: Options{Slots: lim}}}
	hold, err := lim.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		done <- x.onGPU(context.Background(), 1, func() error {
			if lim.InFlight() != 1 {
				return errors.New("ran without holding the slot")
			}
			return nil
		})
	}()
	require.Eventually(t, func() bool { return lim.Queued() == 1 }, time.Second, time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the job did not wait for the busy slot: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	hold()
	require.NoError(t, <-done)
	require.Zero(t, lim.InFlight())
}
