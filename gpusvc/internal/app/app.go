// Package app wires gpusvc together: it opens the database and Redis,
// builds the inference backends, the model registry, the capacity limiter,
// the generation pipeline and the HTTP routes, and serves HTTP until its
// context ends. It is the only place (with cmd/gpusvc) that knows every
// dependency.
//
// End-to-end tests run gpusvc in-process: New with a literal Config, then
// Serve on a listener from net.Listen("tcp", "127.0.0.1:0") (or Handler with
// httptest).
package app

import (
	"context"
	"net/http"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/web"
)

// App is a running gpusvc.
type App struct {
	cfg      Config
	log      *zap.Logger
	capacity *capacity.Limiter
	// srv is the database pool, Redis, the metrics registry and the
	// router.
	srv    *service.Web
	jobs   *worker.Runner
	ledger *credits.Ledger
}

// New opens the dependencies and builds the HTTP handler. Close releases
// them. Zero Limits mean generate.DefaultLimits and an empty default backend
// means nouns, so tests may pass short literal configs.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*App, error) {
	if cfg.Limits == (generate.Limits{}) {
		cfg.Limits = generate.DefaultLimits
	}
	if cfg.Inference.Default == "" {
		cfg.Inference.Default = nouns.Name
	}
	// No CORS: gpusvc is reached only through the proxy, which owns it.
	srv, err := service.OpenWeb(ctx, cfg.Common, "gpusvc", log, false)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, srv: srv}
	// gpusvc keeps /metrics on its own listener: it sits on the private
	// network, reached only by the proxy (which never forwards /metrics)
	// and Prometheus (docs/security.md, "What listens where").
	a.srv.Echo.GET(web.MetricsPath, web.MetricsHandler(a.srv.Registry))
	if err := a.routes(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// Handler returns the HTTP handler (for tests).
func (a *App) Handler() http.Handler { return a.srv.Handler() }

// Capacity returns the host's slot limiter (for tests and benchmarks).
func (a *App) Capacity() *capacity.Limiter { return a.capacity }

// Close releases Redis and the database pool.
func (a *App) Close() {
	a.srv.Close()
}
