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
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/httpapi"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/paced"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/replicate"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/apihost"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/web"
)

// App is a running gpusvc.
type App struct {
	cfg Config
	log *zap.Logger
	// conns are the database pool, Redis and the metrics registry.
	conns    service.Conns
	echo     *echo.Echo
	capacity *capacity.Limiter
	jobs     *worker.Runner
	ledger   *credits.Ledger
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
	conns, err := service.Open(ctx, cfg.Common)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: log, conns: conns}
	a.echo = web.New(web.Options{Service: "gpusvc", Log: log, Registry: a.conns.Registry, BodyLimit: cfg.BodyLimit,
		TrustedProxies: cfg.TrustedProxies})
	// gpusvc keeps /metrics on its own listener: it sits on the private
	// network, reached only by the proxy (which never forwards /metrics)
	// and Prometheus (docs/security.md, "What listens where").
	a.echo.GET(web.MetricsPath, web.MetricsHandler(a.conns.Registry))
	if err := a.routes(); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// backends builds every backend this host can run: the built-in nouns one
// always, a1111 when A1111_URL is set, replicate when a token or URL is.
func (a *App) backends() (map[string]inference.Backend, error) {
	ic := a.cfg.Inference
	nb, err := nouns.New(nouns.Options{FFmpegPath: ic.FFmpegPath})
	if err != nil {
		return nil, err
	}
	out := map[string]inference.Backend{nouns.Name: nb}
	if ic.A1111URL != "" {
		out[a1111.Name] = a1111.New(a1111.Config{BaseURL: ic.A1111URL, Timeout: ic.A1111Timeout, Log: a.log})
	}
	if ic.ReplicateToken != "" || ic.ReplicateURL != "" {
		out[replicate.Name] = replicate.New(replicate.Config{BaseURL: ic.ReplicateURL, Token: ic.ReplicateToken, Log: a.log})
	}
	if p := a.cfg.GPU.Pacing; p.BaseSeconds > 0 {
		// The paced fake backend (benchmarks, fault drills): each keeps
		// its name, so models and metrics are unchanged.
		p.ImageUnits, p.RouteUnits = generate.WorkUnits, generate.RouteUnits
		for name, b := range out {
			out[name] = paced.New(b, p)
		}
		a.log.Warn("GPU pacing is ON: the paced fake backend wraps every backend (GPU_BASE_SECONDS)",
			zap.Float64("base_seconds", p.BaseSeconds), zap.Float64("speed", p.Speed), zap.Float64("slowdown", p.Slowdown))
	}
	return out, nil
}

// routes builds the pipeline and registers every route.
func (a *App) routes() error {
	backends, err := a.backends()
	if err != nil {
		return err
	}
	defModels := map[string]string{a.cfg.Inference.Default: a.cfg.Inference.DefaultModel}
	registry, err := models.NewRegistry(models.NewStore(a.conns.DB), backends, a.cfg.Inference.Default, defModels)
	if err != nil {
		return err
	}
	store, err := storage.New(a.cfg.Storage)
	if err != nil {
		return err
	}
	// The slot queue is fair across users unless JOB_FAIRNESS=fifo: the
	// host queues sync requests and async jobs together.
	a.capacity = capacity.New(capacity.Options{Slots: a.cfg.GPU.Slots, Queue: a.cfg.GPU.Queue, MaxWait: a.cfg.GPU.QueueWait,
		Fair: a.cfg.Worker.Jobs.Fairness != jobs.FairnessFIFO})
	// One ledger charges both the synchronous routes and the jobs.
	ledger := credits.NewLedger(a.conns.DB, a.cfg.Credits.Options(nil))
	a.ledger = ledger
	holdOwner := a.cfg.PublicURL
	if holdOwner == "" {
		holdOwner = a.cfg.HTTPAddr
	}
	gen := generate.New(generate.Options{
		Registry:  registry,
		Capacity:  a.capacity,
		Charger:   ledger,
		Images:    library.NewImages(a.conns.DB, store, a.log),
		Parents:   generate.NewParents(a.conns.DB),
		Limits:    a.cfg.Limits,
		Timeout:   a.cfg.GPU.JobTimeout,
		HoldFor:   a.cfg.HoldFor(),
		HoldOwner: holdOwner,
		Metrics:   generate.NewMetrics(a.conns.Registry, a.capacity),
		Log:       a.log,
	})
	if err := a.newJobRunner(backends, store, gen, ledger); err != nil {
		return err
	}
	revocations := auth.NewRevocations(a.conns.DB, a.conns.Redis, a.cfg.RedisPrefix, a.cfg.LegacyTokenCutoff)
	// Every Redis use fails open (docs/operations.md, "Failure modes"),
	// counted in redis_fail_open_total and logged at most every 10 s.
	failOpen := rdb.NewFailOpen(a.conns.Registry, a.log)
	revocations.OnError = failOpen.Func("deny_list")
	limiter := ratelimit.New(a.conns.Redis, a.cfg.RedisPrefix+"ratelimit:", ratelimit.Options{
		Disabled: !a.cfg.RateLimits,
		OnError:  failOpen.Func("ratelimit"),
	})
	if !a.cfg.RateLimits {
		a.log.Warn("rate limits are OFF (RATE_LIMITS=off)")
	}
	httpapi.Register(a.echo, httpapi.Options{
		Generate:         gen,
		Registry:         registry,
		Capacity:         a.capacity,
		Verifier:         &auth.Verifier{Secrets: a.cfg.JWTSecrets, Revocation: revocations},
		Limiter:          limiter,
		ChallengeTokens:  a.cfg.ChallengeTokens,
		AnonymousUserID:  a.cfg.AnonymousUserID,
		AnonymousEnabled: a.cfg.AnonymousEnabled,
		TrustedProxies:   a.cfg.TrustedProxies,
		Ping:             a.ping,
		RedisStatus:      a.redisStatus,
		Jobs:             a.jobs,
		Log:              a.log,
	})
	a.log.Info("inference ready",
		zap.String("default_backend", a.cfg.Inference.Default),
		zap.Strings("backends", registry.Backends()),
		zap.Int("slots", a.cfg.GPU.Slots),
		zap.Int("queue", a.cfg.GPU.Queue))
	return nil
}

