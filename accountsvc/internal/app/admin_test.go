package app_test

import (
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

const adminToken = "k8Zq2vN0xR4tY7wP1mB5cD9fG3hJ6lS-admin-token"

// TestAdminGrantsAreRateLimitedAndAudited: wrong admin tokens on
// POST /admin/credits/grants get 401 up to the per-IP limit, then 429 with
// Retry-After — in production even with RATE_LIMITS=off — and every
// attempt leaves an audit line without the token.
func TestAdminGrantsAreRateLimitedAndAudited(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	_, prefix := dbtest.Redis(t)
	redisURL := dbtest.RedisURL()
	env := map[string]string{
		"ENVIRONMENT":     "production",
		"JWT_SECRET":      "k8Zq2vN0xR4tY7wP1mB5cD9fG3hJ6lS-jwt-secret",
		"CHALLENGE_TOKEN": "k8Zq2vN0xR4tY7wP1mB5cD9fG3hJ6lS-challenge",
		"ADMIN_TOKEN":     adminToken,
		"DATABASE_URL":    dbtest.NewURL(t),
		"REDIS_URL":       redisURL,
		"REDIS_PREFIX":    prefix,
		"RATE_LIMITS":     "off",
		"STORAGE_BACKEND": "local",
		"STORAGE_DIR":     filepath.Join(dir, "storage"),
		"EMAIL_BACKEND":   "outbox",
		"OUTBOX_DIR":      filepath.Join(dir, "outbox"),
	}
	cfg, err := app.LoadConfig(config.FromMap(env))
	require.NoError(t, err)
	core, logs := observer.New(zap.InfoLevel)
	a, err := app.New(t.Context(), cfg, zap.New(core))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	h := a.Handler()

	grant := func(remote, bearer string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/admin/credits/grants", strings.NewReader(`{}`))
		req.RemoteAddr = remote
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+bearer)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	codes := map[int]int{}
	var last *httptest.ResponseRecorder
	for i := 0; i < 200; i++ {
		last = grant("203.0.113.5:1234", "wrong-guess")
		codes[last.Code]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 120, http.StatusTooManyRequests: 80}, codes)
	require.NotEmpty(t, last.Header().Get("Retry-After"))
	require.Contains(t, last.Body.String(), `"message"`)
	// Another address is not affected: its valid token reaches the handler
	// (which validates the empty body).
	require.Equal(t, http.StatusBadRequest, grant("203.0.113.6:1234", adminToken).Code)

	audit := logs.FilterMessage("admin request").All()
	require.Len(t, audit, 201)
	require.Equal(t, "203.0.113.5", audit[0].ContextMap()["ip"])
	require.Equal(t, "denied", audit[0].ContextMap()["outcome"])
	require.Equal(t, "rate_limited", audit[199].ContextMap()["outcome"])
	require.Equal(t, "/admin/credits/grants", audit[200].ContextMap()["route"])
	for _, e := range logs.All() {
		for _, v := range e.ContextMap() {
			s, _ := v.(string)
			require.NotContains(t, s, adminToken, "a log line holds the admin token")
		}
	}
}
