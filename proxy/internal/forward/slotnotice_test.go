package forward_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
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
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// noticeHost is a one-slot gpusvc stand-in that works in two phases, as
// gpusvc does: the GPU phase holds the slot until the test sends on gpu;
// then, when the request asked for it, the host sends the slot notice, and
// it answers only when the test sends on answer (encoding and storing the
// samples). It reports each arrival's Authorization header.
type noticeHost struct {
	srv      *httptest.Server
	arrivals chan string
	gpu      chan struct{}
	answer   chan struct{}
	asked    atomic.Int64
}

func newNoticeHost(tb testing.TB) *noticeHost {
	tb.Helper()
	h := &noticeHost{arrivals: make(chan string, 8), gpu: make(chan struct{}, 8), answer: make(chan struct{}, 8)}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.arrivals <- r.Header.Get("Authorization")
		wait := func(c chan struct{}) bool {
			select {
			case <-c:
				return true
			case <-r.Context().Done():
				return false
			}
		}
		if !wait(h.gpu) {
			return
		}
		if r.Header.Get(gpuroute.SlotNoticeHeader) != "" {
			h.asked.Add(1)
			w.Header().Set(gpuroute.SlotNoticeHeader, gpuroute.SlotReleased)
			w.WriteHeader(gpuroute.SlotNoticeStatus)
			w.Header().Del(gpuroute.SlotNoticeHeader)
		}
		if !wait(h.answer) {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"images":[]}` + "\n"))
	}))
	tb.Cleanup(h.srv.Close)
	return h
}

// TestSlotNoticeAdmitsTheNextRequestBeforeTheAnswer: with the admission
// queue, a one-slot host's next request is sent when the host says its
// slot is free, not when the previous answer ends; the client never sees
// the notice, and the headers set before it stay on its answer.
func TestSlotNoticeAdmitsTheNextRequestBeforeTheAnswer(t *testing.T) {
	t.Parallel()
	host := newNoticeHost(t)
	up := upstream(t, host.srv.URL)
	up.SetCheck(balancer.CheckResult{At: time.Now(), Slots: 1}, true)
	gpu := balancer.NewPool([]*balancer.Upstream{up})
	account := balancer.NewPool(nil)
	ctl, err := admission.New(admission.Config{MaxWait: 30 * time.Second, JWTSecrets: [][]byte{admissionSecret}},
		admission.Deps{Pool: gpu, Registry: prometheus.NewRegistry()})
	require.NoError(t, err)
	tr := forward.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	p := forward.New(forward.Config{GPUTimeout: 10 * time.Second, Admission: ctl}, forward.Pools{
		GPU: gpu, GPUSelector: &balancer.EEFT{}, Account: account, AccountSelector: &balancer.LeastConn{},
	}, tr, forward.NewMetrics(prometheus.NewRegistry(), gpu, account), zaptest.NewLogger(t))
	// The edge sets CORS headers before the data path, as in the proxy.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		for range 4 {
			host.gpu <- struct{}{}
			host.answer <- struct{}{}
		}
	})

	type result struct {
		status int
		header http.Header
		body   string
		infos  int
	}
	send := func(token string) chan result {
		out := make(chan result, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/images", strings.NewReader(`{"prompt":"a noun","samples":1}`))
			req.Header.Set("Authorization", token)
			req.Header.Set(gpuroute.SlotNoticeHeader, "client-value")
			var infos atomic.Int64
			trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error { infos.Add(1); return nil }}
			resp, err := http.DefaultClient.Do(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
			if err != nil {
				out <- result{status: -1, body: err.Error()}
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			out <- result{status: resp.StatusCode, header: resp.Header, body: string(b), infos: int(infos.Load())}
		}()
		return out
	}
	first, second := tokenFor(t, 1), tokenFor(t, 2)

	a := send(first)
	require.Equal(t, first, <-host.arrivals)
	b := send(second)
	require.Eventually(t, func() bool { return ctl.Snapshot().Waiting == 1 }, 5*time.Second, time.Millisecond,
		"the second request waits at the proxy while the first holds the slot")

	host.gpu <- struct{}{} // the first request's GPU phase ends: notice
	select {
	case got := <-host.arrivals:
		require.Equal(t, second, got)
	case <-time.After(3 * time.Second):
		t.Fatal("the second request was not sent when the host said its slot was free")
	}
	require.EqualValues(t, 1, up.InFlight(), "the first request left the host's load at the notice")

	host.answer <- struct{}{}
	ra := <-a
	require.Equal(t, http.StatusOK, ra.status, ra.body)
	require.Zero(t, ra.infos, "the client never sees the slot notice")
	require.Empty(t, ra.header.Get(gpuroute.SlotNoticeHeader))
	require.Equal(t, "*", ra.header.Get("Access-Control-Allow-Origin"), "headers set before the notice are kept")
	require.Equal(t, "application/json", ra.header.Get("Content-Type"))

	host.gpu <- struct{}{}
	host.answer <- struct{}{}
	rb := <-b
	require.Equal(t, http.StatusOK, rb.status, rb.body)
	require.Zero(t, rb.infos)
	require.Equal(t, "1", rb.header.Get(admission.HeaderPosition), "the queue headers survive the notice")
	require.Equal(t, "*", rb.header.Get("Access-Control-Allow-Origin"))
	require.EqualValues(t, 2, host.asked.Load(), "the proxy asked for the notice")
	require.EqualValues(t, 0, up.InFlight())
	require.Zero(t, ctl.Snapshot().InFlight)
}
