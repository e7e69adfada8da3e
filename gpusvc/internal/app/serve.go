package app

import (
	"context"
	"errors"
	"net"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apihost"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/web"
)

// drainGrace is how long a draining host keeps serving after it marked
// itself draining in api_hosts: the proxy applies the change within a
// second, so no new request is refused by a closed listener.
const drainGrace = 1500 * time.Millisecond

// Serve serves HTTP on ln and works the job queue until ctx ends, then
// shuts down within one ShutdownTimeout: with REGISTER_HOST it first marks
// PUBLIC_URL draining in api_hosts (it was added, or un-drained, at start)
// and keeps serving briefly so the proxy sends nothing new; then the HTTP
// drain and the workers' soft stop run side by side against the same
// deadline. gpusvc serves /metrics on ln itself (its port is private), so
// it has no metrics listener: metrics must be nil.
func (a *App) Serve(ctx context.Context, ln, metrics net.Listener) error {
	if metrics != nil {
		return errors.New("gpusvc: serves /metrics on its own listener; no metrics listener expected")
	}
	var reg *apihost.Registrar
	if a.cfg.RegisterHost {
		reg = apihost.NewRegistrar(a.srv.DB, a.cfg.PublicURL)
		if err := reg.Register(ctx); err != nil {
			_ = ln.Close()
			return err
		}
		a.log.Info("registered in api_hosts", zap.String("address", a.cfg.PublicURL))
	}
	if a.jobs != nil {
		if err := a.jobs.Start(ctx); err != nil {
			_ = ln.Close()
			return err
		}
	}
	drain := a.cfg.ShutdownTimeout
	if reg != nil {
		drain = max(drain-drainGrace, time.Second)
	}
	l := service.Lifecycle{
		Serve: func(ctx context.Context) error { return web.Serve(ctx, web.NewServer(a.srv.Echo), ln, a.log, drain) },
		// Every live gpusvc sweeps the charge holds of dead ones (and its
		// own, after a restart); concurrent sweeps are safe.
		Background: []func(context.Context){func(ctx context.Context) {
			a.ledger.RunSweeper(ctx, a.cfg.Charging.SweepInterval, a.reportSweep)
		}},
		Timeout: a.cfg.ShutdownTimeout,
	}
	if reg != nil {
		l.Draining = func(ctx context.Context, serving bool) { a.drain(ctx, reg, serving) }
	}
	if a.jobs != nil {
		l.Stop = func(ctx context.Context) {
			if err := a.jobs.Stop(ctx); err != nil {
				a.log.Warn("stopping job workers failed", zap.Error(err))
			}
		}
	}
	return l.Run(ctx)
}

// drain marks this host draining in api_hosts and, while it still serves,
// keeps serving drainGrace so the proxy sends nothing new before the
// listener closes.
func (a *App) drain(ctx context.Context, reg *apihost.Registrar, serving bool) {
	dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := reg.Drain(dctx); err != nil {
		a.log.Warn("mark draining in api_hosts failed", zap.Error(err))
		return
	}
	a.log.Info("marked draining in api_hosts", zap.String("address", a.cfg.PublicURL))
	if serving {
		time.Sleep(drainGrace)
	}
}

// reportSweep logs what a sweep of expired charge holds did.
func (a *App) reportSweep(res credits.SweepResult, err error) {
	for _, r := range res.Refunded {
		a.log.Warn("refunded an abandoned charge hold", zap.Int64("debit_id", r.DebitID),
			zap.Int64("user_id", r.UserID), zap.Int64("credits", r.Amount))
	}
	if err != nil {
		a.log.Warn("sweeping charge holds failed", zap.Error(err))
	}
}
