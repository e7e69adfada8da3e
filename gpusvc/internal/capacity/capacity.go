// Package capacity bounds the GPU work one gpusvc process runs at once: a
// fixed number of slots (one per GPU) and a bounded FIFO wait queue in front
// of them. A job that finds the slots busy and the queue full is refused at
// once, so the proxy can send it elsewhere instead of piling requests onto a
// saturated host.
//
// This package must never know what a job does, and never sleep or spin:
// waiting is a blocked channel send that ctx cancels.
package capacity

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
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
	sem      chan struct{}

	mu     sync.Mutex
	queued int

	inFlight atomic.Int64
	// avgNanos is an exponentially weighted mean of slot hold times, used
	// to estimate Retry-After.
	avgNanos atomic.Int64
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
}

// New returns a Limiter.
func New(opts Options) *Limiter {
	slots := max(opts.Slots, 1)
	return &Limiter{
		slots:    slots,
		maxQueue: max(opts.Queue, 0),
		maxWait:  opts.MaxWait,
		sem:      make(chan struct{}, slots),
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
	return l.queued
}

// Acquire takes a slot, waiting in the queue when all are busy. It returns
// a release function that must be called exactly once when the job ends
// (later calls do nothing). It fails with a *FullError when the queue is
// full, ErrQueueTimeout after MaxWait, or ctx's error when ctx ends first.
// Waiters get slots in arrival order.
func (l *Limiter) Acquire(ctx context.Context) (release func(), err error) {
	return l.acquire(ctx, true)
}

// AcquireWait takes a slot like Acquire, but never refuses: it waits
// behind the other waiters however long the queue is and however long it
// takes, until ctx ends (it then returns ctx's error). It is for work that
// already waited its turn elsewhere (a job River handed to this host in
// its fair order), which must not lose that turn by failing and being
// retried later. Its waiters count in Queued, but not against Queue's
// bound.
func (l *Limiter) AcquireWait(ctx context.Context) (release func(), err error) {
	return l.acquire(ctx, false)
}

// acquire is Acquire when bounded (the queue's length and MaxWait apply)
// and AcquireWait when not.
func (l *Limiter) acquire(ctx context.Context, bounded bool) (release func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case l.sem <- struct{}{}:
		return l.started(ctx), nil
	default:
	}
	l.mu.Lock()
	if bounded && l.queued >= l.maxQueue {
		q := l.queued
		l.mu.Unlock()
		return nil, &FullError{RetryAfter: l.retryAfter(q)}
	}
	l.queued++
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.queued--
		l.mu.Unlock()
	}()

	var timeout <-chan time.Time
	if bounded && l.maxWait > 0 {
		t := time.NewTimer(l.maxWait)
		defer t.Stop()
		timeout = t.C
	}
	// A blocked send on a full buffered channel is woken in FIFO order by
	// the receive in release, so queued jobs are served first-come.
	select {
	case l.sem <- struct{}{}:
		return l.started(ctx), nil
	case <-timeout:
		return nil, ErrQueueTimeout
	case <-ctx.Done():
		return nil, ctx.Err()
	}
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
			<-l.sem
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
