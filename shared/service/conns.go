package service

import (
	"context"
	"net/http"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/web"
)

// Conns are the connections every service opens at start.
type Conns struct {
	// DB is the PostgreSQL pool of DATABASE_URL.
	DB *pgxpool.Pool
	// Redis is the client of REDIS_URL.
	Redis *redis.Client
	// Registry receives the service's metrics; it holds the Go runtime
	// and process collectors.
	Registry *prometheus.Registry
}

// Open opens the database pool and the Redis client of c (see db.Open and
// rdb.Open) and makes the metrics registry. On error nothing stays open;
// otherwise the caller calls Close.
func Open(ctx context.Context, c config.Common) (Conns, error) {
	pool, err := db.Open(ctx, c.DatabaseURL, db.Options{})
	if err != nil {
		return Conns{}, err
	}
	rc, err := rdb.Open(ctx, c.RedisURL)
	if err != nil {
		pool.Close()
		return Conns{}, err
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return Conns{DB: pool, Redis: rc, Registry: reg}, nil
}

// Close closes Redis, then the database pool.
func (c Conns) Close() {
	_ = c.Redis.Close()
	c.DB.Close()
}

// Web is a service that serves its routes with echo (accountsvc, gpusvc;
// the proxy sends most requests past echo and builds its own): its
// connections and its router, built on them.
type Web struct {
	Conns
	// Echo is the router: web.New's middleware chain and error handler,
	// with no route yet.
	Echo *echo.Echo
}

// OpenWeb opens c's connections (Open) and builds the router of the
// service named name on them: web.New with c's body limit and trusted
// proxies, the connections' metrics registry, and CORS when cors is set
// (a service browsers call directly). On error nothing stays open;
// otherwise the caller calls Close.
func OpenWeb(ctx context.Context, c config.Common, name string, log *zap.Logger, cors bool) (*Web, error) {
	conns, err := Open(ctx, c)
	if err != nil {
		return nil, err
	}
	e := web.New(web.Options{Service: name, Log: log, Registry: conns.Registry, BodyLimit: c.BodyLimit,
		CORS: cors, TrustedProxies: c.TrustedProxies})
	return &Web{Conns: conns, Echo: e}, nil
}

// Handler returns the router as an http.Handler (for tests that serve it
// with httptest).
func (w *Web) Handler() http.Handler { return w.Echo }
