package forward_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/forward"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// timeoutDialer wraps a transport's dialer so that dials to the host:port
// blackholed fail as a dial to a blackholed host does: with a
// *net.OpError{Op: "dial"} wrapping "i/o timeout", which also matches
// context.DeadlineExceeded. A real net.Dialer produces the error, on a
// context whose deadline has already passed, so no packet is sent. With
// hang set, the dial instead blocks until the request's own deadline.
func timeoutDialer(tr *http.Transport, blackholed string, hang bool) {
	base := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != blackholed {
			return base(ctx, network, addr)
		}
		if hang {
			<-ctx.Done()
		} else {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, time.Nanosecond)
			defer cancel()
			<-ctx.Done()
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}
}

// newDialFixture is newFixture with a transport whose dials to blackholed
// time out.
func newDialFixture(tb testing.TB, cfg forward.Config, blackholed string, hang bool, gpu, account []string) fixture {
	tb.Helper()
	mk := func(addrs []string) *balancer.Pool {
		var ups []*balancer.Upstream
		for _, a := range addrs {
			ups = append(ups, upstream(tb, a))
		}
		return balancer.NewPool(ups)
	}
	f := fixture{gpu: mk(gpu), account: mk(account)}
	tr := forward.NewTransport()
	timeoutDialer(tr, strings.TrimPrefix(blackholed, "http://"), hang)
	tb.Cleanup(tr.CloseIdleConnections)
	p := forward.New(cfg, forward.Pools{
		GPU: f.gpu, GPUSelector: &balancer.EEFT{},
		Account: f.account, AccountSelector: &balancer.LeastConn{},
	}, tr, forward.NewMetrics(prometheus.NewRegistry(), f.gpu, f.account), zaptest.NewLogger(tb))
	f.proxy = httptest.NewServer(p)
	tb.Cleanup(f.proxy.Close)
	return f
}

// TestDialTimeoutRetriesOnAnotherHost checks that a dial timeout (a
// blackholed host) is a dial error like ECONNREFUSED: the request provably
// never reached a backend, so even a POST goes to another host, and 504 is
// answered only when the request's own deadline passed.
func TestDialTimeoutRetriesOnAnotherHost(t *testing.T) {
	t.Parallel()
	// The error the fixture's dialer returns is the one in the defect.
	ctx, cancel := context.WithTimeout(context.Background(), time.Nanosecond)
	<-ctx.Done()
	_, err := (&net.Dialer{}).DialContext(ctx, "tcp", "127.0.0.1:1")
	cancel()
	var op *net.OpError
	require.ErrorAs(t, err, &op)
	require.Equal(t, "dial", op.Op)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	live := echoBackend(t, "live")
	blackholed := deadAddr(t)
	f := newDialFixture(t, forward.Config{}, blackholed, false, []string{blackholed, live.URL}, []string{blackholed, live.URL})
	for i := range 4 {
		for _, path := range []string{"/images", "/users/1/links"} {
			resp, b := do(t, "POST", f.proxy.URL+path, strings.NewReader(`{"samples":1}`), nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "round %d %s: %s", i, path, b)
			require.Equal(t, "live", decodeEcho(t, b).Backend)
		}
	}
	for _, p := range []*balancer.Pool{f.gpu, f.account} {
		st := p.Hosts()[0].Status(time.Now())
		require.Positive(t, st.Failures, "the blackholed host was tried")
		require.Equal(t, "ejected", st.State)
	}

	// A dial that outlasts the request's own deadline: 504, no retry.
	f = newDialFixture(t, forward.Config{UpstreamTimeout: 100 * time.Millisecond}, blackholed, true, nil, []string{blackholed})
	resp, b := do(t, "POST", f.proxy.URL+"/users/1/links", strings.NewReader(`{}`), nil)
	require.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, string(b))
	require.JSONEq(t, `{"message":"upstream host timed out"}`, string(b))
}

