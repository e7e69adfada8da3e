package app_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestAdminLoginIsRateLimited: 200 wrong console sign-ins from one client
// get 429 (JSON, Retry-After) once the per-IP limit is reached, and the
// admin API shares a per-IP limit; both stay on in production with
// RATE_LIMITS=off.
func TestAdminLoginIsRateLimited(t *testing.T) {
	t.Parallel()
	account := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	t.Cleanup(account.Close)
	cfg := testConfig(account.URL)
	cfg.Environment, cfg.RateLimits = "production", false
	p := startProxy(t, cfg, dbtest.New(t))

	codes := map[int]int{}
	var retryAfter, body string
	for i := 0; i < 200; i++ {
		resp, err := http.PostForm(p.url+"/admin/login", url.Values{"token": {"wrong"}})
		require.NoError(t, err)
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter = resp.Header.Get("Retry-After")
			var m map[string]any
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&m))
			body, _ = m["message"].(string)
		}
		resp.Body.Close()
	}
	require.Equal(t, map[int]int{http.StatusUnauthorized: 10, http.StatusTooManyRequests: 190}, codes)
	require.NotEmpty(t, retryAfter)
	require.NotEmpty(t, body)

	// The admin API shares the client's per-IP budget (120 a minute), which
	// the 200 sign-ins used up.
	status, _, hdr := send(t, "GET", p.url+"/admin/hosts", "", map[string]string{"Authorization": "Bearer admin-secret"})
	require.Equal(t, http.StatusTooManyRequests, status)
	require.NotEmpty(t, hdr.Get("Retry-After"))
}
