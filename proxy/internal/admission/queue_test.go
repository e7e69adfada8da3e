package admission

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// enqueue queues one request of work by key and returns it.
func enqueue(q *queue, key string, work float64) *waiter {
	w := &waiter{user: q.user(key), work: work, ready: make(chan struct{})}
	q.push(w)
	return w
}

// drain pops every waiter under userCap and returns their users in order.
func drain(q *queue, userCap int) []string {
	var out []string
	for w := q.pop(userCap); w != nil; w = q.pop(userCap) {
		out = append(out, w.user.key)
	}
	return out
}

func TestQueueLightUserServedNextAfterHeavyBacklog(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	for range 20 {
		enqueue(q, "heavy", 1)
	}
	require.Equal(t, "heavy", q.pop(0).user.key, "the heavy user's first request")
	enqueue(q, "light", 1)
	require.Equal(t, "light", q.pop(0).user.key, "the light user's only request goes before the 19 heavy ones left")
	rest := drain(q, 0)
	require.Len(t, rest, 19)
	for _, k := range rest {
		require.Equal(t, "heavy", k)
	}
}

func TestQueueInterleavesUsersInFairShares(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	for range 3 {
		enqueue(q, "a", 1)
	}
	for range 3 {
		enqueue(q, "b", 1)
	}
	require.Equal(t, []string{"a", "b", "a", "b", "a", "b"}, drain(q, 0))
}

func TestQueueWeighsRequestsByWork(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	for range 3 {
		enqueue(q, "four", 4) // 4-sample requests
	}
	for range 12 {
		enqueue(q, "one", 1) // 1-sample requests
	}
	got := drain(q, 0)
	// Between two 4-unit requests, four 1-unit ones: equal work each.
	require.Equal(t, []string{
		"four", "one", "one", "one", "one",
		"four", "one", "one", "one", "one",
		"four", "one", "one", "one", "one",
	}, got)
}

func TestQueueIdleUserEarnsNoCredit(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	for range 10 {
		enqueue(q, "a", 1)
	}
	for range 5 {
		q.pop(0)
	}
	// b was idle while a was served: it starts at the virtual time, not
	// at 0, so it does not get five requests in a row.
	enqueue(q, "b", 1)
	enqueue(q, "b", 1)
	require.Equal(t, []string{"b", "a", "b", "a", "a", "a", "a"}, drain(q, 0))
}

func TestQueueFIFOKeepsArrivalOrder(t *testing.T) {
	t.Parallel()
	q := newQueue(true)
	for range 5 {
		enqueue(q, "heavy", 4)
	}
	enqueue(q, "light", 1)
	require.Equal(t, []string{"heavy", "heavy", "heavy", "heavy", "heavy", "light"}, drain(q, 2))
}

func TestQueueCapAppliesOnlyWhileOthersWait(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	heavy := q.user("heavy")
	heavy.running = 2
	enqueue(q, "heavy", 1)
	require.True(t, q.eligible(heavy, 2), "alone, the heavy user may exceed the cap")
	enqueue(q, "light", 1)
	require.False(t, q.eligible(heavy, 2), "with another user waiting, the cap holds")
	require.Equal(t, "light", q.pop(2).user.key)
	require.Equal(t, "heavy", q.pop(2).user.key, "once nobody else waits, the heavy user is served")
}

func TestQueueCapWaivedWhenEveryWaiterIsOver(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	q.user("a").running = 3
	q.user("b").running = 3
	enqueue(q, "a", 1)
	enqueue(q, "b", 1)
	require.NotNil(t, q.pop(2), "a free slot is not left idle")
}

func TestQueueRemoteWaiterSwitchesCapOn(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	q.user("heavy").running = 2
	enqueue(q, "heavy", 1)
	q.setRemote(nil, map[string]int{"light": 1})
	require.Nil(t, q.pop(2), "the slot is left for the light user waiting on another replica")
	q.setRemote(nil, nil)
	require.NotNil(t, q.pop(2))
}

func TestQueueRemoveRestoresTagAndCounts(t *testing.T) {
	t.Parallel()
	q := newQueue(false)
	enqueue(q, "a", 1)
	w := enqueue(q, "a", 1)
	q.remove(w)
	require.Equal(t, 1.0, q.order.Peek("a", 0).Start, "a's finish tag is back to its first request's")
	require.Equal(t, 1, q.user("a").waiting)
	require.Equal(t, 1, q.heap.Len())
	first, _ := q.heap.Peek()
	q.remove(first)
	require.Equal(t, 0, q.waitingUsers)
	require.Empty(t, q.users)
}