// TestLearnsOnlyFromGPUWork checks that a host's speed is learned from 2xx
// answers of the synchronous GPU routes only: neither a fast error answer
// nor the 202 of a queued job did any GPU work.
func TestLearnsOnlyFromGPUWork(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		time.Sleep(5 * time.Millisecond)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(status.Load()))
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(backend.Close)
	f := newFixture(t, forward.Config{}, []string{backend.URL}, nil)
	up := f.gpu.Hosts()[0]

	for _, tc := range []struct {
		path   string
		status int
	}{
		{"/images", http.StatusBadRequest},
		{"/images", http.StatusUnauthorized},
		{"/images", http.StatusPaymentRequired},
		{"/upscale", http.StatusTooManyRequests},
		{"/v1/images/generations", http.StatusAccepted},
		{"/v1/images/generations", http.StatusOK},
	} {
		status.Store(int64(tc.status))
		resp, _ := do(t, "POST", f.proxy.URL+tc.path, strings.NewReader(`{"samples":1}`), nil)
		require.Equal(t, tc.status, resp.StatusCode)
		require.Zero(t, up.SecPerUnit(), "%s %d must not teach the host's speed", tc.path, tc.status)
		require.Zero(t, up.Status(time.Now()).LatencyEWMA, "%s %d", tc.path, tc.status)
	}

	status.Store(http.StatusOK)
	resp, _ := do(t, "POST", f.proxy.URL+"/images", strings.NewReader(`{"samples":1}`), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Positive(t, up.SecPerUnit(), "a generation that succeeded teaches the speed")
}

// TestPassiveHealthCountsOnlyHostFaults checks which 5xx answers count
// against a host: a 500 and a bare 502/503/504 (an intermediary's error page)
// do, three in a row eject the host; a 501, a 503 with Retry-After (the host
// is full) and a service's own JSON 502/503/504 (one of its dependencies
// failed) do not.
func TestPassiveHealthCountsOnlyHostFaults(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		status int
		ct     string
		ra     string
		counts bool
	}{
		{"500 json", 500, "application/json", "", true},
		{"bare 502", 502, "text/html", "", true},
		{"bare 503", 503, "text/html", "", true},
		{"bare 504", 504, "", "", true},
		{"501 not offered", 501, "application/json", "", false},
		{"503 full with Retry-After", 503, "application/json", "3", false},
		{"bare 503 with Retry-After", 503, "text/plain", "3", false},
		{"json 502 from the storage backend", 502, "application/json; charset=utf-8", "", false},
		{"json 503", 503, "application/json", "", false},
		{"json 504", 504, "application/json", "", false},
	} {
		var hits atomic.Int64
		bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if tc.ct != "" {
				w.Header().Set("Content-Type", tc.ct)
			}
			if tc.ra != "" {
				w.Header().Set("Retry-After", tc.ra)
			}
			w.WriteHeader(tc.status)
			_, _ = io.WriteString(w, `{"message":"x"}`)
		}))
		t.Cleanup(bad.Close)
		live := echoBackend(t, "live")
		f := newFixture(t, forward.Config{}, nil, []string{bad.URL, live.URL})
		for i := 0; i < 40 && hits.Load() < 3; i++ {
			resp, _ := do(t, "POST", f.proxy.URL+"/users/1/links", strings.NewReader(`{}`), nil)
			require.Contains(t, []int{tc.status, http.StatusOK}, resp.StatusCode, tc.name)
		}
		require.EqualValues(t, 3, hits.Load(), tc.name)
		st := f.account.Hosts()[0].Status(time.Now())
		if tc.counts {
			require.Equal(t, "ejected", st.State, tc.name)
			require.EqualValues(t, 3, st.Errors5xx, tc.name)
		} else {
			require.Equal(t, "up", st.State, tc.name)
			require.Zero(t, st.Failures, tc.name)
			require.Zero(t, st.ConsecFails, tc.name)
		}
	}
}

