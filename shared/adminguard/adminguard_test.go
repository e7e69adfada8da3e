package adminguard_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nounsai/sdserver/shared/adminguard"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/web"
)

const token = "k8Zq2vN0xR4tY7wP1mB5cD9fG3hJ6lS-admin"

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}

// server is an echo app with one admin API route, a console sign-in and a
// session route behind a Guard counting in a fresh Redis prefix.
func server(t *testing.T) (*echo.Echo, *observer.ObservedLogs) {
	t.Helper()
	rdb, prefix := dbtest.Redis(t)
	core, logs := observer.New(zap.InfoLevel)
	g := adminguard.New(adminguard.Options{
		Token: token, Limiter: ratelimit.New(rdb, prefix, ratelimit.Options{}),
		TrustedProxies: loopback, Log: zap.New(core), Limit: 30, LoginLimit: 5,
	})
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry()})
	e.POST("/admin/credits/grants", func(c echo.Context) error { return c.JSON(http.StatusOK, map[string]int{"id": 1}) }, g.Token())
	e.POST("/admin/login", func(c echo.Context) error {
		if c.FormValue("token") != token {
			return c.String(http.StatusUnauthorized, "Invalid admin token.")
		}
		return c.Redirect(http.StatusSeeOther, "/admin")
	}, g.Login())
	e.GET("/admin/fragment/hosts", func(c echo.Context) error { return c.String(http.StatusOK, "hosts") }, g.Session("console"))
	return e, logs
}

func do(e *echo.Echo, method, path, remote, body string, header map[string]string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.RemoteAddr = remote
	if body != "" {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationForm)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// TestLoginAttemptsAreLimited: 200 wrong sign-ins from one address get 429
// (JSON, Retry-After) once the limit is reached; another address is not
// affected, and a forged X-Forwarded-For from an untrusted peer does not
// buy new attempts.
func TestLoginAttemptsAreLimited(t *testing.T) {
	t.Parallel()
	e, logs := server(t)
	statuses := map[int]int{}
	for i := 0; i < 200; i++ {
		hdr := map[string]string{"X-Forwarded-For": "198.51.100." + string(rune('0'+i%10))}
		rec := do(e, http.MethodPost, "/admin/login", "203.0.113.7:4000", "token=wrong", hdr)
		statuses[rec.Code]++
		if rec.Code == http.StatusTooManyRequests {
			require.NotEmpty(t, rec.Header().Get("Retry-After"))
			var body map[string]any
			require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), rec.Body.String())
		}
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 5, http.StatusTooManyRequests: 195}, statuses)
	// Even the right token is refused from that address until the window ends.
	require.Equal(t, http.StatusTooManyRequests, do(e, http.MethodPost, "/admin/login", "203.0.113.7:4000", "token="+token, nil).Code)
	require.Equal(t, http.StatusSeeOther, do(e, http.MethodPost, "/admin/login", "203.0.113.8:4000", "token="+token, nil).Code)

	// Behind a trusted proxy the client address counts, not the proxy's.
	for i := 0; i < 5; i++ {
		do(e, http.MethodPost, "/admin/login", "127.0.0.1:1", "token=wrong", map[string]string{"X-Forwarded-For": "192.0.2.1"})
	}
	require.Equal(t, http.StatusTooManyRequests,
		do(e, http.MethodPost, "/admin/login", "127.0.0.1:1", "token=wrong", map[string]string{"X-Forwarded-For": "192.0.2.1"}).Code)
	require.Equal(t, http.StatusUnauthorized,
		do(e, http.MethodPost, "/admin/login", "127.0.0.1:1", "token=wrong", map[string]string{"X-Forwarded-For": "192.0.2.2"}).Code)

	require.Equal(t, 200+2+7, logs.FilterMessage("admin request").Len(), "one audit line per request")
}

// TestTokenRoutesAreLimitedAndAudited: wrong admin tokens are 401 until the
// per-IP limit, then 429; every request leaves an audit line naming the
// address, route and outcome, and never the token.
func TestTokenRoutesAreLimitedAndAudited(t *testing.T) {
	t.Parallel()
	e, logs := server(t)
	rec := do(e, http.MethodPost, "/admin/credits/grants", "203.0.113.9:1", "", map[string]string{"Authorization": "Bearer " + token})
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	codes := map[int]int{}
	for i := 0; i < 60; i++ {
		codes[do(e, http.MethodPost, "/admin/credits/grants", "203.0.113.9:1", "", map[string]string{"X-Admin-Token": "guess"}).Code]++
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 29, http.StatusTooManyRequests: 31}, codes)
	rec = do(e, http.MethodPost, "/admin/credits/grants", "203.0.113.9:1", "", map[string]string{"Authorization": "Bearer " + token})
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	require.NotEmpty(t, rec.Header().Get("Retry-After"))

	lines := logs.FilterMessage("admin request").All()
	require.Len(t, lines, 62)
	first := lines[0].ContextMap()
	require.Equal(t, "203.0.113.9", first["ip"])
	require.Equal(t, "/admin/credits/grants", first["route"])
	require.Equal(t, "ok", first["outcome"])
	require.Equal(t, true, first["credential_presented"])
	require.Equal(t, "denied", lines[1].ContextMap()["outcome"])
	require.Equal(t, "rate_limited", lines[61].ContextMap()["outcome"])
	for _, l := range lines {
		for _, v := range l.ContextMap() {
			s, _ := v.(string)
			require.NotContains(t, s, token)
			require.NotContains(t, s, "guess")
		}
	}

	// Session routes share the general limit of the address.
	require.Equal(t, http.StatusTooManyRequests, do(e, http.MethodGet, "/admin/fragment/hosts", "203.0.113.9:1", "", nil).Code)
	require.Equal(t, http.StatusOK, do(e, http.MethodGet, "/admin/fragment/hosts", "203.0.113.10:1", "", nil).Code)
}

func TestEnforced(t *testing.T) {
	t.Parallel()
	require.True(t, adminguard.Enforced("production", false), "RATE_LIMITS=off keeps the admin limits in production")
	require.True(t, adminguard.Enforced("local", true))
	require.False(t, adminguard.Enforced("local", false))
}
