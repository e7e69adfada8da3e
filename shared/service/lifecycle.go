package service

import (
	"context"
	"sync"
	"time"
)

// Lifecycle is the shape every service's App.Serve shares: serve until the
// context ends, with background work beside it, then drain and stop within
// one deadline. Each app fills in its own server and work; Lifecycle only
// orders them.
type Lifecycle struct {
	// Serve serves until its context ends, then shuts down and returns
	// (nil after a clean shutdown). Its context is Run's, without the
	// cancellation: it ends only after Draining ran, so requests keep
	// being served while the service drains.
	Serve func(ctx context.Context) error
	// Background run beside Serve on a context that ends once Serve has
	// returned; Run waits for them before it returns. Nil entries are not
	// allowed.
	Background []func(ctx context.Context)
	// Draining, if set, runs when Run's context ends, or when Serve
	// returned on its own (serving is then false), before Serve is told
	// to stop and before Stop. Its context is Run's, without the
	// cancellation; Draining bounds its own work.
	Draining func(ctx context.Context, serving bool)
	// Stop, if set, stops the service's other work beside Serve's
	// shutdown. Its context ends Timeout after Run's context ended (or
	// Serve returned), Draining included.
	Stop func(ctx context.Context)
	// Timeout bounds Stop (see Stop).
	Timeout time.Duration
}

// Run runs l until ctx ends and l has shut down, and returns Serve's error
// (nil after a clean shutdown).
func (l Lifecycle) Run(ctx context.Context) error {
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	var background sync.WaitGroup
	for _, fn := range l.Background {
		background.Go(func() { fn(bg) })
	}
	defer func() {
		stopBG()
		background.Wait()
	}()

	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	defer stopServe()
	errc := make(chan error, 1)
	go func() { errc <- l.Serve(serveCtx) }()

	var err error
	serving := true
	select {
	case err = <-errc: // the server failed (or stopped) on its own
		serving = false
	case <-ctx.Done():
	}
	deadline := time.Now().Add(l.Timeout)
	if l.Draining != nil {
		l.Draining(context.WithoutCancel(ctx), serving)
	}
	var stop sync.WaitGroup
	if l.Stop != nil {
		stop.Go(func() {
			sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
			defer cancel()
			l.Stop(sctx)
		})
	}
	if serving {
		stopServe()
		err = <-errc
	}
	stop.Wait()
	return err
}