// TestLastHostNotEjectedFor5xx checks that a pool's last available host is
// never ejected for its 5xx answers: that would only turn them, and every
// request that would have succeeded, into 503 "no healthy upstream".
func TestLastHostNotEjectedFor5xx(t *testing.T) {
	t.Parallel()
	var fail atomic.Bool
	fail.Store(true)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if fail.Load() {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = io.WriteString(w, `{"message":"Internal server error"}`)
			return
		}
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(backend.Close)
	f := newFixture(t, forward.Config{}, []string{backend.URL}, []string{backend.URL})
	for _, path := range []string{"/users/1", "/images"} {
		for range 5 {
			resp, b := do(t, "POST", f.proxy.URL+path, strings.NewReader(`{}`), nil)
			require.Equal(t, http.StatusInternalServerError, resp.StatusCode, path)
			require.JSONEq(t, `{"message":"Internal server error"}`, string(b))
		}
	}
	fail.Store(false)
	for _, p := range []*balancer.Pool{f.account, f.gpu} {
		st := p.Hosts()[0].Status(time.Now())
		require.Equal(t, "up", st.State)
		require.EqualValues(t, 5, st.Errors5xx, "the failures are still counted")
	}
	resp, _ := do(t, "GET", f.proxy.URL+"/users/1", nil, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

// fullBackend answers every request like a GPU host whose slots and queue
// are full, counting the requests.
func fullBackend(tb testing.TB, calls *atomic.Int64) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Retry-After", "3")
		w.Header().Set(gpuroute.HostFullHeader, "1")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"message":"The GPU host is busy, try again later"}`)
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func TestHostFullTriesAnotherHost(t *testing.T) {
	t.Parallel()
	var fullCalls atomic.Int64
	full := fullBackend(t, &fullCalls)
	live := echoBackend(t, "live")
	f := newFixture(t, forward.Config{}, []string{full.URL, live.URL}, nil)
	body := `{"inference_mode":"Text to Image","samples":1}`
	for i := range 6 {
		resp, b := do(t, "POST", f.proxy.URL+"/images", strings.NewReader(body), nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "round %d: %s", i, b)
		e := decodeEcho(t, b)
		require.Equal(t, "live", e.Backend)
		require.Equal(t, sum([]byte(body)), e.SHA256, "the other host got the whole body")
	}
	require.Positive(t, fullCalls.Load(), "the full host was tried")
	st := f.gpu.Hosts()[0].Status(time.Now())
	require.Equal(t, "up", st.State, "a full host is busy, not broken")
	require.Zero(t, st.Failures)
}

func TestHostFullEverywhereAnswers503(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	a, b := fullBackend(t, &calls), fullBackend(t, &calls)
	f := newFixture(t, forward.Config{}, []string{a.URL, b.URL}, nil)
	resp, body := do(t, "POST", f.proxy.URL+"/images", strings.NewReader(`{"samples":1}`), nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, string(body))
	require.Equal(t, "3", resp.Header.Get("Retry-After"))
	require.Empty(t, resp.Header.Get(gpuroute.HostFullHeader), "the hint is for the proxy only")
	require.JSONEq(t, `{"message":"The GPU host is busy, try again later"}`, string(body))
	require.EqualValues(t, 2, calls.Load(), "each host once")

	// Without the header a 503 is the host's answer: passed on, not retried.
	calls.Store(0)
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Retry-After", "1")
		http.Error(w, `{"message":"busy"}`, http.StatusServiceUnavailable)
	}))
	t.Cleanup(plain.Close)
	live := echoBackend(t, "live")
	f = newFixture(t, forward.Config{}, []string{plain.URL, live.URL}, nil)
	for range 4 {
		resp, _ = do(t, "POST", f.proxy.URL+"/images", strings.NewReader(`{"samples":1}`), nil)
		if resp.StatusCode == http.StatusServiceUnavailable {
			break
		}
	}
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.EqualValues(t, 1, calls.Load())
}
