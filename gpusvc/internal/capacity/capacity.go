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
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.free > 0 {
		l.free--
		l.mu.Unlock()
		return l.started(ctx), nil
	}
	if bounded && l.bounded >= l.maxQueue {
		q := l.waiters.Len()
		l.mu.Unlock()
		return nil, &FullError{RetryAfter: l.retryAfter(q)}
	}
	w := l.enqueue(c, bounded)
	l.mu.Unlock()

	var timeout <-chan time.Time
	if bounded && l.maxWait > 0 {
		t := time.NewTimer(l.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-w.ready:
		return l.started(ctx), nil
	case <-timeout:
		err = ErrQueueTimeout
	case <-ctx.Done():
		err = ctx.Err()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !w.Queued() {
		// Handed a slot just as the wait ended: pass it on.
		l.handOff()
		return nil, err
	}
	l.remove(w)
	return nil, err
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
