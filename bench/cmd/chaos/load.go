package main

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nounsai/sdserver/bench/internal/stack"
)

// maxCalls bounds the requests of one load worker, whatever its duration.
const maxCalls = 5000

// call is one finished request of a load worker, with the route it
// exercised.
type call struct {
	Route string
	// Worker is the index of the client that sent it.
	Worker int
	stack.Response
}

// worker is one client of a load: it returns the route name and the
// outcome of one request; i is the worker's index.
type worker func(ctx context.Context, i int) (string, stack.Response)

// load runs workers in loops until Stop. Stopping lets the requests in
// flight finish (they are measured, never cancelled).
type load struct {
	stopping atomic.Bool
	wg       sync.WaitGroup
	mu       sync.Mutex
	calls    []call
}

// startLoad starts n clients running w, each pausing pause between its
// requests, until Stop, at most maxCalls each.
func startLoad(ctx context.Context, n int, pause time.Duration, w worker) *load {
	l := &load{}
	for i := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for range maxCalls {
				if l.stopping.Load() || ctx.Err() != nil {
					return
				}
				route, r := w(ctx, i)
				l.mu.Lock()
				l.calls = append(l.calls, call{route, i, r})
				l.mu.Unlock()
				if pause > 0 {
					select {
					case <-ctx.Done():
						return
					case <-time.After(pause):
					}
				}
			}
		}()
	}
	return l
}

// Stop ends the loops, waits for the requests in flight and returns every
// call.
func (l *load) Stop() []call {
	l.stopping.Store(true)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
