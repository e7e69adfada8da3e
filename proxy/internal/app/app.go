// Package app wires the proxy together: the GPU host registry (api_hosts
// with LISTEN/NOTIFY), the account pool, the active health checker, the
// balancer, the edge guard and forwarding data path, and the echo admin
// routes; and it serves them until its context ends, draining in-flight
// requests. It is the only place (with cmd/proxy) that knows every
// dependency.
package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/admin"
	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/console"
	"github.com/nounsai/sdserver/proxy/internal/edge"
	"github.com/nounsai/sdserver/proxy/internal/forward"
	"github.com/nounsai/sdserver/proxy/internal/health"
	"github.com/nounsai/sdserver/proxy/internal/hosts"
	"github.com/nounsai/sdserver/shared/adminguard"
	"github.com/nounsai/sdserver/shared/apispec"
	"github.com/nounsai/sdserver/shared/logging"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/web"
)

// Deps are the connections the proxy uses; the caller opens and closes
// them (Open opens them for cmd/proxy).
type Deps struct {
	// DB holds api_hosts. Required.
	DB *pgxpool.Pool
	// Redis counts the rate limits; nil turns them off.
	Redis *redis.Client
	// Registry receives the metrics; nil makes one. Serve serves it on
	// its metrics listener, never on the public one.
	Registry *prometheus.Registry
	// AccessLog receives the data path's access log (one line per upstream
	// attempt); nil means the proxy's logger. A logger writing through a
	// buffer (zapcore.BufferedWriteSyncer, stopped by the caller) saves a
	// write system call per request.
	AccessLog *zap.Logger
}

// App is a configured proxy, ready to Run.
type App struct {
	cfg       Config
	log       *zap.Logger
	registry  *hosts.Registry
	checker   *health.Checker
	transport *http.Transport
	handler   http.Handler
	echo      *echo.Echo // the proxy's own routes (handler sends the rest upstream)
	gpu       *balancer.Pool
	account   *balancer.Pool
	admission *admission.Controller
	reg       *prometheus.Registry
	// close releases what Open opened; nil after New.
	close func()
}

// Open opens the proxy's connections (service.Open: the database, Redis,
// the metrics registry) and a buffered access log, and builds the proxy on
// them with New. Close releases them.
func Open(ctx context.Context, cfg Config, log *zap.Logger) (*App, error) {
	conns, err := service.Open(ctx, cfg.Common)
	if err != nil {
		return nil, err
	}
	// The access log (a line per forwarded request) is buffered so a slow
	// log reader never stalls the data path; flushed by Close.
	accessLog, stopAccessLog, err := logging.NewBuffered(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		conns.Close()
		return nil, err
	}
	a, err := New(cfg, log, Deps{DB: conns.DB, Redis: conns.Redis, Registry: conns.Registry,
		AccessLog: accessLog.With(zap.String("service", "proxy"))})
	if err != nil {
		stopAccessLog()
		conns.Close()
		return nil, err
	}
	a.close = func() {
		stopAccessLog()
		conns.Close()
	}
	return a, nil
}

// forwardAdmission is the admission controller the data path asks, nil
// with ADMISSION_POLICY=off.
func forwardAdmission(cfg Config, c *admission.Controller) *admission.Controller {
	if cfg.AdmissionPolicy == AdmissionOff {
		return nil
	}
	return c
}

// Close flushes the access log and closes the connections Open opened;
// after New it does nothing (the caller owns Deps).
func (a *App) Close() {
	if a.close != nil {
		a.close()
	}
}

