package forward_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/forward"
	"github.com/nounsai/sdserver/shared/auth"
)

var admissionSecret = []byte("forward-admission-test-secret-0123")

// gpuHost is a gpusvc stand-in with slots and no queue: a request beyond
// the slots gets 503 with Retry-After at once (the host is full); the
// others hold their slot until the test releases one, and report the
// caller's Authorization header on arrivals.
type gpuHost struct {
	srv      *httptest.Server
	arrivals chan string
	release  chan struct{}
	inFlight atomic.Int64
}

func newGPUHost(tb testing.TB, slots int64) *gpuHost {
	tb.Helper()
	h := &gpuHost{arrivals: make(chan string, 64), release: make(chan struct{}, 64)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h.inFlight.Add(1) > slots {
			h.inFlight.Add(-1)
			w.Header().Set("Retry-After", "2")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"message":"all slots busy"}` + "\n"))
			return
		}
		defer h.inFlight.Add(-1)
		h.arrivals <- r.Header.Get("Authorization")
		select {
		case <-h.release:
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"images":[]}` + "\n"))
	}))
	tb.Cleanup(h.srv.Close)
	return h
}

// stop lets every held request finish; register it with Cleanup after the
// proxy, so that it runs before the proxy's server waits for them.
func (h *gpuHost) stop() { close(h.release) }

// admissionProxy fronts host (which reported slots) with admission cfg;
// ctl is nil-able to compare with the data path without admission.
func admissionProxy(tb testing.TB, host *gpuHost, slots int64, cfg admission.Config, withAdmission bool) (*httptest.Server, *admission.Controller) {
	tb.Helper()
	up := upstream(tb, host.srv.URL)
	up.SetCheck(balancer.CheckResult{At: time.Now(), Slots: slots}, true)
	// As if it had finished a request: one work unit per second.
	start := time.Now()
	up.Start(1, start).Done(start.Add(time.Second), true)
	gpu := balancer.NewPool([]*balancer.Upstream{up})
	account := balancer.NewPool(nil)
	cfg.JWTSecrets = [][]byte{admissionSecret}
	ctl, err := admission.New(cfg, admission.Deps{Pool: gpu, Registry: prometheus.NewRegistry()})
	require.NoError(tb, err)
	fcfg := forward.Config{GPUTimeout: 10 * time.Second}
	if withAdmission {
		fcfg.Admission = ctl
	}
	tr := forward.NewTransport()
	tb.Cleanup(tr.CloseIdleConnections)
	p := forward.New(fcfg, forward.Pools{
		GPU: gpu, GPUSelector: &balancer.EEFT{}, Account: account, AccountSelector: &balancer.LeastConn{},
	}, tr, forward.NewMetrics(prometheus.NewRegistry(), gpu, account), zaptest.NewLogger(tb))
	srv := httptest.NewServer(p)
	tb.Cleanup(srv.Close)
	tb.Cleanup(host.stop)
	return srv, ctl
}

func tokenFor(tb testing.TB, id int64) string {
	tb.Helper()
	tok, _, err := auth.Issue(admissionSecret, id, 0, time.Hour, time.Now())
	require.NoError(tb, err)
	return tok
}

// answer is one client's response.
type answer struct {
	token  string
	status int
	header http.Header
	body   string
	took   time.Duration
}

func postImage(tb testing.TB, url, token string) answer {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url+"/images", strings.NewReader(`{"prompt":"a noun","samples":1}`))
	require.NoError(tb, err)
	req.Header.Set("Authorization", token)
	began := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return answer{token: token, status: resp.StatusCode, header: resp.Header, body: string(b), took: time.Since(began)}
}

func TestLightUserServedNextWhileHeavyUserFloods(t *testing.T) {
	t.Parallel()
	host := newGPUHost(t, 2)
	srv, ctl := admissionProxy(t, host, 2, admission.Config{MaxWait: 30 * time.Second}, true)
	heavy, light := tokenFor(t, 1), tokenFor(t, 2)

	answers := make(chan answer, 8)
	send := func(tok string) { go func() { answers <- postImage(t, srv.URL, tok) }() }
	// The heavy user fills both slots, then queues four more.
	for range 2 {
		send(heavy)
		require.Equal(t, heavy, <-host.arrivals)
	}
	for i := range 4 {
		send(heavy)
		require.Eventually(t, func() bool { return ctl.Snapshot().Waiting == i+1 }, 5*time.Second, time.Millisecond,
			"the heavy user's request %d waits at the proxy (the host is full)", i+3)
	}
	send(light)
	require.Eventually(t, func() bool { return ctl.Snapshot().Waiting == 5 }, 5*time.Second, time.Millisecond)

	host.release <- struct{}{}
	require.Equal(t, light, <-host.arrivals, "the freed slot goes to the light user, not the heavy backlog")
	host.release <- struct{}{}
	require.Equal(t, heavy, <-host.arrivals)

	for range 5 {
		host.release <- struct{}{}
	}
	for range 7 {
		a := <-answers
		require.Equal(t, http.StatusOK, a.status, a.body)
		if a.token == light {
			require.Equal(t, "1", a.header.Get(admission.HeaderPosition), "the light user was told it is next")
			require.NotEmpty(t, a.header.Get(admission.HeaderEstimatedStart))
		}
	}
}

func TestDeadlinePastEstimateAnswers503AtOnce(t *testing.T) {
	t.Parallel()
	host := newGPUHost(t, 1)
	// One slot at a learned 1 s per unit; a 1-sample 768×768 image is
	// 2.25 units, so the next request would start in about 1.1 s.
	srv, _ := admissionProxy(t, host, 1, admission.Config{MaxWait: 500 * time.Millisecond}, true)
	tok := tokenFor(t, 1)
	go postImage(t, srv.URL, tok)
	<-host.arrivals
	time.Sleep(10 * time.Millisecond) // the proxy's clock moves past the start

	a := postImage(t, srv.URL, tok)
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	require.Less(t, a.took, 200*time.Millisecond, "refused at once, not after waiting")
	require.Equal(t, "application/json", a.header.Get("Content-Type"))
	require.Contains(t, a.body, `"message":"GPU fleet busy: estimated start in 1.2 s is past the 0.5 s wait limit`)
	require.Equal(t, "1", a.header.Get("Retry-After"))
	require.Equal(t, "1", a.header.Get(admission.HeaderPosition))
	require.Equal(t, "1.2", a.header.Get(admission.HeaderEstimatedStart))
	host.release <- struct{}{}
}
