// Package app wires gpusvc together: it opens the database and Redis,
// builds the stores and handlers, and serves HTTP until its context ends.
// It is the only place (with cmd/gpusvc) that knows every dependency.
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
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/web"
)

// App is a running gpusvc.
type App struct {
	cfg   Config
	log   *zap.Logger
	pool  *pgxpool.Pool
	redis *redis.Client
	echo  *echo.Echo
	reg   *prometheus.Registry
}

// New opens the dependencies and builds the HTTP handler. Close releases
// them.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*App, error) {
	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{})
	if err != nil {
		return nil, err
	}
	rc, err := rdb.Open(ctx, cfg.RedisURL)
	if err != nil {
		pool.Close()
		return nil, err
	}
	a := &App{cfg: cfg, log: log, pool: pool, redis: rc, reg: prometheus.NewRegistry()}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.echo = web.New(web.Options{Service: "gpusvc", Log: log, Registry: a.reg, BodyLimit: cfg.BodyLimit})
	a.echo.GET("/health", a.handleHealth)
	if err := a.routes(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

// routes registers every area's routes. Each area adds one call here.
func (a *App) routes(ctx context.Context) error {
	_ = ctx
	return nil
}

// Handler returns the HTTP handler (for tests).
func (a *App) Handler() http.Handler { return a.echo }

// Serve serves HTTP on ln until ctx ends, then drains.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	return web.Serve(ctx, web.NewServer(a.echo), ln, a.log, a.cfg.ShutdownTimeout)
}

// Close releases Redis and the database pool.
func (a *App) Close() {
	_ = a.redis.Close()
	a.pool.Close()
}

func (a *App) handleHealth(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	var errs []error
	if err := a.pool.Ping(ctx); err != nil {
		errs = append(errs, fmt.Errorf("database: %w", err))
	}
	if err := a.redis.Ping(ctx).Err(); err != nil {
		errs = append(errs, fmt.Errorf("redis: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		a.log.Warn("health check failed", zap.Error(err))
		return c.JSON(http.StatusServiceUnavailable, map[string]string{"message": "API is unavailable"})
	}
	return c.JSON(http.StatusOK, map[string]string{"message": "API is up and running!"})
}
