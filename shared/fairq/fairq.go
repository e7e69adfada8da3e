// Package fairq holds the fair order shared by every queue in front of
// the GPUs: start-time fair queueing (SFQ) across users, weighted by work.
// The proxy's admission queue and each gpusvc host's slot queue use it;
// the async job order (shared/jobs) applies the same rule in SQL.
//
// A request of work w by user u gets the start tag
// S = max(V, F(u)) and the finish tag F(u) = S + w, where V, the virtual
// time, is the start tag of the request served last. The waiting request
// with the smallest start tag is served next, ties in arrival order. A
// user with a backlog therefore only pushes their own requests back: a
// newcomer's request starts at V and is served after at most one request
// of each user already being served. With FIFO every tag is the arrival
// number, which is plain arrival order.
//
// This package knows nothing of slots, deadlines, clocks or locks: its
// callers hold their own lock around every call.
package fairq

import "container/heap"

// Tag is a request's place in the fair order.
type Tag struct {
	// Start and Finish are the request's start and finish tags.
	Start, Finish float64
	// Seq is the arrival number, the tie-break.
	Seq uint64
}

// Before reports whether t is served before o.
func (t Tag) Before(o Tag) bool {
	if t.Start != o.Start {
		return t.Start < o.Start
	}
	return t.Seq < o.Seq
}

// Clock assigns tags and keeps the virtual time and the users' last finish
// tags. The zero value is not ready: use NewClock.
type Clock struct {
	fifo   bool
	vtime  float64
	seq    uint64
	finish map[string]float64
}

// NewClock returns a Clock; with fifo it hands out arrival order.
func NewClock(fifo bool) *Clock {
	return &Clock{fifo: fifo, finish: make(map[string]float64)}
}

// Peek returns the tag a request of work by user would get now, without
// recording it.
func (c *Clock) Peek(user string, work float64) Tag {
	if c.fifo {
		return Tag{Start: float64(c.seq), Finish: float64(c.seq), Seq: c.seq}
	}
	start := max(c.vtime, c.finish[user])
	return Tag{Start: start, Finish: start + work, Seq: c.seq}
}

// Next assigns a request of work by user its tag and records it as the
// user's last.
func (c *Clock) Next(user string, work float64) Tag {
	t := c.Peek(user, work)
	c.seq++
	if !c.fifo {
		c.finish[user] = t.Finish
	}
	return t
}

// Served advances the virtual time to t's start (a request with tag t is
// being served) and forgets the users whose last finish tag it passed.
func (c *Clock) Served(t Tag) {
	if c.fifo || t.Start <= c.vtime {
		return
	}
	c.vtime = t.Start
	for u, f := range c.finish {
		if f <= c.vtime {
			delete(c.finish, u)
		}
	}
}

// Charge counts a request of work by user that is served at once, without
// queueing, as if it had been queued and served.
func (c *Clock) Charge(user string, work float64) {
	if c.fifo {
		return
	}
	c.Served(c.Next(user, work))
}

// Withdraw takes back the tag t of user's request that left without being
// served. When it was the user's last, the user's finish tag goes back to
// t's start, so leaving costs nothing.
func (c *Clock) Withdraw(user string, t Tag) {
	if f, ok := c.finish[user]; ok && f == t.Finish {
		if t.Start <= c.vtime {
			delete(c.finish, user)
		} else {
			c.finish[user] = t.Start
		}
	}
}

// Entry is embedded in what a Heap holds: its tag and its place in the
// heap.
type Entry struct {
	// Tag is the element's place in the fair order; set it before Push.
	Tag   Tag
	index int
	in    bool
}

// Queued reports whether the element is in a heap.
func (e *Entry) Queued() bool { return e.in }

func (e *Entry) fairEntry() *Entry { return e }

// Elem is what a Heap holds: a pointer to a struct that embeds Entry.
type Elem interface{ fairEntry() *Entry }

// Heap orders elements by tag: the smallest first. The zero value is an
// empty heap.
type Heap[E Elem] struct{ s heapSlice[E] }

// Len returns the number of elements.
func (h *Heap[E]) Len() int { return len(h.s) }

// Push adds e.
func (h *Heap[E]) Push(e E) { heap.Push(&h.s, e) }

// Peek returns the first element in the fair order; ok is false when the
// heap is empty.
func (h *Heap[E]) Peek() (e E, ok bool) {
	if len(h.s) == 0 {
		return e, false
	}
	return h.s[0], true
}

// Pop removes and returns the first element; ok is false when the heap is
// empty.
func (h *Heap[E]) Pop() (e E, ok bool) {
	if len(h.s) == 0 {
		return e, false
	}
	return heap.Pop(&h.s).(E), true
}

// Remove takes e out of the heap; it reports false when e was not in it.
func (h *Heap[E]) Remove(e E) bool {
	en := e.fairEntry()
	if !en.in {
		return false
	}
	heap.Remove(&h.s, en.index)
	return true
}

// All returns the elements in no particular order; the caller must not
// change the slice.
func (h *Heap[E]) All() []E { return h.s }

// heapSlice implements container/heap's interface.
type heapSlice[E Elem] []E

func (s heapSlice[E]) Len() int           { return len(s) }
func (s heapSlice[E]) Less(i, j int) bool { return s[i].fairEntry().Tag.Before(s[j].fairEntry().Tag) }
func (s heapSlice[E]) Swap(i, j int) {
	s[i], s[j] = s[j], s[i]
	s[i].fairEntry().index = i
	s[j].fairEntry().index = j
}

func (s *heapSlice[E]) Push(x any) {
	e := x.(E)
	en := e.fairEntry()
	en.index, en.in = len(*s), true
	*s = append(*s, e)
}

func (s *heapSlice[E]) Pop() any {
	old := *s
	e := old[len(old)-1]
	var zero E
	old[len(old)-1] = zero
	en := e.fairEntry()
	en.index, en.in = -1, false
	*s = old[:len(old)-1]
	return e
}
