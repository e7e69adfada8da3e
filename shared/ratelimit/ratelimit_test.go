package ratelimit_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/web"
)

// clock is a settable test clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// windowStart is a minute boundary far from the real time, so that the
// test's counters never collide with anything else.
var windowStart = time.Date(2030, 1, 1, 10, 0, 0, 0, time.UTC)

func TestAllow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := dbtest.Redis(t)
	clk := &clock{t: windowStart.Add(10 * time.Second)}
	l := ratelimit.New(rdb, prefix, ratelimit.Options{Now: clk.Now})

	for want := 2; want >= 0; want-- {
		res, err := l.Allow(ctx, "login:ip:1.2.3.4", 3, time.Minute)
		require.NoError(t, err)
		require.True(t, res.Allowed)
		require.Equal(t, want, res.Remaining)
		require.Equal(t, 3, res.Limit)
		require.Equal(t, windowStart.Add(time.Minute), res.Reset.UTC())
		require.Zero(t, res.RetryAfter)
	}
	clk.Add(500 * time.Millisecond)
	res, err := l.Allow(ctx, "login:ip:1.2.3.4", 3, time.Minute)
	require.NoError(t, err)
	require.False(t, res.Allowed)
	require.Zero(t, res.Remaining)
	require.Equal(t, 50*time.Second, res.RetryAfter) // 49.5s rounded up

	// Other keys have their own counters.
	res, err = l.Allow(ctx, "login:ip:5.6.7.8", 3, time.Minute)
	require.NoError(t, err)
	require.True(t, res.Allowed)

	// Every counter has an expiry.
	keys, err := rdb.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 2)
	for _, k := range keys {
		ttl, err := rdb.PTTL(ctx, k).Result()
		require.NoError(t, err)
		require.Greater(t, ttl, time.Duration(0))
		require.LessOrEqual(t, ttl, time.Minute)
	}

	// The next window starts afresh.
	clk.Add(50 * time.Second)
	res, err = l.Allow(ctx, "login:ip:1.2.3.4", 3, time.Minute)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.Equal(t, 2, res.Remaining)
	require.Equal(t, windowStart.Add(2*time.Minute), res.Reset.UTC())

	_, err = l.Allow(ctx, "x", 0, time.Minute)
	require.Error(t, err)
	_, err = l.Allow(ctx, "x", 1, 0)
	require.Error(t, err)
}

// TestWindowResetsRealClock uses the real clock and a short window.
func TestWindowResetsRealClock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := dbtest.Redis(t)
	l := ratelimit.New(rdb, prefix, ratelimit.Options{})

	for range 3 {
		_, err := l.Allow(ctx, "k", 2, 200*time.Millisecond)
		require.NoError(t, err)
	}
	// Whichever window the hits fell in has ended.
	time.Sleep(450 * time.Millisecond)
	res, err := l.Allow(ctx, "k", 2, 200*time.Millisecond)
	require.NoError(t, err)
	require.True(t, res.Allowed)
	require.Equal(t, 1, res.Remaining)
}

// TestReplicasShareCounts: two limiters with their own Redis clients, as two
// service replicas would have, count against the same limit.
func TestReplicasShareCounts(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	rdb, prefix := dbtest.Redis(t)
	other := redis.NewClient(&redis.Options{Addr: rdb.Options().Addr, DB: rdb.Options().DB})
	t.Cleanup(func() { _ = other.Close() })

	clk := &clock{t: windowStart}
	a := ratelimit.New(rdb, prefix, ratelimit.Options{Now: clk.Now})
	b := ratelimit.New(other, prefix, ratelimit.Options{Now: clk.Now})

	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := a
			if i%2 == 1 {
				l = b
			}
			res, err := l.Allow(ctx, "gen:user:5", 10, time.Minute)
			if err != nil {
				t.Error(err)
				return
			}
			if res.Allowed {
				mu.Lock()
				allowed++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Equal(t, 10, allowed)
}

func newEcho(mw echo.MiddlewareFunc, pre ...echo.MiddlewareFunc) *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = web.ErrorHandler(zap.NewNop())
	e.POST("/login", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]string{"status": "success"}) },
		append(pre, mw)...)
	return e
}

func post(e *echo.Echo, remoteAddr string, hdr map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.RemoteAddr = remoteAddr
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, req)
	return w
}

