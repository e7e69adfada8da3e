package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

const token = "test-challenge-token"

// gpuBackend is a fake gpusvc: one slot, a FIFO queue, a per-unit-of-work
// sleep divided by its speed, and /health reporting slots, in_flight and
// queued like gpusvc does. It can be killed (every connection dropped) and
// restarted on the same address.
type gpuBackend struct {
	name    string
	speed   float64
	perUnit time.Duration

	addr     string
	slot     chan struct{}
	inFlight atomic.Int64
	queued   atomic.Int64
	served   atomic.Int64

	mu  sync.Mutex
	srv *http.Server
}

func newGPUBackend(tb testing.TB, name string, speed float64, perUnit time.Duration) *gpuBackend {
	tb.Helper()
	b := &gpuBackend{name: name, speed: speed, perUnit: perUnit, slot: make(chan struct{}, 1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	b.addr = ln.Addr().String()
	b.serve(ln)
	tb.Cleanup(b.kill)
	return b
}

func (b *gpuBackend) URL() string { return "http://" + b.addr }

func (b *gpuBackend) serve(ln net.Listener) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"message": "API is up and running!", "slots": 1, "in_flight": b.inFlight.Load(),
			"queued": b.queued.Load(), "backend": "fake", "models": []string{},
		})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		work := balancer.EstimatePrefix(gpuroute.Lookup(r.Method, r.URL.Path), body, true)
		if r.URL.Path == "/slow" || strings.Contains(string(body), `"slow"`) {
			work = 1 / b.perUnit.Seconds() // one second at speed 1
		}
		b.queued.Add(1)
		select {
		case b.slot <- struct{}{}:
		case <-r.Context().Done():
			b.queued.Add(-1)
			return
		}
		b.queued.Add(-1)
		b.inFlight.Add(1)
		time.Sleep(time.Duration(work / b.speed * float64(b.perUnit)))
		b.inFlight.Add(-1)
		<-b.slot
		b.served.Add(1)
		w.Header().Set("Content-Type", "application/json")
		_, _ = fmt.Fprintf(w, `{"backend":%q,"method":%q,"bytes":%d}`, b.name, r.Method, len(body))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// kill drops the listener and every connection at once, like kill -9.
func (b *gpuBackend) kill() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.srv != nil {
		_ = b.srv.Close()
		b.srv = nil
	}
}

// restart listens on the same address again.
func (b *gpuBackend) restart(tb testing.TB) {
	tb.Helper()
	var ln net.Listener
	require.Eventually(tb, func() bool {
		var err error
		ln, err = net.Listen("tcp", b.addr)
		return err == nil
	}, 2*time.Second, 10*time.Millisecond)
	b.serve(ln)
}

type proxyFixture struct {
	url     string
	metrics string // the internal metrics listener's base URL
	db      *pgxpool.Pool
	app     *app.App
}

func testConfig(account string) app.Config {
	cfg := app.Config{
		Common: config.LoadCommon(config.FromMap(map[string]string{"CHALLENGE_TOKEN": token}), "127.0.0.1:0"),
	}
	cfg.AccountURLs = []string{account}
	cfg.Policy = balancer.PolicyEEFT
	cfg.HealthInterval = 500 * time.Millisecond
	cfg.HealthTimeout = 2 * time.Second
	cfg.HealthRise, cfg.HealthFall = 2, 2
	cfg.GPUTimeout = 30 * time.Second
	cfg.UpstreamTimeout = 10 * time.Second
	cfg.HostsReloadInterval = time.Minute
	cfg.ShutdownTimeout = 10 * time.Second
	cfg.MaxConns = 1000
	cfg.ChallengeExempt = []string{"/verify/"}
	cfg.AdminToken = "admin-secret"
	return cfg
}

// startProxy runs the proxy with cfg on :0 against db until the test ends.
func startProxy(tb testing.TB, cfg app.Config, db *pgxpool.Pool) proxyFixture {
	tb.Helper()
	rc, prefix := dbtest.Redis(tb)
	cfg.RedisPrefix = prefix
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	a, err := app.New(cfg, zaptest.NewLogger(tb), app.Deps{DB: db, Redis: rc})
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, mln) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
	return proxyFixture{url: "http://" + ln.Addr().String(), metrics: "http://" + mln.Addr().String(), db: db, app: a}
}

func send(tb testing.TB, method, url, body string, hdr map[string]string) (int, string, http.Header) {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(tb, err)
	req.Header.Set("challenge-token", token)
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return resp.StatusCode, string(b), resp.Header
}

func backendOf(tb testing.TB, body string) string {
	tb.Helper()
	var r struct {
		Backend string `json:"backend"`
	}
	require.NoError(tb, json.Unmarshal([]byte(body), &r), body)
	return r.Backend
}

