package app_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestMetricsOnlyOnInternalListener is issue 13 item 4 on api-cpu:
// accountsvc answered GET /metrics on its public listener with 200. Now
// the public handler answers 404 JSON and the metrics are served on the
// listener Serve gets for them, which stops with the public one.
func TestMetricsOnlyOnInternalListener(t *testing.T) {
	t.Parallel()
	_, prefix := dbtest.Redis(t)
	redisURL := dbtest.RedisURL()
	dir := t.TempDir()
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{
		"DATABASE_URL":    dbtest.NewURL(t),
		"REDIS_URL":       redisURL,
		"REDIS_PREFIX":    prefix,
		"STORAGE_BACKEND": "local",
		"STORAGE_DIR":     filepath.Join(dir, "storage"),
		"EMAIL_BACKEND":   "outbox",
		"OUTBOX_DIR":      filepath.Join(dir, "outbox"),
	}))
	require.NoError(t, err)
	a, err := app.New(t.Context(), cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	t.Cleanup(a.Close)

	rec := httptest.NewRecorder()
	a.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(t, http.StatusNotFound, rec.Code, "GET /metrics on the public handler: %.200s", rec.Body.String())
	require.JSONEq(t, `{"message":"Not Found"}`, rec.Body.String())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, mln) }()
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, body := get("http://" + ln.Addr().String() + "/metrics")
	require.Equal(t, http.StatusNotFound, code, body)
	code, body = get("http://" + mln.Addr().String() + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "go_goroutines")
	require.Contains(t, body, `http_requests_total{method="GET",route="unmatched",service="accountsvc",status="404"} 2`)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(15 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
}
