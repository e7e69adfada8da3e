package service_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/service"
)

// events records what a Lifecycle's parts saw, in order.
type events struct {
	mu  sync.Mutex
	got []string
}

func (e *events) add(s string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.got = append(e.got, s)
}

func (e *events) list() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.got...)
}

func TestLifecycleRun(t *testing.T) {
	t.Parallel()
	errServe := errors.New("listener broke")
	for _, tc := range []struct {
		name string
		// serveFails makes Serve return errServe on its own, before ctx
		// ends.
		serveFails bool
		wantErr    error
		want       []string
	}{
		{
			name: "context ends: drain, then stop beside the shutdown, then background",
			want: []string{"serving", "background", "draining serving=true", "stop", "serve done", "background done"},
		},
		{
			name:       "serve fails: drain and stop still run, its error is returned",
			serveFails: true,
			wantErr:    errServe,
			want:       []string{"serving", "background", "serve failed", "draining serving=false", "stop", "background done"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var ev events
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			bgStarted, stopped := make(chan struct{}), make(chan struct{})
			var stopDeadline time.Duration
			l := service.Lifecycle{
				Serve: func(ctx context.Context) error {
					<-bgStarted
					ev.add("serving")
					if tc.serveFails {
						ev.add("serve failed")
						return errServe
					}
					<-ctx.Done()
					// Stop runs beside the shutdown, not after it: wait
					// for it, which also fixes the order.
					<-stopped
					ev.add("serve done")
					return nil
				},
				Background: []func(context.Context){func(ctx context.Context) {
					ev.add("background")
					close(bgStarted)
					<-ctx.Done()
					ev.add("background done")
				}},
				Draining: func(ctx context.Context, serving bool) {
					require.NoError(t, ctx.Err(), "draining runs on a live context")
					if serving {
						ev.add("draining serving=true")
					} else {
						ev.add("draining serving=false")
					}
				},
				Stop: func(ctx context.Context) {
					dl, ok := ctx.Deadline()
					require.True(t, ok, "stop has a deadline")
					stopDeadline = time.Until(dl)
					ev.add("stop")
					close(stopped)
				},
				Timeout: time.Minute,
			}
			done := make(chan error, 1)
			go func() { done <- l.Run(ctx) }()
			if !tc.serveFails {
				require.Eventually(t, func() bool { return len(ev.list()) >= 2 }, 5*time.Second, time.Millisecond)
				cancel()
			}
			select {
			case err := <-done:
				require.ErrorIs(t, err, tc.wantErr)
				if tc.wantErr == nil {
					require.NoError(t, err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return")
			}
			got := ev.list()
			// Serving and background start concurrently; compare as
			// recorded from "draining" on.
			require.ElementsMatch(t, tc.want[:2], got[:2])
			require.Equal(t, tc.want[2:], got[2:])
			require.Greater(t, stopDeadline, 50*time.Second, "stop's deadline is Timeout away")
		})
	}
}
