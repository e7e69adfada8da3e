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

	r1, err := l.Acquire(ctx, capacity.Claim{})
	require.NoError(t, err)
	require.Equal(t, 1, l.InFlight())

	got := make(chan func(), 1)
	go func() {
		r, err := l.Acquire(ctx, capacity.Claim{})
		if err == nil {
			got <- r
		}
	}()
	require.Eventually(t, func() bool { return l.Queued() == 1 }, time.Second, time.Millisecond)

	_, err = l.Acquire(ctx, capacity.Claim{})
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
	r, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	defer r()

	_, err = l.Acquire(context.Background(), capacity.Claim{})
	require.ErrorIs(t, err, capacity.ErrQueueTimeout)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = l.Acquire(ctx, capacity.Claim{})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 0, l.Queued())
}

func TestNoQueueRefusesAtOnce(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 2})
	a, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	b, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	_, err = l.Acquire(context.Background(), capacity.Claim{})
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
	hold, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)

	got := make(chan error, 1)
	go func() {
		release, err := l.AcquireWait(context.Background(), capacity.Claim{})
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

	hold, err = l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	defer hold()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err = l.AcquireWait(ctx, capacity.Claim{})
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
	release, err := l.Acquire(ctx, capacity.Claim{})
	require.NoError(t, err)
	require.Empty(t, inFlightAtNotice, "no notice while the slot is held")
	release()
	release()
	require.Equal(t, []int{0}, inFlightAtNotice, "one notice, once the slot is free")

	// A slot taken without a notice in its context calls nothing.
	plain, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	plain()
	require.Len(t, inFlightAtNotice, 1)
}

// queueUp starts one waiter per claim, in order, each after the previous
// is queued, and returns the order in which they got the slot.
func queueUp(t *testing.T, l *capacity.Limiter, wait bool, claims ...capacity.Claim) <-chan string {
	t.Helper()
	order := make(chan string, len(claims))
	for i, c := range claims {
		go func() {
			acquire := l.Acquire
			if wait {
				acquire = l.AcquireWait
			}
			release, err := acquire(context.Background(), c)
			if err != nil {
				order <- "error: " + err.Error()
				return
			}
			order <- c.User
			release()
		}()
		require.Eventually(t, func() bool { return l.Queued() == i+1 }, time.Second, time.Millisecond)
	}
	return order
}

func drain(t *testing.T, order <-chan string, n int) []string {
	t.Helper()
	var got []string
	for range n {
		select {
		case u := <-order:
			got = append(got, u)
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v got a slot", got)
		}
	}
	return got
}

// TestQueueFairAcrossUsers: a user whose work fills the host's queue (sync
// requests and async jobs alike) does not delay another user's request
// by more than the slot that frees next. Before the fair queue, waiters
// were served in arrival order and b waited behind all of a's work.
func TestQueueFairAcrossUsers(t *testing.T) {
	t.Parallel()
	for _, wait := range []bool{false, true} {
		l := capacity.New(capacity.Options{Slots: 1, Queue: 10, Fair: true})
		hold, err := l.Acquire(context.Background(), capacity.Claim{User: "a"})
		require.NoError(t, err)
		a := capacity.Claim{User: "a", Work: 1}
		order := queueUp(t, l, wait, a, a, a, a, capacity.Claim{User: "b", Work: 1})
		hold()
		got := drain(t, order, 5)
		// a's first waiter started at the same virtual time as b's;
		// b goes no later than second, ahead of a's backlog.
		require.Contains(t, got[:2], "b", "order %v", got)
	}
}

// TestQueueWeighsWork: a 4-unit claim advances its user's share four
// times as far as a 1-unit claim, so a user with one big request waits
// behind another user's small ones no longer than its share.
func TestQueueWeighsWork(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 10, Fair: true})
	hold, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	big := capacity.Claim{User: "heavy", Work: 4}
	small := capacity.Claim{User: "light", Work: 1}
	order := queueUp(t, l, false, big, big, small, small, small, small)
	hold()
	got := drain(t, order, 6)
	// Tags: heavy 0, 4; light 0, 1, 2, 3. Served by start tag (ties by
	// arrival): heavy, light, light, light, light, heavy.
	require.Equal(t, []string{"heavy", "light", "light", "light", "light", "heavy"}, got)
}

