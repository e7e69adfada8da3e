package forward_test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/edge"
	"github.com/nounsai/sdserver/proxy/internal/forward"
)

// discardWriter is a minimal http.ResponseWriter, so the benchmarks measure
// the proxy and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

func smallBackend(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"id":1,"status":"success"}`))
	}))
	b.Cleanup(srv.Close)
	return srv
}

func runBench(b *testing.B, h http.Handler) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		req := httptest.NewRequest("GET", "/users/1/images?page=1", nil)
		req.Header.Set("challenge-token", "t")
		req.RemoteAddr = "203.0.113.5:4444"
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}
	})
}

// BenchmarkDataPathSmallGET is the full data path (edge guard without rate
// limits, balancer, forwarding, metrics) for a small JSON GET.
func BenchmarkDataPathSmallGET(b *testing.B) {
	srv := smallBackend(b)
	u, _ := url.Parse(srv.URL)
	acct := balancer.NewPool([]*balancer.Upstream{balancer.NewUpstream(0, srv.URL, u)})
	p := forward.New(forward.Config{}, forward.Pools{
		GPU: &balancer.Pool{}, GPUSelector: &balancer.EEFT{},
		Account: acct, AccountSelector: &balancer.LeastConn{},
	}, forward.NewTransport(), forward.NewMetrics(prometheus.NewRegistry(), acct), zap.NewNop())
	runBench(b, edge.NewGuard(edge.Config{ChallengeTokens: []string{"t"}}, nil, p, zap.NewNop()))
}

// BenchmarkBaselineReverseProxy is a bare httputil.ReverseProxy with the
// same transport, for comparison.
func BenchmarkBaselineReverseProxy(b *testing.B) {
	srv := smallBackend(b)
	u, _ := url.Parse(srv.URL)
	rp := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(u); pr.SetXForwarded() },
		Transport: forward.NewTransport(),
	}
	runBench(b, rp)
}
