// Package rdb opens the Redis client. Redis holds only what may be lost
// (rate-limit counters, short-lived state, pub/sub); this package must never
// be used for data that needs to survive a Redis restart.
package rdb

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open parses url, applies timeouts and pings the server.
func Open(ctx context.Context, url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 3 * time.Second
	}
	opts.ReadTimeout = 2 * time.Second
	opts.WriteTimeout = 2 * time.Second
	// Honour context deadlines too, so callers can bound a command below
	// the read timeout (the proxy's rate-limit check waits at most 100 ms).
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	pctx, cancel := context.WithTimeout(ctx, opts.DialTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("ping redis: %w", err)
	}
	return c, nil
}