// TestQueueGiveUpKeepsOrder: a waiter whose context ends leaves the queue
// without costing the others their turn or a slot.
func TestQueueGiveUpKeepsOrder(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 10, Fair: true})
	hold, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := l.Acquire(ctx, capacity.Claim{User: "gone"})
		gone <- err
	}()
	require.Eventually(t, func() bool { return l.Queued() == 1 }, time.Second, time.Millisecond)
	order := make(chan string, 1)
	go func() {
		release, err := l.Acquire(context.Background(), capacity.Claim{User: "stays"})
		if err == nil {
			order <- "stays"
			release()
		}
	}()
	require.Eventually(t, func() bool { return l.Queued() == 2 }, time.Second, time.Millisecond)
	cancel()
	require.ErrorIs(t, <-gone, context.Canceled)
	require.Equal(t, 1, l.Queued())
	hold()
	require.Equal(t, []string{"stays"}, drain(t, order, 1))
	require.Zero(t, l.InFlight())
	require.Zero(t, l.Queued())
	// Every slot is free again.
	r, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	r()
}

// TestQueueArrivalOrderUnlessFair: without Fair (JOB_FAIRNESS=fifo) the
// queue is served in arrival order, whoever the users are.
func TestQueueArrivalOrderUnlessFair(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 10})
	hold, err := l.Acquire(context.Background(), capacity.Claim{})
	require.NoError(t, err)
	a := capacity.Claim{User: "a"}
	order := queueUp(t, l, false, a, a, a, capacity.Claim{User: "b"})
	hold()
	require.Equal(t, []string{"a", "a", "a", "b"}, drain(t, order, 4))
}

// TestReserveCancelGivesThePlaceBack: a reserved slot or queue place that
// is cancelled (the request was refused after reserving, e.g. for lack of
// credits) goes to the next waiter or back to the free count; Cancel after
// Wait and a second Cancel do nothing.
func TestReserveCancelGivesThePlaceBack(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 1})
	ctx := context.Background()

	slot, err := l.Reserve(ctx, capacity.Claim{User: "a"})
	require.NoError(t, err)
	queued, err := l.Reserve(ctx, capacity.Claim{User: "b"})
	require.NoError(t, err)
	require.Equal(t, 1, l.Queued())
	_, err = l.Reserve(ctx, capacity.Claim{User: "c"})
	require.ErrorIs(t, err, capacity.ErrFull, "one slot reserved and one queue place taken")

	// The queued ticket gives its place back: there is room to queue again.
	queued.Cancel()
	queued.Cancel()
	require.Equal(t, 0, l.Queued())
	next, err := l.Reserve(ctx, capacity.Claim{User: "c"})
	require.NoError(t, err)

	// The slot's ticket is cancelled: the slot goes to the queued ticket.
	slot.Cancel()
	release, err := next.Wait(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, l.InFlight())
	next.Cancel() // after Wait: nothing
	release()
	require.Equal(t, 0, l.InFlight())

	// Everything is free again: one slot and one queue place.
	a, err := l.Reserve(ctx, capacity.Claim{})
	require.NoError(t, err)
	b, err := l.Reserve(ctx, capacity.Claim{})
	require.NoError(t, err)
	a.Cancel()
	b.Cancel()
	require.Equal(t, 0, l.Queued())
	require.Equal(t, 0, l.InFlight())
}

// TestReserveMaxWaitCountsFromReserve: the queue's MaxWait runs from the
// reservation, not from the later Wait.
func TestReserveMaxWaitCountsFromReserve(t *testing.T) {
	t.Parallel()
	l := capacity.New(capacity.Options{Slots: 1, Queue: 1, MaxWait: 300 * time.Millisecond})
	ctx := context.Background()
	r, err := l.Acquire(ctx, capacity.Claim{})
	require.NoError(t, err)
	defer r()
	tk, err := l.Reserve(ctx, capacity.Claim{})
	require.NoError(t, err)
	time.Sleep(350 * time.Millisecond)
	start := time.Now()
	_, err = tk.Wait(ctx)
	require.ErrorIs(t, err, capacity.ErrQueueTimeout)
	require.Less(t, time.Since(start), 250*time.Millisecond, "the wait had already used its MaxWait")
	require.Equal(t, 0, l.Queued())
}