func exec(tb testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	tb.Helper()
	_, err := db.Exec(context.Background(), sql, args...)
	require.NoError(tb, err)
}

const genBody = `{"inference_mode":"Text to Image","samples":1,"steps":25,"aspect_ratio":"512:512"}`

func TestHostRegistryEndToEnd(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	account := newGPUBackend(t, "account", 1, time.Millisecond)
	a := newGPUBackend(t, "a", 1, time.Millisecond)
	b := newGPUBackend(t, "b", 1, time.Millisecond)
	p := startProxy(t, testConfig(account.URL()), db)

	// No GPU host yet: 503 with Retry-After.
	status, body, hdr := send(t, "POST", p.url+"/images", genBody, nil)
	require.Equal(t, http.StatusServiceUnavailable, status, body)
	require.NotEmpty(t, hdr.Get("Retry-After"))

	// A bare INSERT receives traffic within 1 s.
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, a.URL())
	inserted := time.Now()
	require.Eventually(t, func() bool {
		status, body, _ := send(t, "POST", p.url+"/images", genBody, nil)
		return status == http.StatusOK && backendOf(t, body) == "a"
	}, time.Second, 10*time.Millisecond)
	t.Logf("insert → first request served by it: %s", time.Since(inserted))
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, b.URL())

	for _, change := range []string{
		`UPDATE api_hosts SET draining = true WHERE address = $1`,
		`DELETE FROM api_hosts WHERE address = $1`,
	} {
		// A slow request in flight on a.
		exec(t, db, `DELETE FROM api_hosts WHERE address = $1`, b.URL())
		exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1) ON CONFLICT (address) DO UPDATE SET draining = false`, a.URL())
		require.Eventually(t, func() bool {
			gpu, _ := p.app.Pools()
			return len(gpu.Hosts()) == 1 && gpu.Hosts()[0].Available(time.Now())
		}, time.Second, 5*time.Millisecond)
		slow := make(chan string, 1)
		go func() {
			status, body, _ := send(t, "POST", p.url+"/images", `{"prompt":"slow"}`, nil)
			slow <- fmt.Sprint(status, " ", body)
		}()
		require.Eventually(t, func() bool { return a.inFlight.Load() == 1 }, 2*time.Second, 5*time.Millisecond)
		exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, b.URL())
		exec(t, db, change, a.URL())
		changed := time.Now()
		// Within 1 s every new request goes to b.
		require.Eventually(t, func() bool {
			gpu, _ := p.app.Pools()
			for _, u := range gpu.Hosts() {
				if u.Address == a.URL() && u.Available(time.Now()) {
					return false
				}
			}
			return true
		}, time.Second, 5*time.Millisecond, change)
		t.Logf("%q took effect in %s", change, time.Since(changed))
		before := a.served.Load()
		for range 5 {
			status, body, _ := send(t, "POST", p.url+"/images", genBody, nil)
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, "b", backendOf(t, body))
		}
		// The slow request on a still completes.
		require.Equal(t, `200 {"backend":"a","method":"POST","bytes":17}`, <-slow)
		require.Equal(t, before+1, a.served.Load())
	}

	// /refresh_hosts (GET or POST) answers 200 with the host count, not
	// the addresses (TestPublicListenerHidesMetricsAndHosts).
	for _, m := range []string{"GET", "POST"} {
		status, body, _ := send(t, m, p.url+"/refresh_hosts", "", nil)
		require.Equal(t, http.StatusOK, status, body)
		require.JSONEq(t, `{"message":"Hosts reloaded","gpu_hosts":1}`, body)
	}
	status, _, _ = send(t, "GET", p.url+"/refresh_hosts", "", map[string]string{"challenge-token": ""})
	require.Equal(t, http.StatusUnauthorized, status)
}

func TestListenSurvivesBackendTermination(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	account := newGPUBackend(t, "account", 1, time.Millisecond)
	a := newGPUBackend(t, "a", 1, time.Millisecond)
	p := startProxy(t, testConfig(account.URL()), db)
	var pid int32
	require.Eventually(t, func() bool {
		err := db.QueryRow(context.Background(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query ILIKE 'LISTEN%'`).Scan(&pid)
		return err == nil
	}, 2*time.Second, 10*time.Millisecond)
	exec(t, db, `SELECT pg_terminate_backend($1)`, pid)
	time.Sleep(300 * time.Millisecond) // the reconnect takes ~100 ms
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, a.URL())
	require.Eventually(t, func() bool {
		status, body, _ := send(t, "POST", p.url+"/images", genBody, nil)
		return status == http.StatusOK && backendOf(t, body) == "a"
	}, time.Second, 10*time.Millisecond)
}