// ping checks the database, the one dependency /health requires. Redis is
// not one: without it every use fails open (docs/operations.md, "Failure
// modes"), so the proxy must not eject this host for it; redisStatus
// reports it in the body.
func (a *App) ping(ctx context.Context) error {
	if err := a.conns.DB.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
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

// redisStatus is rdb.Status of this host's Redis, for /health.
func (a *App) redisStatus(ctx context.Context) string { return rdb.Status(ctx, a.conns.Redis) }

// Handler returns the HTTP handler (for tests).
func (a *App) Handler() http.Handler { return a.echo }

// Capacity returns the host's slot limiter (for tests and benchmarks).
func (a *App) Capacity() *capacity.Limiter { return a.capacity }

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
		reg = apihost.NewRegistrar(a.conns.DB, a.cfg.PublicURL)
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
	httpCtx, stopHTTP := context.WithCancel(context.WithoutCancel(ctx))
	defer stopHTTP()
	// Every live gpusvc sweeps the charge holds of dead ones (and its
	// own, after a restart); concurrent sweeps are safe.
	sweepCtx, stopSweep := context.WithCancel(context.WithoutCancel(ctx))
	var sweeper sync.WaitGroup
	sweeper.Go(func() { a.ledger.RunSweeper(sweepCtx, a.cfg.Charging.SweepInterval, a.reportSweep) })
	defer func() {
		stopSweep()
		sweeper.Wait()
	}()
	drain := a.cfg.ShutdownTimeout
	if reg != nil {
		drain = max(drain-drainGrace, time.Second)
	}
	errc := make(chan error, 1)
	go func() { errc <- web.Serve(httpCtx, web.NewServer(a.echo), ln, a.log, drain) }()

	var serveErr error
	select {
	case serveErr = <-errc: // the server failed on its own
	case <-ctx.Done():
	}
	deadline := time.Now().Add(a.cfg.ShutdownTimeout)
	if reg != nil {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		if err := reg.Drain(dctx); err != nil {
			a.log.Warn("mark draining in api_hosts failed", zap.Error(err))
		} else {
			a.log.Info("marked draining in api_hosts", zap.String("address", a.cfg.PublicURL))
			if serveErr == nil {
				time.Sleep(drainGrace)
			}
		}
		cancel()
	}
	var wg sync.WaitGroup
	if a.jobs != nil {
		wg.Go(func() {
			sctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
			defer cancel()
			if err := a.jobs.Stop(sctx); err != nil {
				a.log.Warn("stopping job workers failed", zap.Error(err))
			}
		})
	}
	if serveErr == nil {
		stopHTTP()
		serveErr = <-errc
	}
	wg.Wait()
	return serveErr
}

// Close releases Redis and the database pool.
func (a *App) Close() {
	a.conns.Close()
}
