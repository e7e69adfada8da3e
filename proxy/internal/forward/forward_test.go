package forward_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/forward"
)

// echoed is what the echo backend reports about the request it got.
type echoed struct {
	Backend string              `json:"backend"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Query   string              `json:"query"`
	Host    string              `json:"host"`
	Header  map[string][]string `json:"header"`
	Length  int64               `json:"length"`
	SHA256  string              `json:"sha256"`
}

// echoBackend answers every request with a description of it; the body is
// hashed while streaming, never held.
func echoBackend(tb testing.TB, name string) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, _ := io.Copy(h, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "must not reach the client")
		_ = json.NewEncoder(w).Encode(echoed{
			Backend: name, Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Host: r.Host,
			Header: r.Header, Length: n, SHA256: hex.EncodeToString(h.Sum(nil)),
		})
	}))
	tb.Cleanup(srv.Close)
	return srv
}

func upstream(tb testing.TB, addr string) *balancer.Upstream {
	tb.Helper()
	u, err := url.Parse(addr)
	require.NoError(tb, err)
	return balancer.NewUpstream(0, addr, u)
}

// deadAddr returns an address nothing listens on (listen, then close).
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	addr := "http://" + ln.Addr().String()
	require.NoError(tb, ln.Close())
	return addr
}

type fixture struct {
	proxy   *httptest.Server
	gpu     *balancer.Pool
	account *balancer.Pool
}

func newFixture(tb testing.TB, cfg forward.Config, gpu, account []string) fixture {
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
	tb.Cleanup(tr.CloseIdleConnections)
	p := forward.New(cfg, forward.Pools{
		GPU: f.gpu, GPUSelector: &balancer.EEFT{},
		Account: f.account, AccountSelector: &balancer.LeastConn{},
	}, tr, forward.NewMetrics(prometheus.NewRegistry(), f.gpu, f.account), zaptest.NewLogger(tb))
	f.proxy = httptest.NewServer(p)
	tb.Cleanup(f.proxy.Close)
	return f
}

func do(tb testing.TB, method, url string, body io.Reader, hdr map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	require.NoError(tb, err)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp, b
}

func decodeEcho(tb testing.TB, b []byte) echoed {
	tb.Helper()
	var e echoed
	require.NoError(tb, json.Unmarshal(b, &e), string(b))
	return e
}

func TestEveryMethodAndHeaders(t *testing.T) {
	t.Parallel()
	acct := echoBackend(t, "account")
	gpu := echoBackend(t, "gpu")
	f := newFixture(t, forward.Config{}, []string{gpu.URL}, []string{acct.URL})

	for _, method := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		resp, b := do(t, method, f.proxy.URL+"/users/7/images?page=2", strings.NewReader(`{"a":1}`), map[string]string{
			"Connection":      "X-Secret-Hop, Keep-Alive",
			"X-Secret-Hop":    "1",
			"Keep-Alive":      "timeout=5",
			"X-Forwarded-For": "6.6.6.6",
			"Authorization":   "jwt",
		})
		require.Equal(t, http.StatusOK, resp.StatusCode, method)
		e := decodeEcho(t, b)
		require.Equal(t, "account", e.Backend)
		require.Equal(t, method, e.Method)
		require.Equal(t, "/users/7/images", e.Path)
		require.Equal(t, "page=2", e.Query)
		require.Equal(t, strings.TrimPrefix(acct.URL, "http://"), e.Host, "Host is the upstream's")
		require.EqualValues(t, 7, e.Length)
		require.NotContains(t, e.Header, "X-Secret-Hop")
		require.NotContains(t, e.Header, "Keep-Alive")
		require.Equal(t, []string{"jwt"}, e.Header["Authorization"])
		// The test client is not a trusted proxy, so its X-Forwarded-For
		// is replaced by its own address.
		require.Equal(t, []string{"127.0.0.1"}, e.Header["X-Forwarded-For"])
		require.Equal(t, []string{"http"}, e.Header["X-Forwarded-Proto"])
		require.Len(t, e.Header["X-Request-Id"], 1)
		require.Equal(t, e.Header["X-Request-Id"][0], resp.Header.Get("X-Request-ID"))
		require.Empty(t, resp.Header.Get("X-Hop"), "hop-by-hop response headers are removed")
	}

	// GPU routes go to the GPU pool, and a client request ID is kept.
	resp, b := do(t, "POST", f.proxy.URL+"/images", strings.NewReader(`{"inference_mode":"Text to Image"}`),
		map[string]string{"X-Request-ID": "abc-123"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	e := decodeEcho(t, b)
	require.Equal(t, "gpu", e.Backend)
	require.Equal(t, []string{"abc-123"}, e.Header["X-Request-Id"])
	require.Equal(t, "abc-123", resp.Header.Get("X-Request-ID"))
	// GET /images (the library) is not a GPU route.
	_, b = do(t, "GET", f.proxy.URL+"/images", nil, nil)
	require.Equal(t, "account", decodeEcho(t, b).Backend)
}

func TestTrustedProxyChain(t *testing.T) {
	t.Parallel()
	acct := echoBackend(t, "account")
	f := newFixture(t, forward.Config{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}, nil, []string{acct.URL})
	_, b := do(t, "GET", f.proxy.URL+"/x", nil, map[string]string{"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https"})
	e := decodeEcho(t, b)
	require.Equal(t, []string{"203.0.113.9, 127.0.0.1"}, e.Header["X-Forwarded-For"])
	require.Equal(t, []string{"https"}, e.Header["X-Forwarded-Proto"])
}

func randomBytes(tb testing.TB, n int) []byte {
	tb.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(tb, err)
	return b
}

func sum(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

func TestLargeBodiesPassIntact(t *testing.T) {
	t.Parallel()
	acct := echoBackend(t, "account")
	gpu := echoBackend(t, "gpu")
	f := newFixture(t, forward.Config{BodyLimit: 5 << 20}, []string{gpu.URL}, []string{acct.URL})

	// A 5 MB multipart upload, streamed to the account pool.
	var mp bytes.Buffer
	mw := multipart.NewWriter(&mp)
	part, err := mw.CreateFormFile("file", "clip.mp4")
	require.NoError(t, err)
	_, err = part.Write(randomBytes(t, 5_000_000))
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	payload := mp.Bytes()
	resp, b := do(t, "POST", f.proxy.URL+"/users/1/videos", bytes.NewReader(payload), map[string]string{"Content-Type": mw.FormDataContentType()})
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	e := decodeEcho(t, b)
	require.Equal(t, sum(payload), e.SHA256)
	require.Equal(t, []string{mw.FormDataContentType()}, e.Header["Content-Type"])

	// A 5 MB JSON body to a GPU route (buffered for the work estimate).
	img := hex.EncodeToString(randomBytes(t, 2_500_000))
	jsonBody := []byte(`{"inference_mode":"Image to Image","samples":1,"steps":20,"base_64":"` + img + `"}`)
	resp, b = do(t, "POST", f.proxy.URL+"/images", bytes.NewReader(jsonBody), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	e = decodeEcho(t, b)
	require.Equal(t, "gpu", e.Backend)
	require.Equal(t, sum(jsonBody), e.SHA256)

	// Over the limit: 413 with the legacy body, for both kinds of route.
	big := bytes.Repeat([]byte("x"), 5<<20+1)
	for _, path := range []string{"/images", "/users/1/videos"} {
		resp, b = do(t, "POST", f.proxy.URL+path, bytes.NewReader(big), nil)
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, path)
		require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, string(b))
	}
	// Also when the client streams without Content-Length, for both kinds
	// of route (a GPU body is streamed on after its prefix).
	for _, path := range []string{"/images", "/users/1/videos"} {
		resp, b = do(t, "POST", f.proxy.URL+path, io.MultiReader(bytes.NewReader(big)), map[string]string{"Transfer-Encoding": "chunked"})
		require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, path+": "+string(b))
		require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, string(b))
	}
	// A chunked GPU body within the limit arrives whole, small or large.
	for _, body := range [][]byte{[]byte(`{"samples":1}`), jsonBody} {
		resp, b = do(t, "POST", f.proxy.URL+"/images", io.MultiReader(bytes.NewReader(body)), map[string]string{"Transfer-Encoding": "chunked"})
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
		require.Equal(t, sum(body), decodeEcho(t, b).SHA256)
	}
	// A GPU body over the limit is refused even when the prefix is larger
	// than the limit.
	small := newFixture(t, forward.Config{BodyLimit: 100}, []string{gpu.URL}, nil)
	resp, b = do(t, "POST", small.proxy.URL+"/images", io.MultiReader(bytes.NewReader(big[:1000])), map[string]string{"Transfer-Encoding": "chunked"})
	require.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, string(b))
}

// TestLargeGPUBodyEstimateAndRetry checks that a GPU body longer than the
// prefix is estimated from the fields at its start, is still retried on
// another host after a dial error (nothing was sent), and is not retried once
// a host has read it.
func TestLargeGPUBodyEstimateAndRetry(t *testing.T) {
	t.Parallel()
	img := hex.EncodeToString(randomBytes(t, 200_000))
	body := []byte(`{"inference_mode":"Text to Image","samples":2,"steps":50,"aspect_ratio":"512:512","base_64":"` + img + `"}`)

	// The estimate is in the host's outstanding work while the request runs.
	seen := make(chan float64, 1)
	var up *balancer.Upstream
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		seen <- up.Outstanding()
	}))
	t.Cleanup(slow.Close)
	f := newFixture(t, forward.Config{}, []string{slow.URL}, nil)
	up = f.gpu.Hosts()[0]
	resp, b := do(t, "POST", f.proxy.URL+"/images", bytes.NewReader(body), nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.InDelta(t, 2*2, <-seen, 1e-9, "samples × steps/25 × (512×512)/(512×512)")

	// A dial error: retried on the live host, which gets the whole body,
	// with and without Content-Length.
	live := echoBackend(t, "live")
	f = newFixture(t, forward.Config{}, []string{deadAddr(t), live.URL}, nil)
	for range 3 {
		for _, hdr := range []map[string]string{nil, {"Transfer-Encoding": "chunked"}} {
			resp, b = do(t, "POST", f.proxy.URL+"/images", io.MultiReader(bytes.NewReader(body)), hdr)
			require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
			e := decodeEcho(t, b)
			require.Equal(t, "live", e.Backend)
			require.Equal(t, sum(body), e.SHA256)
		}
	}
	require.Positive(t, f.gpu.Hosts()[0].Status(time.Now()).Failures, "the dead host was tried")

	// A host that read the body and dropped the connection: 502, no retry.
	var dropped atomic.Int64
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(dropper.Close)
	f = newFixture(t, forward.Config{}, []string{dropper.URL, dropper.URL + "/"}, nil)
	resp, b = do(t, "POST", f.proxy.URL+"/images", bytes.NewReader(body), nil)
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.JSONEq(t, `{"message":"upstream host failed"}`, string(b))
	require.EqualValues(t, 1, dropped.Load())
}

func TestDialErrorRetriesOnAnotherHost(t *testing.T) {
	t.Parallel()
	live := echoBackend(t, "live")
	dead := deadAddr(t)
	f := newFixture(t, forward.Config{}, []string{dead, live.URL}, []string{dead, live.URL})

	for i := range 6 {
		// Non-idempotent POSTs, streamed and buffered: a dial error proves
		// the request never reached a backend.
		for _, path := range []string{"/images", "/users/1/links"} {
			resp, b := do(t, "POST", f.proxy.URL+path, strings.NewReader(`{"samples":1}`), nil)
			require.Equal(t, http.StatusOK, resp.StatusCode, "round %d %s: %s", i, path, b)
			require.Equal(t, "live", decodeEcho(t, b).Backend)
		}
	}
	for _, p := range []*balancer.Pool{f.gpu, f.account} {
		st := p.Hosts()[0].Status(time.Now())
		require.Equal(t, "ejected", st.State)
		require.Positive(t, st.Failures)
	}
}

func TestUpstreamErrors(t *testing.T) {
	t.Parallel()
	var calls atomic.Int64
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	// A backend that reads the request and drops the connection.
	var dropped atomic.Int64
	dropper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	}))
	t.Cleanup(dropper.Close)

	// Timeout → 504 JSON.
	f := newFixture(t, forward.Config{UpstreamTimeout: 200 * time.Millisecond}, nil, []string{slow.URL})
	resp, b := do(t, "GET", f.proxy.URL+"/slow", nil, nil)
	require.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
	require.JSONEq(t, `{"message":"upstream host timed out"}`, string(b))
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	// A POST that reached a backend is not retried: 502 JSON.
	f = newFixture(t, forward.Config{}, nil, []string{dropper.URL, dropper.URL + "/"})
	resp, b = do(t, "POST", f.proxy.URL+"/users/1/links", strings.NewReader(`{}`), nil)
	require.Equal(t, http.StatusBadGateway, resp.StatusCode)
	require.JSONEq(t, `{"message":"upstream host failed"}`, string(b))
	require.EqualValues(t, 1, dropped.Load())

	// An idempotent GET is retried on the other host.
	live := echoBackend(t, "live")
	f = newFixture(t, forward.Config{}, nil, []string{dropper.URL, live.URL})
	for range 4 {
		resp, b = do(t, "DELETE", f.proxy.URL+"/users/1/links/3", nil, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	}

	// No available host → 503 with Retry-After.
	f = newFixture(t, forward.Config{RetryAfter: 3 * time.Second}, nil, nil)
	resp, b = do(t, "GET", f.proxy.URL+"/x", nil, nil)
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	require.Equal(t, "3", resp.Header.Get("Retry-After"))
	require.JSONEq(t, `{"message":"no healthy upstream host, retry later"}`, string(b))
}

func TestClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	cancelled := make(chan struct{})
	started := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A server notices a closed connection only once the body is read.
		_, _ = io.Copy(io.Discard, r.Body)
		close(started)
		select {
		case <-r.Context().Done():
			close(cancelled)
		case <-time.After(10 * time.Second):
		}
	}))
	t.Cleanup(backend.Close)
	f := newFixture(t, forward.Config{}, []string{backend.URL}, nil)

	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "POST", f.proxy.URL+"/images", strings.NewReader(`{}`))
	require.NoError(t, err)
	go func() {
		<-started
		cancel()
	}()
	_, err = http.DefaultClient.Do(req)
	require.Error(t, err)
	select {
	case <-cancelled:
	case <-time.After(3 * time.Second):
		t.Fatal("upstream request was not cancelled")
	}
	up := f.gpu.Hosts()[0]
	require.Eventually(t, func() bool { return up.InFlight() == 0 }, time.Second, 5*time.Millisecond)
	require.Zero(t, up.Status(time.Now()).Failures, "a client disconnect does not count against the host")
}

// TestEventStreamFlushesAndOutlivesUpstreamTimeout checks that a
// Server-Sent Events response reaches the client event by event, and that
// the stream may last longer than the ordinary upstream timeout.
func TestEventStreamFlushesAndOutlivesUpstreamTimeout(t *testing.T) {
	t.Parallel()
	second := make(chan struct{})
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "event: snapshot\ndata: {}\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-second: // the client saw the first event before this one exists
		case <-r.Context().Done():
			return
		}
		time.Sleep(300 * time.Millisecond) // beyond UpstreamTimeout
		_, _ = io.WriteString(w, "event: done\ndata: {}\n\n")
	}))
	t.Cleanup(backend.Close)
	f := newFixture(t, forward.Config{UpstreamTimeout: 100 * time.Millisecond}, nil, []string{backend.URL})

	req, err := http.NewRequest(http.MethodGet, f.proxy.URL+"/v1/jobs/x/events", nil)
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	buf := make([]byte, 64)
	n, err := resp.Body.Read(buf)
	require.NoError(t, err)
	require.Contains(t, string(buf[:n]), "event: snapshot")
	close(second)
	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Contains(t, string(rest), "event: done")
}

// TestResponseHeadersMerge checks that the upstream's response headers reach
// the client whole, appended to those an outer handler set.
func TestResponseHeadersMerge(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Accept-Encoding")
		h.Add("Set-Cookie", "a=1")
		h.Add("Set-Cookie", "b=2")
		h.Set("X-Request-ID", "upstream's own")
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(backend.Close)
	acct := balancer.NewPool([]*balancer.Upstream{upstream(t, backend.URL)})
	tr := forward.NewTransport()
	t.Cleanup(tr.CloseIdleConnections)
	p := forward.New(forward.Config{}, forward.Pools{
		GPU: &balancer.Pool{}, GPUSelector: &balancer.EEFT{},
		Account: acct, AccountSelector: &balancer.LeastConn{},
	}, tr, nil, zaptest.NewLogger(t))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Vary", "Origin")
		p.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	resp, b := do(t, "GET", srv.URL+"/x", nil, map[string]string{"X-Request-ID": "client-id"})
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, `{}`, string(b))
	require.Equal(t, []string{"Origin", "Accept-Encoding"}, resp.Header["Vary"])
	require.Equal(t, []string{"a=1", "b=2"}, resp.Header["Set-Cookie"])
	require.Equal(t, []string{"client-id"}, resp.Header["X-Request-Id"])
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))
}

// TestRouteClasses: the GPU routes (POST) and GET /models go to the GPU
// pool, everything else to the account pool.
func TestRouteClasses(t *testing.T) {
	t.Parallel()
	gpu, account := echoBackend(t, "gpu"), echoBackend(t, "account")
	f := newFixture(t, forward.Config{}, []string{gpu.URL}, []string{account.URL})
	tests := []struct{ method, path, want string }{
		{"POST", "/images", "gpu"},
		{"POST", "/mask", "gpu"},
		{"POST", "/v1/images/generations", "gpu"},
		{"GET", "/models", "gpu"},
		{"GET", "/images", "account"},
		{"POST", "/models", "account"},
		{"GET", "/users/1", "account"},
		{"GET", "/v1/jobs/x", "account"},
	}
	for _, tt := range tests {
		resp, body := do(t, tt.method, f.proxy.URL+tt.path, strings.NewReader(`{}`), nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s %s", tt.method, tt.path)
		require.Equal(t, tt.want, decodeEcho(t, body).Backend, "%s %s", tt.method, tt.path)
	}
}
