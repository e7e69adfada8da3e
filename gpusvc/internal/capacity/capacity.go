// Package capacity bounds the GPU work one gpusvc process runs at once: a
// fixed number of slots (one per GPU) and a bounded wait queue in front of
// them. A job that finds the slots busy and the queue full is refused at
// once, so the proxy can send it elsewhere instead of piling requests onto a
// saturated host.
//
// With Options.Fair (gpusvc sets it unless JOB_FAIRNESS=fifo) the queue is
// fair across users in shared/fairq's order (start-time fair queueing, as
// the proxy's admission queue and the async job order are): a freed slot
// goes to the waiter with the smallest start tag, weighted by work.
// Synchronous requests and async jobs of one user share the user's tags,
// so a user whose requests and jobs fill the queue only pushes their own
// work back: another user's request takes the next free slot. A queue of
// one user's work is served in arrival order.
//
// This package must never know what a job does, and never sleep or spin:
// waiting is a blocked channel receive that ctx cancels.
package capacity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nounsai/sdserver/shared/fairq"
)

// ErrFull is returned (wrapped in *FullError) when every slot is busy and
// the wait queue is full.
var ErrFull = errors.New("capacity full")

// FullError reports a refused job and how long the caller should wait before
// trying again.
type FullError struct {
	// RetryAfter estimates when a queue place frees up; at least 1s.
	RetryAfter time.Duration
}

func (e *FullError) Error() string {
	return fmt.Sprintf("all slots busy and the queue is full (retry after %s)", e.RetryAfter)
}

// Unwrap lets errors.Is(err, ErrFull) match.
func (e *FullError) Unwrap() error { return ErrFull }

// ErrQueueTimeout is returned when a queued job waited MaxWait without
// getting a slot.
var ErrQueueTimeout = errors.New("waited too long for a GPU slot")

// Limiter hands out slots. It is safe for concurrent use.
type Limiter struct {
	slots    int
	maxQueue int
	maxWait  time.Duration

	mu sync.Mutex
	// free is the number of free slots; while it is above zero the
	// queue is empty.
	free    int
	waiters fairq.Heap[*waiter]
	// bounded is how many waiters count against maxQueue (AcquireWait's
	// do not).
	bounded int
	// order tags the waiters.
	order *fairq.Clock

	inFlight atomic.Int64
	// avgNanos is an exponentially weighted mean of slot hold times, used
	// to estimate Retry-After.
	avgNanos atomic.Int64
}

// Claim says whose work waits for a slot and how much of it there is, for
// the fair order of the queue.
type Claim struct {
	// User keys the work's user; every claim with the same User shares
	// one fair share ("" is one user too).
	User string
	// Work is the job's work units (one 512×512, 25-step sample is 1);
	// values below 1 count as 1.
	Work float64
}

// Options configure a Limiter.
type Options struct {
	// Slots is how many jobs run at once; values below 1 mean 1.
	Slots int
	// Queue is how many jobs may wait for a slot; 0 means none (a busy
	// host refuses at once), negative means 0.
	Queue int
	// MaxWait bounds the wait in the queue; 0 means no bound besides the
	// caller's ctx.
	MaxWait time.Duration
	// Fair orders the queue fairly across the claims' users (see the
	// package doc); otherwise it is served in arrival order.
	Fair bool
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	slots := max(opts.Slots, 1)
	return &Limiter{
		slots:    slots,
		maxQueue: max(opts.Queue, 0),
		maxWait:  opts.MaxWait,
		free:     slots,
		order:    fairq.NewClock(!opts.Fair),
	}
}

// Slots returns the number of slots.
func (l *Limiter) Slots() int { return l.slots }

// QueueSize returns the most jobs that may wait.
func (l *Limiter) QueueSize() int { return l.maxQueue }

// InFlight returns the number of jobs holding a slot.
func (l *Limiter) InFlight() int { return int(l.inFlight.Load()) }

// Queued returns the number of jobs waiting for a slot.
func (l *Limiter) Queued() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.waiters.Len()
}

// Acquire takes a slot, waiting in the queue when all are busy. It returns
// a release function that must be called exactly once when the job ends
// (later calls do nothing). It fails with a *FullError when the queue is
// full, ErrQueueTimeout after MaxWait, or ctx's error when ctx ends first.
// Waiters get slots in the fair order of their claims.
func (l *Limiter) Acquire(ctx context.Context, c Claim) (release func(), err error) {
	return l.acquire(ctx, c, true)
}

// AcquireWait takes a slot like Acquire, but never refuses: it waits
// behind the other waiters however long the queue is and however long it
// takes, until ctx ends (it then returns ctx's error). It is for work that
// already waited its turn elsewhere (a job River handed to this host in
// its fair order), which must not lose that turn by failing and being
// retried later. Its waiters count in Queued, but not against Queue's
// bound.
func (l *Limiter) AcquireWait(ctx context.Context, c Claim) (release func(), err error) {
	return l.acquire(ctx, c, false)
}

// acquire is Acquire when bounded (the queue's length and MaxWait apply)
// and AcquireWait when not.
func (l *Limiter) acquire(ctx context.Context, c Claim, bounded bool) (release func(), err error) {
	t, err := l.reserve(ctx, c, bounded)
	if err != nil {
		return nil, err
	}
	return t.Wait(ctx)
}

