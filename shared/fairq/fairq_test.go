package fairq

import (
	"testing"

	"github.com/stretchr/testify/require"
)

type item struct {
	Entry
	user string
}

// serve queues the requests (user, work) in order on a fresh queue and
// returns the users in the order they are served.
func serve(fifo bool, reqs []item, work map[string]float64) []string {
	c := NewClock(fifo)
	var h Heap[*item]
	for i := range reqs {
		it := &reqs[i]
		it.Tag = c.Next(it.user, work[it.user])
		h.Push(it)
	}
	var out []string
	for {
		it, ok := h.Pop()
		if !ok {
			return out
		}
		c.Served(it.Tag)
		out = append(out, it.user)
	}
}

func TestOrder(t *testing.T) {
	t.Parallel()
	backlog := func(users ...string) []item {
		var r []item
		for _, u := range users {
			r = append(r, item{user: u})
		}
		return r
	}
	for _, tc := range []struct {
		name string
		fifo bool
		reqs []item
		work map[string]float64
		want []string
	}{
		{"a backlog does not delay a newcomer", false, backlog("a", "a", "a", "a", "b"),
			map[string]float64{"a": 1, "b": 1}, []string{"a", "b", "a", "a", "a"}},
		{"fifo is arrival order", true, backlog("a", "a", "a", "a", "b"),
			map[string]float64{"a": 1, "b": 1}, []string{"a", "a", "a", "a", "b"}},
		{"weighted by work", false, backlog("a", "a", "b", "b", "b", "b"),
			map[string]float64{"a": 2, "b": 1}, []string{"a", "b", "b", "a", "b", "b"}},
		{"one user is arrival order", false, backlog("a", "a", "a"),
			map[string]float64{"a": 3}, []string{"a", "a", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, serve(tc.fifo, tc.reqs, tc.work))
		})
	}
}

func TestWithdrawCostsNothing(t *testing.T) {
	t.Parallel()
	c := NewClock(false)
	first := c.Next("a", 2)
	second := c.Next("a", 2)
	require.Equal(t, Tag{Start: 2, Finish: 4, Seq: 1}, second)
	c.Withdraw("a", second)
	require.Equal(t, 2.0, c.Peek("a", 1).Start, "a's next request starts where the withdrawn one did")
	c.Withdraw("a", first)
	require.Equal(t, 0.0, c.Peek("a", 1).Start)
	require.Empty(t, c.finish)
}

func TestServedForgetsPassedUsers(t *testing.T) {
	t.Parallel()
	c := NewClock(false)
	c.Charge("a", 1)
	b := c.Next("b", 5)
	c.Next("a", 1)
	c.Served(b) // V = 0: nothing passed yet
	require.Len(t, c.finish, 2)
	c.Served(Tag{Start: 3})
	require.Equal(t, map[string]float64{"b": 5}, c.finish, "a's finish tag 2 is behind V = 3")
	require.Equal(t, 3.0, c.Peek("a", 1).Start)
}

func TestHeapRemove(t *testing.T) {
	t.Parallel()
	var h Heap[*item]
	items := []*item{{user: "x"}, {user: "y"}, {user: "z"}}
	for i, it := range items {
		it.Tag = Tag{Start: float64(i), Seq: uint64(i)}
		h.Push(it)
		require.True(t, it.Queued())
	}
	require.True(t, h.Remove(items[0]))
	require.False(t, items[0].Queued())
	require.False(t, h.Remove(items[0]), "removing twice is a no-op")
	first, ok := h.Peek()
	require.True(t, ok)
	require.Equal(t, "y", first.user)
	require.Len(t, h.All(), 2)
	h.Pop()
	h.Pop()
	_, ok = h.Pop()
	require.False(t, ok)
}
