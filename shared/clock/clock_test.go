package clock_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/clock"
)

func TestSleep(t *testing.T) {
	t.Parallel()
	cancelled := func() context.Context {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		return ctx
	}
	for _, tc := range []struct {
		name    string
		ctx     func() context.Context
		cancel  time.Duration // cancel the context after this long, if > 0
		d       time.Duration
		wantErr error
		atLeast time.Duration
		atMost  time.Duration
	}{
		{name: "completes", ctx: context.Background, d: 20 * time.Millisecond, atLeast: 20 * time.Millisecond, atMost: 5 * time.Second},
		{name: "cancelled returns quickly", ctx: context.Background, cancel: 10 * time.Millisecond, d: time.Hour, wantErr: context.Canceled, atMost: 5 * time.Second},
		{name: "already cancelled", ctx: cancelled, d: time.Hour, wantErr: context.Canceled, atMost: time.Second},
		{name: "zero does not wait", ctx: context.Background, d: 0, atMost: time.Second},
		{name: "negative on ended context", ctx: cancelled, d: -time.Second, wantErr: context.Canceled, atMost: time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(tc.ctx())
			defer cancel()
			if tc.cancel > 0 {
				time.AfterFunc(tc.cancel, cancel)
			}
			start := time.Now()
			err := clock.Sleep(ctx, tc.d)
			took := time.Since(start)
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.True(t, errors.Is(err, tc.wantErr), "err %v", err)
			}
			require.GreaterOrEqual(t, took, tc.atLeast)
			require.Less(t, took, tc.atMost)
		})
	}
}

func TestEvery(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		d         time.Duration
		wantCalls int64
	}{
		{name: "calls repeatedly", d: 5 * time.Millisecond, wantCalls: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var calls atomic.Int64
			done := make(chan struct{})
			go func() {
				defer close(done)
				clock.Every(ctx, tc.d, func(context.Context) {
					if calls.Add(1) == tc.wantCalls {
						cancel()
					}
				})
			}()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Every did not return after cancel")
			}
			require.Equal(t, tc.wantCalls, calls.Load(), "no call after the context ended")
			time.Sleep(5 * tc.d)
			require.Equal(t, tc.wantCalls, calls.Load(), "no call after Every returned")
		})
	}
}