// Reserve takes a slot or a place in the queue at once, without waiting,
// and fails with a *FullError (or ctx's error) when it can do neither. The
// caller then does what must happen before the work and only for work
// that will run (gpusvc charges the credits), and either waits for the
// slot with Ticket.Wait or gives the place back with Ticket.Cancel. So a
// request the host refuses as full has changed nothing anywhere, and may
// be sent to another host as it is. MaxWait counts from Reserve.
func (l *Limiter) Reserve(ctx context.Context, c Claim) (*Ticket, error) {
	return l.reserve(ctx, c, true)
}

// reserve is Reserve, bounded or not (see acquire).
func (l *Limiter) reserve(ctx context.Context, c Claim, bounded bool) (*Ticket, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.free > 0 {
		l.free--
		return &Ticket{l: l}, nil
	}
	if bounded && l.bounded >= l.maxQueue {
		return nil, &FullError{RetryAfter: l.retryAfter(l.waiters.Len())}
	}
	t := &Ticket{l: l, w: l.enqueue(c, bounded)}
	if bounded && l.maxWait > 0 {
		t.deadline = time.Now().Add(l.maxWait)
	}
	return t, nil
}

// Ticket is a place Reserve took: a slot, or a place in the queue. Exactly
// one of Wait and Cancel must be called, once.
type Ticket struct {
	l *Limiter
	// w is the queue place; nil when Reserve found a free slot.
	w *waiter
	// deadline ends the wait in the queue (MaxWait); zero means none.
	deadline time.Time
	// done is set once Wait or Cancel ran.
	done bool
}

// Wait waits for the ticket's slot and returns its release function (see
// Acquire). It fails with ErrQueueTimeout when MaxWait has passed since
// Reserve, or with ctx's error when ctx ends first; the place is then
// given back.
func (t *Ticket) Wait(ctx context.Context) (release func(), err error) {
	l := t.l
	t.done = true
	if t.w == nil {
		if err := ctx.Err(); err != nil {
			t.giveBack()
			return nil, err
		}
		return l.started(ctx), nil
	}
	var timeout <-chan time.Time
	if !t.deadline.IsZero() {
		tm := time.NewTimer(time.Until(t.deadline))
		defer tm.Stop()
		timeout = tm.C
	}
	select {
	case <-t.w.ready:
		return l.started(ctx), nil
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	t.giveBack()
	return nil, err
}

// Cancel gives the ticket's slot or queue place back without running
// anything. It does nothing after Wait or an earlier Cancel.
func (t *Ticket) Cancel() {
	if t.done {
		return
	}
	t.done = true
	t.giveBack()
}

// giveBack passes the ticket's slot on (it had one from Reserve, or was
// handed one just as it gave up), or takes its waiter out of the queue.
func (t *Ticket) giveBack() {
	l := t.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if t.w == nil || !t.w.Queued() {
		l.handOff()
		return
	}
	l.remove(t.w)
}

// enqueue tags a waiter for c and puts it in the queue. l.mu is held.
func (l *Limiter) enqueue(c Claim, bounded bool) *waiter {
	w := &waiter{user: c.User, bounded: bounded, ready: make(chan struct{})}
	w.Tag = l.order.Next(c.User, max(c.Work, 1))
	l.waiters.Push(w)
	if bounded {
		l.bounded++
	}
	return w
}

// remove takes w, which gave up, out of the queue. l.mu is held.
func (l *Limiter) remove(w *waiter) {
	l.waiters.Remove(w)
	l.order.Withdraw(w.user, w.Tag)
	if w.bounded {
		l.bounded--
	}
}

// handOff gives a freed slot to the first waiter in the fair order, or
// counts it free when nobody waits. l.mu is held.
func (l *Limiter) handOff() {
	w, ok := l.waiters.Pop()
	if !ok {
		l.free++
		return
	}
	if w.bounded {
		l.bounded--
	}
	l.order.Served(w.Tag)
	close(w.ready)
}

// started counts a job that got its slot and returns its release function,
// which also calls the release notice of ctx (WithReleaseNotice), if any,
// once the slot is free.
func (l *Limiter) started(ctx context.Context) func() {
	l.inFlight.Add(1)
	start := time.Now()
	notice, _ := ctx.Value(noticeKey{}).(func())
	var once sync.Once
	return func() {
		once.Do(func() {
			l.observe(time.Since(start))
			l.inFlight.Add(-1)
			l.mu.Lock()
			l.handOff()
			l.mu.Unlock()
			if notice != nil {
				notice()
			}
		})
	}
}

type noticeKey struct{}

// WithReleaseNotice returns a context under which every slot acquired calls
// fn when it is released, just after the slot is free (on the goroutine
// that releases it). gpusvc's HTTP layer uses it to tell the proxy that a
// request no longer holds a slot before its answer is ready.
func WithReleaseNotice(ctx context.Context, fn func()) context.Context {
	return context.WithValue(ctx, noticeKey{}, fn)
}

// observe folds one hold time into the running mean (weight 1/8).
func (l *Limiter) observe(d time.Duration) {
	for {
		old := l.avgNanos.Load()
		next := int64(d)
		if old > 0 {
			next = old + (int64(d)-old)/8
		}
		if l.avgNanos.CompareAndSwap(old, next) {
			return
		}
	}
}

// retryAfter estimates how long until the queue has room: the mean job
// time × (queued jobs + 1) / slots, at least one second and at most a
// minute.
func (l *Limiter) retryAfter(q int) time.Duration {
	avg := time.Duration(l.avgNanos.Load())
	d := avg * time.Duration(q+1) / time.Duration(l.slots)
	return min(max(d.Round(time.Second), time.Second), time.Minute)
}

// waiter is one job in the queue.
type waiter struct {
	fairq.Entry
	user    string
	bounded bool
	// ready is closed when the waiter is handed a slot.
	ready chan struct{}
}
