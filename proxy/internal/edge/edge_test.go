package edge_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/edge"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

func TestChallenge(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeTokens: []string{"current", "", "previous"}, ChallengeExempt: []string{"/verify/"}}, nil, ok, zaptest.NewLogger(t))
	for _, tc := range []struct {
		method, path, token string
		hdr                 map[string]string
		want                int
	}{
		{"GET", "/users/1", "current", nil, http.StatusNoContent},
		{"PUT", "/users/1", "previous", nil, http.StatusNoContent},
		{"GET", "/users/1", "", nil, http.StatusUnauthorized},
		{"GET", "/users/1", "curren", nil, http.StatusUnauthorized},
		{"GET", "/verify/abc", "", nil, http.StatusNoContent},
		// A plain OPTIONS is forwarded and needs the token; a preflight is
		// answered here without it.
		{"OPTIONS", "/images", "", nil, http.StatusUnauthorized},
		{"OPTIONS", "/images", "", map[string]string{"Origin": "https://a.b", "Access-Control-Request-Method": "POST"}, http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			req.Header.Set("challenge-token", tc.token)
		}
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		require.Equal(t, tc.want, w.Code, "%s %s %q", tc.method, tc.path, tc.token)
		if tc.want == http.StatusUnauthorized {
			require.JSONEq(t, `{"message":"challenge-token header missing / invalid"}`, w.Body.String())
		}
	}
}

// TestNoTokenConfiguredRefuses: a guard built without any challenge token
// fails closed, as every other check of the token does (it used to let
// every request through).
func TestNoTokenConfiguredRefuses(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeExempt: []string{"/verify/"}}, nil, ok, zaptest.NewLogger(t))
	for path, want := range map[string]int{"/users/1": http.StatusUnauthorized, "/verify/abc": http.StatusNoContent} {
		req := httptest.NewRequest("GET", path, nil)
		req.Header.Set("challenge-token", "anything")
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		require.Equal(t, want, w.Code, path)
	}
}

func TestLimitListener(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := edge.LimitListener(raw, 1)
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c1, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c1.Close()
	c2, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	first := <-accepted
	select {
	case <-accepted:
		t.Fatal("second connection accepted over the limit")
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, first.Close())
	select {
	case c := <-accepted:
		require.NoError(t, c.Close())
	case <-time.After(time.Second):
		t.Fatal("second connection not accepted after the first closed")
	}
	require.NoError(t, ln.Close())
}

// TestRateLimitRemembersDenials checks the per-IP limit, and that a client
// over it is refused until the window ends without another Redis hit.
func TestRateLimitRemembersDenials(t *testing.T) {
	t.Parallel()
	rc, prefix := dbtest.Redis(t)
	limiter := ratelimit.New(rc, prefix, ratelimit.Options{})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeTokens: []string{"t"}, RateLimitIP: 2}, limiter, ok, zaptest.NewLogger(t))

	var codes []int
	for range 6 {
		req := httptest.NewRequest("GET", "/users/1", nil)
		req.Header.Set("challenge-token", "t")
		req.RemoteAddr = "203.0.113.7:5000"
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		codes = append(codes, w.Code)
		if w.Code == http.StatusTooManyRequests {
			require.Equal(t, "2", w.Header().Get("X-RateLimit-Limit"))
			require.Equal(t, "0", w.Header().Get("X-RateLimit-Remaining"))
			require.NotEmpty(t, w.Header().Get("X-RateLimit-Reset"))
			retry, err := strconv.Atoi(w.Header().Get("Retry-After"))
			require.NoError(t, err)
			require.True(t, retry >= 1 && retry <= 60, retry)
			require.JSONEq(t, `{"message":"Too many requests"}`, w.Body.String())
		}
	}
	require.Equal(t, []int{204, 204, 429, 429, 429, 429}, codes)

	// Redis counted the first refusal only; the others were answered from
	// memory.
	keys, err := rc.Keys(context.Background(), prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	n, err := rc.Get(context.Background(), keys[0]).Int()
	require.NoError(t, err)
	require.Equal(t, 3, n)

	// Another client is not affected.
	req := httptest.NewRequest("GET", "/users/1", nil)
	req.Header.Set("challenge-token", "t")
	req.RemoteAddr = "203.0.113.8:5000"
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	require.Equal(t, http.StatusNoContent, w.Code)
}

// TestRateLimitFailsOpenOnSlowRedis checks that a Redis that does not answer
// within the timeout lets requests through (with a client that honours
// context deadlines).
func TestRateLimitFailsOpenOnSlowRedis(t *testing.T) {
	t.Parallel()
	// A listener that accepts and never answers stands for a stalled Redis.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
		}
	}()
	rc := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = rc.Close() })
	limiter := ratelimit.New(rc, "x:", ratelimit.Options{})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeTokens: []string{"t"}, RateLimitIP: 1, RateLimitTimeout: 50 * time.Millisecond}, limiter, ok, zaptest.NewLogger(t))
	start := time.Now()
	req := httptest.NewRequest("GET", "/users/1", nil)
	req.Header.Set("challenge-token", "t")
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	require.Equal(t, http.StatusNoContent, w.Code)
	require.Less(t, time.Since(start), 2*time.Second)
}

// TestRateLimitIPv6Per64 checks that an IPv6 client cannot escape the per-IP
// limit by rotating addresses inside its /64.
func TestRateLimitIPv6Per64(t *testing.T) {
	t.Parallel()
	rc, prefix := dbtest.Redis(t)
	limiter := ratelimit.New(rc, prefix, ratelimit.Options{})
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeTokens: []string{"t"}, RateLimitIP: 2}, limiter, ok, zaptest.NewLogger(t))

	var codes []int
	for i := range 4 {
		req := httptest.NewRequest("GET", "/users/1", nil)
		req.Header.Set("challenge-token", "t")
		req.RemoteAddr = fmt.Sprintf("[2001:db8:5:6::%x]:5000", i+1)
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		codes = append(codes, w.Code)
	}
	require.Equal(t, []int{204, 204, 429, 429}, codes)

	// The next /64 has its own budget.
	req := httptest.NewRequest("GET", "/users/1", nil)
	req.Header.Set("challenge-token", "t")
	req.RemoteAddr = "[2001:db8:5:7::1]:5000"
	w := httptest.NewRecorder()
	g.ServeHTTP(w, req)
	require.Equal(t, http.StatusNoContent, w.Code)
}
