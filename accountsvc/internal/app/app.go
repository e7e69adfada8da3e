// Package app wires accountsvc together: it opens the database and Redis,
// builds the stores and handlers, and serves HTTP until its context ends.
// It is the only place (with cmd/accountsvc) that knows every dependency.
package app

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/account"
	"github.com/nounsai/sdserver/accountsvc/internal/accountapi"
	"github.com/nounsai/sdserver/accountsvc/internal/creditapi"
	"github.com/nounsai/sdserver/accountsvc/internal/libraryapi"
	"github.com/nounsai/sdserver/accountsvc/internal/pages"
	"github.com/nounsai/sdserver/shared/adminguard"
	"github.com/nounsai/sdserver/shared/apispec"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/service"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/web"
)

// App is a running accountsvc.
type App struct {
	// srv is the database pool, Redis, the metrics registry and the
	// router.
	srv *service.Web
	cfg Config
	log *zap.Logger

	library *libraryapi.API
	// jobs is the durable-job store (the library area enqueues into it,
	// the job routes read it); events carries its progress events.
	jobs   *jobs.Store
	events *jobs.Events
	// ledger is the credits ledger (grants at signup and for rewards go
	// through it too).
	ledger *credits.Ledger
	// mailer works the account email queue; stopped first in Close.
	mailer *account.Mailer

	// One limiter, one token verifier and its revocation store serve
	// every area, so the legacy-token cutoff and the deny-list apply to
	// every route alike.
	limiter     *ratelimit.Limiter
	failOpen    *rdb.FailOpen
	revocations *auth.Revocations
	verifier    *auth.Verifier

	stopOnce sync.Once
}

