package app_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestPublicListenerHidesMetricsAndHosts is issue 13 item 4 seen from the
// internet: GET /metrics on the proxy's public listener answered 200 with
// upstream addresses in its labels, and /refresh_hosts (public challenge
// token) listed the GPU host addresses. Now /metrics is a 404 JSON there
// (it is not forwarded upstream either) and /refresh_hosts says only how
// many hosts it loaded.
func TestPublicListenerHidesMetricsAndHosts(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	account := newGPUBackend(t, "account", 1, time.Millisecond)
	gpu := newGPUBackend(t, "gpu", 1, time.Millisecond)
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, gpu.URL())
	p := startProxy(t, testConfig(account.URL()), db)
	before := account.served.Load()

	for _, m := range []string{"GET", "HEAD"} {
		status, body, _ := send(t, m, p.url+"/metrics", "", nil)
		require.Equal(t, http.StatusNotFound, status, "%s /metrics on the public listener: %s", m, body)
		if m == "GET" {
			require.JSONEq(t, `{"message":"Not Found"}`, body)
		}
	}
	require.Equal(t, before, account.served.Load(), "/metrics must not be forwarded to accountsvc")

	for _, m := range []string{"GET", "POST"} {
		status, body, _ := send(t, m, p.url+"/refresh_hosts", "", nil)
		require.Equal(t, http.StatusOK, status, body)
		require.NotContains(t, body, gpu.URL(), "%s /refresh_hosts names a GPU host", m)
		require.NotContains(t, body, "127.0.0.1", "%s /refresh_hosts names an address", m)
	}
}
