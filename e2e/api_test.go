package e2e_test

import (
	"bufio"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testNewAPI runs the routes added beside the legacy ones, through the
// proxy and directly on accountsvc (GPU routes through the proxy only), so
// that the contract validator sees each of them: pricing, models, the
// async generation and its job (state, events, cancel), transactions,
// referrals, verification resend, logout, and the API description.
func testNewAPI(t *testing.T, s *stack) {
	proxy := s.targets()[0]
	for i, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("newapi-%d@example.com", i))
		uid := fmt.Sprint(u.ID)

		r := tg.do(t, http.MethodGet, "/pricing", "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		require.Contains(t, r.Map(t), "prices")

		r = tg.do(t, http.MethodGet, "/users/"+uid+"/transactions", u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r = tg.do(t, http.MethodGet, "/users/"+uid+"/referrals", u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r = tg.do(t, http.MethodGet, "/users/"+uid+"/referral-token", u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r = tg.do(t, http.MethodPost, "/users/verify/resend", "", map[string]string{"email": u.Email})
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)

		// The async generation goes to a GPU host: through the proxy.
		r = proxy.do(t, http.MethodPost, "/v1/images/generations", u.Token, txt2img(7))
		require.Equal(t, http.StatusAccepted, r.status, "%s", r.body)
		jobID, _ := r.Map(t)["job_id"].(string)
		require.NotEmpty(t, jobID, "%s", r.body)
		job := waitState(t, tg, "/v1/jobs/"+jobID, u.Token, 60*time.Second, "COMPLETED", "ERROR")
		require.Equal(t, "COMPLETED", job["state"], "%v", job)
		// The stream of a finished job is its snapshot and "done".
		events := s.events(t, tg, "/v1/jobs/"+jobID+"/events", u.Token)
		require.Equal(t, []string{"snapshot", "done"}, events)
		r = tg.do(t, http.MethodDelete, "/v1/jobs/"+jobID, u.Token, nil)
		require.Contains(t, []int{http.StatusOK, http.StatusConflict}, r.status, "%s", r.body)
		r = tg.do(t, http.MethodGet, "/v1/jobs/not-a-job", u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, "%s", r.body)

		r = tg.do(t, http.MethodPost, "/logout", u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s", r.body)
		r = tg.do(t, http.MethodGet, "/users/"+uid, u.Token, nil)
		require.Equal(t, http.StatusUnauthorized, r.status, "%s", r.body)
	}

	r := proxy.do(t, http.MethodGet, "/models", "", nil)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)

	// The description and its page, without a challenge token.
	for _, tg := range s.targets() {
		for _, path := range []string{"/openapi.json", "/openapi.yaml", "/docs", "/docs/redoc.standalone.js"} {
			r := tg.do(t, http.MethodGet, path, "", nil, "challenge-token", "")
			require.Equal(t, http.StatusOK, r.status, "%s via %s: %.200s", path, tg.name, r.body)
		}
	}
}

// events reads a Server-Sent Events stream to its end and returns the
// event names.
func (s *stack) events(tb testing.TB, tg target, path, token string) []string {
	tb.Helper()
	req, err := http.NewRequest(http.MethodGet, tg.url+path, nil)
	require.NoError(tb, err)
	req.Header.Set("challenge-token", challenge)
	req.Header.Set("Authorization", token)
	resp, err := tg.client.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	require.Equal(tb, http.StatusOK, resp.StatusCode)
	require.True(tb, strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream"))
	var names []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			names = append(names, name)
		}
	}
	require.NoError(tb, sc.Err())
	return names
}
