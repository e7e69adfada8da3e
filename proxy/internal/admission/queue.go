package admission

import "github.com/nounsai/sdserver/shared/fairq"

// user is one user's state in a queue.
type user struct {
	key string
	// waiting and running are this replica's counts; remoteRunning and
	// remoteWaiting the other replicas' as last synced.
	waiting, running             int
	remoteRunning, remoteWaiting int
}

// waiter is one queued request.
type waiter struct {
	fairq.Entry
	user    *user
	work    float64
	arrived int64 // unix nanos, for the console
	ready   chan struct{}
	granted bool
}

// queue is the start-time fair queue of shared/fairq (or, with fifo, an
// arrival-order queue) with the per-user cap. It does no locking and never
// reads the clock; Controller holds its lock around every call.
type queue struct {
	fifo  bool
	order *fairq.Clock
	users map[string]*user
	heap  fairq.Heap[*waiter]
	// waitingUsers counts users with waiting > 0 here or remotely.
	waitingUsers int
}

func newQueue(fifo bool) *queue {
	return &queue{fifo: fifo, order: fairq.NewClock(fifo), users: map[string]*user{}}
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

// forget drops u when nothing refers to it (its finish tag stays in
// q.order as long as it matters).
func (q *queue) forget(u *user) {
	if u.waiting == 0 && u.running == 0 && u.remoteRunning == 0 && u.remoteWaiting == 0 {
		delete(q.users, u.key)
	}
}

// idle reports whether u has no request running on any replica (as last
// synced).
func (u *user) idle() bool { return u.running == 0 && u.remoteRunning == 0 }

// isWaiting reports whether u has a waiter anywhere.
func (u *user) isWaiting() bool { return u.waiting > 0 || u.remoteWaiting > 0 }

// push queues w (its user and work set) and assigns its tag.
func (q *queue) push(w *waiter) {
	w.Tag = q.order.Next(w.user.key, w.work)
	if !w.user.isWaiting() {
		q.waitingUsers++
	}
	w.user.waiting++
	q.heap.Push(w)
}

// ahead returns the waiters that would be served before a waiter with
// tag t (ignoring the cap): their number and work.
func (q *queue) ahead(t fairq.Tag) (n int, work float64) {
	for _, w := range q.heap.All() {
		if w.Tag.Before(t) {
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
	if !q.heap.Remove(w) {
		return
	}
	q.leave(w)
	q.order.Withdraw(w.user.key, w.Tag)
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
	best, ok := q.heap.Peek()
	if !ok || !q.eligible(best.user, userCap) {
		best = nil
		for _, w := range q.heap.All() {
			if q.eligible(w.user, userCap) && (best == nil || w.Tag.Before(best.Tag)) {
				best = w
			}
		}
	}
	if best == nil {
		return nil
	}
	q.serve(best)
	return best
}

// popIdle serves the waiter with the smallest start tag among idle users
// (see user.idle); nil when no waiter's user is idle.
func (q *queue) popIdle() *waiter {
	var best *waiter
	for _, w := range q.heap.All() {
		if w.user.idle() && (best == nil || w.Tag.Before(best.Tag)) {
			best = w
		}
	}
	if best == nil {
		return nil
	}
	q.serve(best)
	return best
}

// serve takes w out of the heap and advances the virtual time to its start
// tag. The caller counts w as running.
func (q *queue) serve(w *waiter) {
	q.heap.Remove(w)
	q.leave(w)
	q.order.Served(w.Tag)
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
