package rdb_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/rdb"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// TestBreakerWithStoppedRedis stops a real (throwaway) Redis: the first
// command fails on the network, the next ones fail at once with
// ErrUnavailable until the cooldown ends, and once Redis is back the client
// works again.
func TestBreakerWithStoppedRedis(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := dbtest.StartRedisServer(t)
	clk := &clock{t: time.Now()}
	b := rdb.NewBreaker(time.Second, clk.Now)
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: 1, DialTimeout: rdb.DialTimeout,
		ReadTimeout: rdb.IOTimeout, WriteTimeout: rdb.IOTimeout, DialerRetries: 1})
	c.AddHook(b)
	t.Cleanup(func() { _ = c.Close() })

	require.NoError(t, c.Set(ctx, "k", "v", time.Minute).Err())
	require.ErrorIs(t, c.Get(ctx, "missing").Err(), redis.Nil)
	require.False(t, b.Open(), "a nil reply is not a failure")
	require.Error(t, c.Do(ctx, "NOSUCHCOMMAND").Err())
	require.False(t, b.Open(), "an error reply is not a failure")

	srv.Stop()
	err := c.Get(ctx, "k").Err()
	require.Error(t, err)
	require.True(t, b.Open())
	require.ErrorIs(t, c.Get(ctx, "k").Err(), rdb.ErrUnavailable)
	ps := c.Subscribe(ctx, "ch")
	_, err = ps.Receive(ctx)
	require.ErrorIs(t, err, rdb.ErrUnavailable)
	require.NoError(t, ps.Close())

	srv.Start()
	require.ErrorIs(t, c.Get(ctx, "k").Err(), rdb.ErrUnavailable, "still cooling down")
	clk.Add(time.Second)
	require.False(t, b.Open())
	require.ErrorIs(t, c.Get(ctx, "k").Err(), redis.Nil, "a fresh server without persistence")
}

func TestOpenAppliesBreaker(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := dbtest.StartRedisServer(t)
	c, err := rdb.Open(ctx, srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	require.NoError(t, c.Ping(ctx).Err())
	srv.Stop()
	require.Error(t, c.Ping(ctx).Err())
	require.ErrorIs(t, c.Ping(ctx).Err(), rdb.ErrUnavailable)
}

func TestFailOpenCountsEveryCallLogsFew(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	f := rdb.NewFailOpen(reg, zaptest.NewLogger(t))
	rec := f.Func("ratelimit")
	for range 5 {
		rec(errors.New("down"))
	}
	f.Record("deny_list", errors.New("down"))
	require.Equal(t, 2, testutil.CollectAndCount(reg, "redis_fail_open_total"))
	n, err := testutil.GatherAndCount(reg, "redis_fail_open_total")
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.NoError(t, testutil.GatherAndCompare(reg, stringsReader(`
# HELP redis_fail_open_total Requests that went on without Redis (it failed or its breaker was open), by use.
# TYPE redis_fail_open_total counter
redis_fail_open_total{use="deny_list"} 1
redis_fail_open_total{use="ratelimit"} 5
`), "redis_fail_open_total"))
}

func stringsReader(s string) *strings.Reader { return strings.NewReader(s) }
