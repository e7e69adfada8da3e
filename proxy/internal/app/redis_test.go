package app_test

import (
	"context"
	"net"
	"net/http"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/rdb"
)

// TestRateLimitsFailOpenCounted: with Redis stopped the proxy's rate limits
// let requests through (Redis holds only what may be lost) and every such
// request is counted in redis_fail_open_total{use="ratelimit"}, as in the
// other services, instead of going unseen.
func TestRateLimitsFailOpenCounted(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	srv := dbtest.StartRedisServer(t)
	rc, err := rdb.Open(context.Background(), srv.URL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = rc.Close() })
	account := newGPUBackend(t, "account", 1, 0)
	cfg := testConfig(account.URL())
	cfg.RateLimitIP = 100
	reg := prometheus.NewRegistry()
	a, err := app.New(cfg, zaptest.NewLogger(t), app.Deps{DB: db, Redis: rc, Registry: reg})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	t.Cleanup(func() { cancel(); <-done })
	url := "http://" + ln.Addr().String()

	status, body, _ := send(t, "GET", url+"/users/1", "", nil)
	require.Equal(t, http.StatusOK, status, body)
	srv.Stop()
	for range 3 {
		status, body, _ := send(t, "GET", url+"/users/1", "", nil)
		require.Equal(t, http.StatusOK, status, body)
	}
	require.GreaterOrEqual(t, failOpens(t, reg, "ratelimit"), 3.0)
}

// failOpens returns redis_fail_open_total{use} from reg (0 when absent).
func failOpens(t *testing.T, reg *prometheus.Registry, use string) float64 {
	t.Helper()
	families, err := reg.Gather()
	require.NoError(t, err)
	for _, f := range families {
		if f.GetName() != "redis_fail_open_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "use" && l.GetValue() == use {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