// New builds the proxy on deps. It starts nothing; Serve does.
func New(cfg Config, log *zap.Logger, deps Deps) (*App, error) {
	if deps.DB == nil {
		return nil, errors.New("proxy: no database pool")
	}
	gpuSel, err := balancer.New(cfg.Policy)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	reg := deps.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	gpu := &balancer.Pool{}
	var accountUps []*balancer.Upstream
	for _, a := range cfg.AccountURLs {
		u, err := hosts.ParseAddress(a)
		if err != nil {
			return nil, fmt.Errorf("proxy: ACCOUNTSVC_URLS %q: %w", a, err)
		}
		accountUps = append(accountUps, balancer.NewUpstream(0, a, u))
	}
	account := balancer.NewPool(accountUps)

	accessLog := deps.AccessLog
	if accessLog == nil {
		accessLog = log
	}
	// Every Redis use fails open (docs/operations.md, "Failure modes"),
	// counted in redis_fail_open_total and logged at most every 10 s.
	failOpen := rdb.NewFailOpen(reg, log)
	admissionDeps := admission.Deps{Pool: gpu, Registry: reg, OnRedisError: failOpen.Func("admission")}
	if deps.Redis != nil {
		admissionDeps.Redis = deps.Redis
	}
	policy := cfg.AdmissionPolicy
	if policy == AdmissionOff {
		policy = "" // a controller that is never asked (its snapshot stays empty)
	}
	admit, err := admission.New(admission.Config{
		Policy: policy, QueueMax: cfg.AdmissionQueueMax, MaxWait: cfg.AdmissionMaxWait,
		UserShare: cfg.AdmissionUserShare, SyncInterval: cfg.AdmissionSyncInterval,
		TrustedProxies: cfg.TrustedProxies, JWTSecrets: cfg.JWTSecrets, RedisPrefix: cfg.RedisPrefix,
	}, admissionDeps)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	transport := forward.NewTransport()
	fwd := forward.New(forward.Config{
		GPUTimeout:      cfg.GPUTimeout,
		UpstreamTimeout: cfg.UpstreamTimeout,
		StreamTimeout:   cfg.StreamTimeout,
		BodyLimit:       cfg.BodyLimit,
		RetryAfter:      cfg.HealthInterval,
		TrustedProxies:  cfg.TrustedProxies,
		Admission:       forwardAdmission(cfg, admit),
		AccessLog:       accessLog.Named("forward"),
	}, forward.Pools{
		GPU: gpu, GPUSelector: gpuSel,
		Account: account, AccountSelector: &balancer.LeastConn{},
	}, transport, forward.NewMetrics(reg, gpu, account), log.Named("forward"))

	var limiter *ratelimit.Limiter
	if deps.Redis != nil && cfg.RateLimits {
		limiter = ratelimit.New(deps.Redis, cfg.RedisPrefix+"ratelimit:", ratelimit.Options{OnError: failOpen.Func("ratelimit")})
	} else {
		log.Warn("proxy rate limits are off", zap.Bool("redis", deps.Redis != nil), zap.Bool("rate_limits", cfg.RateLimits))
	}
	edgeCfg := edge.Config{
		ChallengeTokens: cfg.ChallengeTokens,
		ChallengeExempt: cfg.ChallengeExempt,
		RateLimitIP:     cfg.RateLimitIP,
		RateLimitGlobal: cfg.RateLimitGlobal,
		TrustedProxies:  cfg.TrustedProxies,
	}
	guard := edge.NewGuard(edgeCfg, limiter, fwd, log.Named("edge"))

	registry := hosts.NewRegistry(deps.DB, gpu, log.Named("hosts"))
	e := web.New(web.Options{
		Service:   "proxy",
		Log:       log,
		Registry:  reg,
		BodyLimit: cfg.BodyLimit,
		// The console's audit lines and the access log name the client
		// by the trusted-proxy rule of the rate limits.
		TrustedProxies: cfg.TrustedProxies,
		SkipAccessLog:  func(r *http.Request) bool { return r.URL.Path == "/health" || r.URL.Path == "/metrics" },
	})
	// Every /admin route: per-IP limits (kept in production even with
	// RATE_LIMITS=off) and one audit line per request.
	var adminLimiter *ratelimit.Limiter
	if deps.Redis != nil && adminguard.Enforced(cfg.Environment, cfg.RateLimits) {
		adminLimiter = ratelimit.New(deps.Redis, cfg.RedisPrefix+"ratelimit:", ratelimit.Options{
			OnError: failOpen.Func("admin_ratelimit"),
		})
	}
	adminGuard := adminguard.New(adminguard.Options{
		Token: cfg.AdminToken, Limiter: adminLimiter, TrustedProxies: cfg.TrustedProxies, Log: log.Named("admin"),
	})
	(&admin.Handler{
		GPU: gpu, Account: account, Policy: cfg.Policy, Hosts: registry, Admin: adminGuard.Token(),
		Queue: admit.Snapshot,
	}).Routes(e)
	// Ops console at /admin (wiring owned by the console package's author).
	cons, err := console.New(console.Options{
		AdminToken: cfg.AdminToken, Guard: adminGuard, GPU: gpu, Account: account, Policy: cfg.Policy,
		Store: console.NewStore(deps.DB), Hosts: registry, Log: log.Named("console"), Queue: admit.Snapshot,
	})
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	cons.Routes(e)
	spec, err := apispec.Load()
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	spec.Register(e)
	// /refresh_hosts keeps the legacy challenge-token check and goes
	// through the rate limits like any public route.
	refresh := edge.NewGuard(edgeCfg, limiter, e, log.Named("edge"))

	a := &App{
		cfg:       cfg,
		log:       log,
		registry:  registry,
		transport: transport,
		gpu:       gpu,
		account:   account,
		admission: admit,
		reg:       reg,
		checker: health.NewChecker(health.Config{
			Interval: cfg.HealthInterval, Timeout: cfg.HealthTimeout,
			Rise: cfg.HealthRise, Fall: cfg.HealthFall,
		}, &http.Client{Transport: transport}, log.Named("health"), gpu, account),
	}
	a.echo = e
	a.handler = route(e, refresh, guard)
	return a, nil
}