func TestMiddleware(t *testing.T) {
	t.Parallel()
	rdb, prefix := dbtest.Redis(t)
	clk := &clock{t: windowStart.Add(30 * time.Second)}
	l := ratelimit.New(rdb, prefix, ratelimit.Options{Now: clk.Now})
	e := newEcho(l.Middleware(ratelimit.Rule{Name: "login", Limit: 2, Window: time.Minute, Key: ratelimit.ByIP(nil)}))
	reset := strconv.FormatInt(windowStart.Add(time.Minute).Unix(), 10)

	for _, remaining := range []string{"1", "0"} {
		w := post(e, "203.0.113.7:5555", nil)
		require.Equal(t, http.StatusOK, w.Code)
		require.Equal(t, "2", w.Header().Get("X-RateLimit-Limit"))
		require.Equal(t, remaining, w.Header().Get("X-RateLimit-Remaining"))
		require.Equal(t, reset, w.Header().Get("X-RateLimit-Reset"))
	}
	w := post(e, "203.0.113.7:5556", nil)
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.Equal(t, "30", w.Header().Get("Retry-After"))
	require.Equal(t, "0", w.Header().Get("X-RateLimit-Remaining"))
	require.Equal(t, reset, w.Header().Get("X-RateLimit-Reset"))
	var body map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &body))
	require.Equal(t, map[string]any{"message": "Too many requests"}, body)

	// Another client is not affected; nor is the first one next window.
	require.Equal(t, http.StatusOK, post(e, "203.0.113.8:1", nil).Code)
	clk.Add(30 * time.Second)
	require.Equal(t, http.StatusOK, post(e, "203.0.113.7:1", nil).Code)
}

func TestMiddlewareByUser(t *testing.T) {
	t.Parallel()
	rdb, prefix := dbtest.Redis(t)
	l := ratelimit.New(rdb, prefix, ratelimit.Options{Now: (&clock{t: windowStart}).Now})
	v := &auth.Verifier{Secrets: [][]byte{[]byte("s")}}
	tok, _, err := auth.Issue([]byte("s"), 9, 0, time.Hour, time.Now())
	require.NoError(t, err)
	e := newEcho(l.Middleware(ratelimit.Rule{Name: "gen", Limit: 1, Window: time.Minute,
		Key: ratelimit.ByUser, Message: "Slow down"}), v.Optional(67, true))

	// The user's bucket follows the user across addresses.
	require.Equal(t, http.StatusOK, post(e, "198.51.100.1:1", map[string]string{"Authorization": tok}).Code)
	w := post(e, "198.51.100.2:1", map[string]string{"Authorization": tok})
	require.Equal(t, http.StatusTooManyRequests, w.Code)
	require.JSONEq(t, `{"message":"Slow down"}`, w.Body.String())

	// ByUser ignores anonymous callers.
	e = newEcho(l.Middleware(ratelimit.Rule{Name: "user-only", Limit: 1, Window: time.Minute,
		Key: ratelimit.ByUser}), v.Optional(67, true))
	for range 3 {
		w := post(e, "198.51.100.3:1", nil)
		require.Equal(t, http.StatusOK, w.Code)
		require.Empty(t, w.Header().Get("X-RateLimit-Limit"))
	}
}

func TestMiddlewareDisabledAndRedisDown(t *testing.T) {
	t.Parallel()
	rule := ratelimit.Rule{Name: "login", Limit: 1, Window: time.Minute, Key: ratelimit.ByIP(nil)}

	off := newEcho(ratelimit.New(nil, "", ratelimit.Options{Disabled: true}).Middleware(rule))
	for range 3 {
		w := post(off, "192.0.2.1:1", nil)
		require.Equal(t, http.StatusOK, w.Code)
		require.Empty(t, w.Header().Get("X-RateLimit-Limit"))
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dead := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = dead.Close() })
	var mu sync.Mutex
	var errs []error
	down := newEcho(ratelimit.New(dead, "x:", ratelimit.Options{OnError: func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}}).Middleware(rule))
	for range 3 {
		require.Equal(t, http.StatusOK, post(down, "192.0.2.1:1", nil).Code)
	}
	mu.Lock()
	require.Len(t, errs, 3)
	mu.Unlock()

	require.Panics(t, func() { ratelimit.New(nil, "", ratelimit.Options{}).Middleware(ratelimit.Rule{Name: "x"}) })
}
