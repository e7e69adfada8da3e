package e2e_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestRedisStopped is issue 14's Redis outage on the real stack: every
// service points at a throwaway Redis (never the machine's), which is
// killed once a user is signed up. Health checks stay 200 (Redis reported
// "degraded"), so the proxy keeps every host; login (rate-limited), the
// credits, a generation (rate-limited), the library, logout and an async
// job's event stream (polling the row instead of pub/sub) all still work.
func TestRedisStopped(t *testing.T) {
	t.Parallel()
	redisSrv := dbtest.StartRedisServer(t)
	s := newStackWith(t, map[string]string{
		"REDIS_URL":    redisSrv.URL(),
		"REDIS_PREFIX": "e2e:",
		"RATE_LIMITS":  "on",
	})
	proxy := s.targets()[0]
	u := s.signup(t, proxy, "outage@example.com")

	redisSrv.Stop()

	// Health: 200 everywhere, Redis reported as degraded.
	for _, url := range []string{s.AccountURL, s.GPUURL} {
		r := target{"health", url, s.client}.do(t, http.MethodGet, "/health", "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", url, r.body)
		require.Equal(t, "degraded", r.Map(t)["redis"], "%s", r.body)
	}

	// Login is rate-limited: it fails open.
	r := proxy.do(t, http.MethodPost, "/login", "", nil, "Authorization", basicAuth(u.Email, u.Password))
	require.Equal(t, http.StatusOK, r.status, "login: %s", r.body)
	tok, _ := r.Map(t)["token"].(string)
	require.NotEmpty(t, tok)
	u.Token = tok
	require.EqualValues(t, 50, u.credits(t, proxy))

	// A generation (rate-limited per user) and the library.
	r = proxy.do(t, http.MethodPost, "/images", u.Token, txt2img(7))
	require.Equal(t, http.StatusOK, r.status, "generate: %s", r.body)
	r = proxy.do(t, http.MethodGet, fmt.Sprintf("/users/%d/images", u.ID), u.Token, nil)
	require.Equal(t, http.StatusOK, r.status, "library: %s", r.body)

	// An async job, followed over SSE: no pub/sub, the stream polls the
	// row and still ends with "done".
	r = proxy.do(t, http.MethodPost, "/v1/images/generations", u.Token, txt2img(8))
	require.Equal(t, http.StatusAccepted, r.status, "enqueue: %s", r.body)
	jobID, _ := r.Map(t)["job_id"].(string)
	require.NotEmpty(t, jobID)
	require.Equal(t, "done", lastSSEEvent(t, s, "/v1/jobs/"+jobID+"/events", u.Token))

	// After all that, the proxy still has both upstreams up (several health
	// intervals have passed).
	gpu, account := s.adminHosts(t)
	for _, h := range append(gpu, account...) {
		require.True(t, h.Healthy, "%+v", h)
		require.Equal(t, "up", h.State, "%+v", h)
	}

	// Logout cannot use the deny-list: it revokes the user's tokens
	// durably instead, and still succeeds.
	r = proxy.do(t, http.MethodPost, "/logout", u.Token, nil)
	require.Equal(t, http.StatusOK, r.status, "logout: %s", r.body)
	r = proxy.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", u.ID), u.Token, nil)
	require.Equal(t, http.StatusUnauthorized, r.status, "a logged-out token: %s", r.body)
}

// lastSSEEvent reads the event stream at path through the proxy until it
// ends and returns the name of its last event.
func lastSSEEvent(t *testing.T, s *stack, path, token string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.ProxyURL+path, nil)
	require.NoError(t, err)
	req.Header.Set("challenge-token", challenge)
	req.Header.Set("Authorization", token)
	client := &http.Client{Timeout: 90 * time.Second}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var last string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			last = name
		}
	}
	return last
}