func TestEdgeAndMethods(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	account := newGPUBackend(t, "account", 1, time.Millisecond)
	p := startProxy(t, testConfig(account.URL()), db)

	for _, m := range []string{"GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		status, body, _ := send(t, m, p.url+"/users/1/images/2", `{"is_public":true}`, nil)
		require.Equal(t, http.StatusOK, status, m)
		require.Equal(t, "account", backendOf(t, body))
		require.Contains(t, body, `"method":"`+m+`"`)
	}
	// Missing or wrong challenge token: the legacy 401.
	for _, v := range []string{"", "wrong"} {
		status, body, _ := send(t, "GET", p.url+"/users/1", "", map[string]string{"challenge-token": v})
		require.Equal(t, http.StatusUnauthorized, status)
		require.JSONEq(t, `{"message":"challenge-token header missing / invalid"}`, body)
	}
	// Preflight is answered without the token; exempt pages pass.
	status, _, hdr := send(t, "OPTIONS", p.url+"/images", "", map[string]string{
		"challenge-token": "", "Origin": "https://nouns.ai", "Access-Control-Request-Method": "POST",
		"Access-Control-Request-Headers": "challenge-token, content-type",
	})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, "https://nouns.ai", hdr.Get("Access-Control-Allow-Origin"))
	require.Contains(t, hdr.Get("Access-Control-Allow-Methods"), "PUT")
	status, _, _ = send(t, "GET", p.url+"/verify/abc", "", map[string]string{"challenge-token": ""})
	require.Equal(t, http.StatusOK, status)
	// One Access-Control-Allow-Origin even when the backend sets its own.
	_, _, hdr = send(t, "GET", p.url+"/users/1", "", map[string]string{"Origin": "https://nouns.ai"})
	require.Equal(t, []string{"https://nouns.ai"}, hdr.Values("Access-Control-Allow-Origin"))

	// Admin view.
	status, _, _ = send(t, "GET", p.url+"/admin/hosts", "", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	status, body, _ := send(t, "GET", p.url+"/admin/hosts", "", map[string]string{"Authorization": "Bearer admin-secret"})
	require.Equal(t, http.StatusOK, status, body)
	var hosts struct {
		Policy    string             `json:"policy"`
		Account   []balancer.Status  `json:"account"`
		Admission admission.Snapshot `json:"admission"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &hosts))
	require.Equal(t, "eeft", hosts.Policy)
	require.Equal(t, "fair", hosts.Admission.Policy, "the admission queue is part of the status")
	require.Len(t, hosts.Account, 1)
	require.Equal(t, "up", hosts.Account[0].State)
	require.Positive(t, hosts.Account[0].Requests)

	status, body, _ = send(t, "GET", p.url+"/health", "", map[string]string{"challenge-token": ""})
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "API is up and running!")
	status, body, _ = send(t, "GET", p.metrics+"/metrics", "", nil)
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `proxy_upstream_requests_total{code="2xx",host="`+account.URL()+`",route="account"}`)
	require.Contains(t, body, `proxy_upstream_in_flight{host="`+account.URL()+`",pool="account"}`)
}

func TestRateLimitSharedAcrossReplicas(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	account := newGPUBackend(t, "account", 1, time.Millisecond)
	cfg := testConfig(account.URL())
	cfg.RateLimitIP = 5
	rc, prefix := dbtest.Redis(t)
	cfg.RedisPrefix = prefix
	var urls []string
	for range 2 {
		a, err := app.New(cfg, zaptest.NewLogger(t), app.Deps{DB: db, Redis: rc})
		require.NoError(t, err)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Serve(ctx, ln, nil) }()
		t.Cleanup(func() { cancel(); <-done })
		urls = append(urls, "http://"+ln.Addr().String())
	}
	var codes []int
	for i := range 8 {
		status, _, hdr := send(t, "GET", urls[i%2]+"/users/1", "", nil)
		codes = append(codes, status)
		if status == http.StatusTooManyRequests {
			require.NotEmpty(t, hdr.Get("Retry-After"))
		}
	}
	require.Equal(t, []int{200, 200, 200, 200, 200, 429, 429, 429}, codes)
}

// TestCORSHeadersNotDuplicated: the proxy owns CORS on the data path; an
// upstream's own allow-origin and Vary: Origin must not be added twice.
func TestCORSHeadersNotDuplicated(t *testing.T) {
	t.Parallel()
	acct := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
		w.Header().Add("Vary", "Origin")
		w.Header().Add("Vary", "Accept-Encoding")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{}`))
	}))
	t.Cleanup(acct.Close)
	p := startProxy(t, testConfig(acct.URL), dbtest.New(t))
	status, _, hdr := send(t, "GET", p.url+"/users/1", "", map[string]string{"Origin": "https://nouns.ai"})
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, []string{"https://nouns.ai"}, hdr.Values("Access-Control-Allow-Origin"))
	require.Equal(t, []string{"Origin", "Accept-Encoding"}, hdr.Values("Vary"))
}