// route sends the proxy's own paths to echo and everything else to the
// data path. /metrics goes to echo too, which has no such route (404):
// the metrics are on the internal listener only (Serve's metrics listener), and the
// path is never forwarded upstream.
func route(e *echo.Echo, refresh, data http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if console.Serves(r.URL.Path) { // ops console
			e.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/health", "/metrics", "/admin/hosts", "/openapi.json", "/openapi.yaml", "/docs",
			"/docs/" + apispec.RedocAsset: // the API description and its page need no challenge token
			e.ServeHTTP(w, r)
		case "/refresh_hosts":
			refresh.ServeHTTP(w, r)
		default:
			data.ServeHTTP(w, r)
		}
	})
}

// Handler returns the proxy's HTTP handler (for tests).
func (a *App) Handler() http.Handler { return a.handler }

// Pools returns the GPU and account pools (for tests and tools).
func (a *App) Pools() (gpu, account *balancer.Pool) { return a.gpu, a.account }

// Serve loads api_hosts, then serves on ln (and the metrics on metrics;
// nil: nowhere, the public listener never serves them) until ctx ends; it
// then stops
// accepting, drains in-flight requests for at most ShutdownTimeout, and
// stops the host listener and health checker. It returns nil after a clean
// shutdown.
func (a *App) Serve(ctx context.Context, ln, metrics net.Listener) error {
	loadCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	ups, err := a.registry.Reload(loadCtx)
	cancel()
	if err != nil {
		return fmt.Errorf("proxy: initial host load: %w", err)
	}
	a.log.Info("gpu hosts loaded", zap.Int("hosts", len(ups)), zap.String("policy", a.cfg.Policy))

	// Background work outlives ctx until the drain is over, so that host
	// changes and health keep applying to the requests being drained.
	bg := []func(context.Context){
		func(ctx context.Context) { _ = a.registry.Run(ctx, a.cfg.HostsReloadInterval) },
		func(ctx context.Context) { _ = a.checker.Run(ctx) },
	}
	if a.cfg.AdmissionPolicy != AdmissionOff {
		bg = append(bg, func(ctx context.Context) { _ = a.admission.Run(ctx) })
	}
	defer a.transport.CloseIdleConnections()

	srv := web.NewServer(a.handler)
	srv.ErrorLog = zap.NewStdLog(a.log.Named("http"))
	return service.Lifecycle{
		Serve: func(ctx context.Context) error {
			return web.ServeWithMetrics(ctx, srv, edge.LimitListener(ln, a.cfg.MaxConns), metrics, a.reg, a.log, a.cfg.ShutdownTimeout)
		},
		Background: bg,
		Timeout:    a.cfg.ShutdownTimeout,
	}.Run(ctx)
}
