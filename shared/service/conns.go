package service

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/rdb"
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
