// Package clock holds the context-aware waits the services share: a sleep
// that ends early when its context ends (Sleep) and a loop that calls a
// function at a fixed interval until its context ends (Every).
//
// This package only waits: it never decides what to do after a wait, how
// long to back off, or whether to retry; callers keep those choices.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends. It returns ctx.Err() if ctx ended
// first (or had already ended when d <= 0), nil otherwise. A d <= 0 does
// not wait at all.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Every calls fn(ctx) every d, the first call d after the start, until ctx
// ends; it returns when ctx ends. Calls never overlap: a call that takes
// longer than d delays the next one (time.Ticker drops the missed ticks).
// No call starts once ctx has ended, even when a tick is ready at the same
// time. d must be positive.
func Every(ctx context.Context, d time.Duration, fn func(ctx context.Context)) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if ctx.Err() != nil {
				return
			}
			fn(ctx)
		}
	}
}