// New opens the dependencies and builds the HTTP handler. Close releases
// them.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*App, error) {
	// CORS here: the frontend calls api-cpu directly.
	srv, err := service.OpenWeb(ctx, cfg.Common, "accountsvc", log, true)
	if err != nil {
		return nil, err
	}
	a := &App{srv: srv, cfg: cfg, log: log}
	a.srv.Echo.GET("/health", a.handleHealth)
	// Every Redis use fails open (docs/operations.md, "Failure modes"),
	// counted in redis_fail_open_total and logged at most every 10 s.
	a.failOpen = rdb.NewFailOpen(a.srv.Registry, log)
	a.limiter = ratelimit.New(a.srv.Redis, a.cfg.RedisPrefix+"ratelimit:", ratelimit.Options{
		Disabled: !a.cfg.RateLimits,
		OnError:  a.failOpen.Func("ratelimit"),
	})
	a.revocations = auth.NewRevocations(a.srv.DB, a.srv.Redis, a.cfg.RedisPrefix, cfg.LegacyTokenCutoff)
	a.revocations.OnError = a.failOpen.Func("deny_list")
	a.verifier = &auth.Verifier{Secrets: a.cfg.JWTSecrets, Revocation: a.revocations}
	a.ledger = credits.NewLedger(a.srv.DB, a.cfg.Credits.Options(nil))
	if err := a.newJobs(); err != nil {
		a.Close()
		return nil, err
	}
	if err := a.routes(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// routes registers every area's routes. Each area adds one call here; the
// order does not matter (every dependency is built before, in New).
func (a *App) routes(ctx context.Context) error {
	a.routesJobs()
	if err := a.routesLibrary(); err != nil {
		return err
	}
	a.routesCredits()
	pages.New(a.cfg.ChallengeTokens[0]).Register(a.srv.Echo)
	spec, err := apispec.Load()
	if err != nil {
		return err
	}
	spec.Register(a.srv.Echo)
	return a.routesAccounts(ctx)
}

// routesLibrary registers the library area (images, audio, links, videos,
// video projects) and, for the local storage backend, GET /media/* serving
// its files so that object URLs work in the local stack.
func (a *App) routesLibrary() error {
	st, err := storage.New(a.cfg.Storage)
	if err != nil {
		return err
	}
	if local, ok := st.(*storage.Local); ok {
		h := echo.WrapHandler(http.StripPrefix("/media", local))
		a.srv.Echo.GET("/media/*", h)
		a.srv.Echo.HEAD("/media/*", h)
	}
	side := a.cfg.Library.ImageMaxSide
	a.library = libraryapi.New(libraryapi.Options{
		Pool:            a.srv.DB,
		Storage:         st,
		Images:          library.NewImages(a.srv.DB, st, a.log),
		Verifier:        a.verifier,
		ChallengeTokens: a.cfg.ChallengeTokens,
		Limiter:         a.limiter,
		TrustedProxies:  a.cfg.TrustedProxies,
		FFmpeg:          media.FFmpeg{FFmpeg: a.cfg.Library.FFmpeg, FFprobe: a.cfg.Library.FFprobe, Timeout: a.cfg.Library.FFmpegTimeout},
		ImageLimits:     media.Limits{MaxWidth: side, MaxHeight: side},
		Jobs:            a.jobs,
		Log:             a.log,
	})
	a.library.Register(a.srv.Echo)
	return nil
}

// adminGuard returns the guard of the admin routes: per-IP limits (kept in
// production even with RATE_LIMITS=off) and one audit line per request.
func (a *App) adminGuard() *adminguard.Guard {
	limiter := ratelimit.New(a.srv.Redis, a.cfg.RedisPrefix+"ratelimit:", ratelimit.Options{
		Disabled: !adminguard.Enforced(a.cfg.Environment, a.cfg.RateLimits),
		OnError:  func(err error) { a.log.Warn("admin rate limiter unavailable", zap.Error(err)) },
	})
	return adminguard.New(adminguard.Options{
		Token: a.cfg.AdminToken, Limiter: limiter, TrustedProxies: a.cfg.TrustedProxies, Log: a.log.Named("admin"),
	})
}

// routesCredits registers the credits area: GET /pricing, the owner's
// balance and history, and the operator grant route.
func (a *App) routesCredits() {
	creditapi.New(a.ledger, creditapi.Options{Config: a.cfg.Credits, AnonymousEnabled: a.cfg.AnonymousEnabled}).
		Register(a.srv.Echo, creditapi.Middleware{
			User:      a.verifier.Required(),
			Admin:     a.adminGuard().Token(),
			UserLimit: a.limiter.Middleware(ratelimit.Rule{Name: "credits", Limit: 60, Window: time.Minute, Key: ratelimit.ByUser}),
		})
}

// routesAccounts registers the accounts area (signup, verification, login,
// logout, password reset, profile, referrals) and starts the worker of the
// account email queue.
func (a *App) routesAccounts(ctx context.Context) error {
	c := a.cfg.Accounts
	log := a.log.Named("accounts")
	hasher, err := account.NewHasher(c.Argon2, c.Argon2Concurrency)
	if err != nil {
		return err
	}
	keys, err := account.NewKeyDeriver(c.LinkKeySecret)
	if err != nil {
		return err
	}
	sender, err := email.New(c.Email)
	if err != nil {
		return err
	}
	mailer, err := account.NewMailer(a.srv.DB, sender, keys, account.MailConfig{
		BaseURL: a.cfg.AppBaseURL, VerifyTTL: account.DefaultVerifyTTL, ResetTTL: account.DefaultResetTTL,
	}, log)
	if err != nil {
		return err
	}
	// The queue outlives the startup context; Close stops it after the
	// HTTP drain.
	if err := mailer.Start(context.WithoutCancel(ctx)); err != nil {
		return err
	}
	a.mailer = mailer
	lockoutUnavailable := account.NewLockoutUnavailableCounter()
	if err := a.srv.Registry.Register(lockoutUnavailable); err != nil {
		return fmt.Errorf("register lockout metric: %w", err)
	}
	svc := account.NewService(account.Deps{
		Pool:    a.srv.DB,
		Hasher:  hasher,
		Keys:    keys,
		Mailer:  mailer,
		Ledger:  a.ledger,
		Credits: a.cfg.Credits,
		Issuer:  auth.Issuer{Secret: a.cfg.JWTSecrets[0], TTL: c.TokenTTL},
		Lockout: account.NewLockout(a.srv.Redis, a.cfg.RedisPrefix+"login:", account.LockoutConfig{
			Disabled: !a.cfg.RateLimits, Unavailable: lockoutUnavailable,
		}),
		MailLimiter: a.limiter,
		Log:         log,
	}, account.Config{})
	accountapi.New(accountapi.Options{
		Service:         svc,
		Verifier:        a.verifier,
		Revoker:         a.revocations,
		Limiter:         a.limiter,
		ChallengeTokens: a.cfg.ChallengeTokens,
		TrustedProxies:  a.cfg.TrustedProxies,
	}).Register(a.srv.Echo)
	return nil
}

// Handler returns the HTTP handler (for tests).
func (a *App) Handler() http.Handler { return a.srv.Handler() }

// Serve serves HTTP on ln, and the metrics on metrics (nil: nowhere; the
// public listener never serves them), until ctx ends, then shuts down
// within one
// ShutdownTimeout: the HTTP drain and the email queue's soft stop run side
// by side against the same deadline, then pending object deletions get
// what is left of it.
func (a *App) Serve(ctx context.Context, ln, metrics net.Listener) error {
	return service.Lifecycle{
		Serve: func(ctx context.Context) error {
			return web.ServeWithMetrics(ctx, web.NewServer(a.srv.Echo), ln, metrics, a.srv.Registry, a.log, a.cfg.ShutdownTimeout)
		},
		Stop:    a.stopBackground,
		Timeout: a.cfg.ShutdownTimeout,
	}.Run(ctx)
}

// stopBackground stops the email queue and waits for pending object
// deletions, both bounded by ctx. It runs once.
func (a *App) stopBackground(ctx context.Context) {
	a.stopOnce.Do(func() {
		if a.mailer != nil {
			if err := a.mailer.Stop(ctx); err != nil {
				a.log.Warn("email queue stop failed", zap.Error(err))
			}
		}
		if a.library != nil {
			done := make(chan struct{})
			go func() { a.library.Wait(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				a.log.Warn("pending object deletions abandoned at shutdown")
			}
		}
	})
}

// Close stops what Serve did not (for callers that never served), then
// releases Redis and the database pool.
func (a *App) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	a.stopBackground(ctx)
	cancel()
	a.srv.Close()
}

// handleHealth is GET /health: 200 with the legacy message while the
// database answers, else 503. Redis is reported, never essential: without
// it every use fails open, so a proxy must not eject this host for it.
func (a *App) handleHealth(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	status := rdb.Status(ctx, a.srv.Redis)
	if err := a.srv.DB.Ping(ctx); err != nil {
		a.log.Warn("health check failed", zap.Error(fmt.Errorf("database: %w", err)))
		return c.JSON(http.StatusServiceUnavailable, map[string]string{
			"message": "API is unavailable", "database": "unavailable", "redis": status})
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "API is up and running!", "database": "ok", "redis": status})
}
