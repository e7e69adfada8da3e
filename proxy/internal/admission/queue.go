package admission

import "container/heap"

// user is one user's state in a queue.
type user struct {
	key string
	// finish is the finish tag of the user's last queued request.
	finish float64
	// waiting and running are this replica's counts; remoteRunning and
	// remoteWaiting the other replicas' as last synced.
	waiting, running             int
	remoteRunning, remoteWaiting int
}

// waiter is one queued request.
type waiter struct {
	user          *user
	work          float64
	start, finish float64
	seq           uint64
	index         int   // in the heap; -1 once out of it
	arrived       int64 // unix nanos, for the console
	ready         chan struct{}
	granted       bool
}

// queue is the start-time fair queue (or, with fifo, an arrival-order
// queue) with the per-user cap. It does no locking and never reads the
// clock; Controller holds its lock around every call.
type queue struct {
	fifo  bool
	vtime float64
	seq   uint64
	users map[string]*user
	heap  waiterHeap
	// waitingUsers counts users with waiting > 0 here or remotely.
	waitingUsers int
}

func newQueue(fifo bool) *queue {
	return &queue{fifo: fifo, users: map[string]*user{}}
}

// user returns key's state, creating it.
func (q *queue) user(key string) *user {
	u := q.users[key]
	if u == nil {
		u = &user{key: key}
		q.users[key] = u
	}
	return u
}

// forget drops u when nothing refers to it and its tag gives it no
// advantage.
func (q *queue) forget(u *user) {
	if u.waiting == 0 && u.running == 0 && u.remoteRunning == 0 && u.remoteWaiting == 0 && u.finish <= q.vtime {
		delete(q.users, u.key)
	}
}

// isWaiting reports whether u has a waiter anywhere.
func (u *user) isWaiting() bool { return u.waiting > 0 || u.remoteWaiting > 0 }

// tags returns the start and finish tags a new request of work by u would
// get, without queueing it.
func (q *queue) tags(u *user, work float64) (start, finish float64) {
	if q.fifo {
		s := float64(q.seq)
		return s, s
	}
	start = max(q.vtime, u.finish)
	return start, start + work
}

// charge gives u's request of work, served at once without queueing, its
// tags, as if it had been queued and popped.
func (q *queue) charge(u *user, work float64) {
	if q.fifo {
		return
	}
	start, finish := q.tags(u, work)
	u.finish = finish
	q.vtime = max(q.vtime, start)
}

// push queues w (its user and work set) and assigns its tags.
func (q *queue) push(w *waiter) {
	w.start, w.finish = q.tags(w.user, w.work)
	w.seq = q.seq
	q.seq++
	if !q.fifo {
		w.user.finish = w.finish
	}
	if !w.user.isWaiting() {
		q.waitingUsers++
	}
	w.user.waiting++
	heap.Push(&q.heap, w)
}

// ahead returns the waiters that would be served before a waiter with the
// given tags (ignoring the cap): their number and work.
func (q *queue) ahead(start float64, seq uint64) (n int, work float64) {
	for _, w := range q.heap {
		if w.start < start || (w.start == start && w.seq < seq) {
			n++
			work += w.work
		}
	}
	return n, work
}

// remove takes w out of the queue without serving it (its client left or
// its deadline passed). When w was its user's last request, the user's
// finish tag goes back to w's start, so leaving costs nothing.
func (q *queue) remove(w *waiter) {
	if w.index < 0 {
		return
	}
	heap.Remove(&q.heap, w.index)
	q.leave(w)
	if !q.fifo && w.user.finish == w.finish {
		w.user.finish = w.start
	}
	q.forget(w.user)
}

// leave updates the user's counts for w leaving the heap.
func (q *queue) leave(w *waiter) {
	w.user.waiting--
	if !w.user.isWaiting() {
		q.waitingUsers--
	}
}

// eligible reports whether u may be served now under userCap (≤ 0: no
// cap): always when no other user is waiting.
func (q *queue) eligible(u *user, userCap int) bool {
	if q.fifo || userCap <= 0 {
		return true
	}
	others := q.waitingUsers
	if u.isWaiting() {
		others--
	}
	return others == 0 || u.running+u.remoteRunning < userCap
}

// pop serves the eligible waiter with the smallest start tag (ties in
// arrival order) and advances the virtual time to its start tag; nil when
// no waiter is eligible. The caller counts the waiter as running.
//
// When every waiting user, here and on other replicas, is over the cap, the
// cap is ignored: a free slot is never left idle for want of a user under
// it. (While some user under the cap waits on another replica only, the
// slot stays free for that replica.)
func (q *queue) pop(userCap int) *waiter {
	if userCap > 0 && !q.anyEligible(userCap) {
		userCap = 0
	}
	var best *waiter
	if len(q.heap) > 0 && q.eligible(q.heap[0].user, userCap) {
		best = q.heap[0]
	} else {
		for _, w := range q.heap {
			if q.eligible(w.user, userCap) && (best == nil || less(w, best)) {
				best = w
			}
		}
	}
	if best == nil {
		return nil
	}
	heap.Remove(&q.heap, best.index)
	q.leave(best)
	if !q.fifo {
		q.vtime = max(q.vtime, best.start)
	}
	return best
}

// anyEligible reports whether some waiting user is under the cap.
func (q *queue) anyEligible(userCap int) bool {
	for _, u := range q.users {
		if u.isWaiting() && q.eligible(u, userCap) {
			return true
		}
	}
	return false
}

// setRemote replaces the other replicas' counts.
func (q *queue) setRemote(running, waiting map[string]int) {
	for _, u := range q.users {
		u.remoteRunning, u.remoteWaiting = 0, 0
	}
	for k, n := range running {
		q.user(k).remoteRunning = n
	}
	for k, n := range waiting {
		q.user(k).remoteWaiting = n
	}
	q.waitingUsers = 0
	for _, u := range q.users {
		if u.isWaiting() {
			q.waitingUsers++
		}
	}
	for _, u := range q.users {
		q.forget(u)
	}
}

func less(a, b *waiter) bool {
	if a.start != b.start {
		return a.start < b.start
	}
	return a.seq < b.seq
}

// waiterHeap orders waiters by start tag, then arrival.
type waiterHeap []*waiter

func (h waiterHeap) Len() int           { return len(h) }
func (h waiterHeap) Less(i, j int) bool { return less(h[i], h[j]) }
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}
