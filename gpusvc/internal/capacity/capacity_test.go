package capacity_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
)

func TestSlotsQueueAndFull(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 1})
	ctx := context.Background()

	r1, err := l.Acquire(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, l.InFlight())

	got := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(ctx)
		if err == nil {
			got <- r
		}
	}()
	require.Eventually(t, func() bool { return l.Queued() == 1 }, time.Second, time.Millisecond)

	_, err = l.Acquire(ctx)
	var full *capacity.FullError
	require.ErrorAs(t, err, &full)
	require.True(t, errors.Is(err, capacity.ErrFull))
	require.GreaterOrEqual(t, full.RetryAfter, time.Second)

	r1()
	r1() // a second release is a no-op
	r2 := <-got
	require.Equal(t, 1, l.InFlight())
	require.Equal(t, 0, l.Queued())
	r2()
	require.Equal(t, 0, l.InFlight())
}

func TestQueuedWaitEndsWithContextOrTimeout(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 2, MaxWait: 20 * time.Millisecond})
	r, err := l.Acquire(context.Background())
	require.NoError(t, err)
	defer r()

	_, err = l.Acquire(context.Background())
	require.ErrorIs(t, err, capacity.ErrQueueTimeout)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Acquire(ctx)
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 0, l.Queued())
}

func TestNoQueueRefusesAtOnce(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 2})
	a, err := l.Acquire(context.Background())
	require.NoError(t, err)
	b, err := l.Acquire(context.Background())
	require.NoError(t, err)
	_, err = l.Acquire(context.Background())
	require.ErrorIs(t, err, capacity.ErrFull)
	a()
	b()
}

// TestAcquireWaitWaitsPastQueueAndMaxWait: a job River already handed
// over waits for a slot however full the bounded queue is and past
// MaxWait, instead of failing (and being retried out of its fair turn).
func TestAcquireWaitWaitsPastQueueAndMaxWait(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 0, MaxWait: 10 * time.Millisecond})
	hold, err := l.Acquire(context.Background())
	require.NoError(t, err)

	got := make(chan error, 1)
	go func() {
		release, err := l.AcquireWait(context.Background())
		if err == nil {
			release()
		}
		got <- err
	}()
	require.Eventually(t, func() bool { return l.Queued() == 1 }, time.Second, time.Millisecond)
	time.Sleep(50 * time.Millisecond) // well past MaxWait
	select {
	case err := <-got:
		t.Fatalf("AcquireWait returned while the slot was busy: %v", err)
	default:
	}
	hold()
	require.NoError(t, <-got)
	require.Zero(t, l.Queued())
	require.Zero(t, l.InFlight())

	hold, err = l.Acquire(context.Background())
	require.NoError(t, err)
	defer hold()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.AcquireWait(ctx)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.Zero(t, l.Queued())
}

func TestReleaseNoticeAfterTheSlotFrees(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1})
	var inFlightAtNotice []int
	ctx := capacity.WithReleaseNotice(context.Background(), func() {
		inFlightAtNotice = append(inFlightAtNotice, l.InFlight())
	})
	release, err := l.Acquire(ctx)
	require.NoError(t, err)
	require.Empty(t, inFlightAtNotice, "no notice while the slot is held")
	release()
	release()
	require.Equal(t, []int{0}, inFlightAtNotice, "one notice, once the slot is free")

	// A slot taken without a notice in its context calls nothing.
	plain, err := l.Acquire(context.Background())
	require.NoError(t, err)
	plain()
	require.Len(t, inFlightAtNotice, 1)
}
