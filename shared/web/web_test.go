package web_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/web"
)

func newTestEcho(t *testing.T) (*echo.Echo, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zap.InfoLevel)
	e := web.New(web.Options{Service: "test", Log: zap.New(core), Registry: prometheus.NewRegistry(), BodyLimit: 1024, CORS: true})
	e.GET("/panic", func(echo.Context) error { panic("boom: secret internals") })
	e.GET("/internal", func(echo.Context) error { return errors.New("pq: password=hunter2") })
	e.GET("/credits", func(echo.Context) error { return apperr.InsufficientCredits(3, 10) })
	e.GET("/busy", func(echo.Context) error {
		return apperr.Unavailable("Busy").WithRetryAfter(1500 * time.Millisecond)
	})
	e.GET("/missing", func(echo.Context) error { return apperr.NotFound("Image not found").WithKey("error") })
	e.POST("/echo", func(c echo.Context) error {
		var v struct {
			Name string `json:"name"`
		}
		if err := web.DecodeJSON(c, &v); err != nil {
			return err
		}
		return c.JSON(http.StatusOK, v)
	})
	return e, logs
}

func do(e *echo.Echo, method, path string, body string, hdr map[string]string) *httptest.ResponseRecorder {
	var r *http.Request
	if body != "" {
		r = httptest.NewRequest(method, path, strings.NewReader(body))
	} else {
		r = httptest.NewRequest(method, path, nil)
	}
	for k, v := range hdr {
		r.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.ServeHTTP(w, r)
	return w
}

func decode(t *testing.T, w *httptest.ResponseRecorder) map[string]any {
	t.Helper()
	require.Contains(t, w.Header().Get("Content-Type"), "application/json", w.Body.String())
	var m map[string]any
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &m), w.Body.String())
	return m
}

func TestErrorsAreJSON(t *testing.T) {
	t.Parallel()
	e, logs := newTestEcho(t)
	tests := []struct {
		name, method, path, body string
		status                   int
		want                     map[string]any
	}{
		{"unknown route", "GET", "/nope", "", 404, map[string]any{"message": "Not Found"}},
		{"wrong method", "DELETE", "/credits", "", 405, map[string]any{"message": "Method Not Allowed"}},
		{"panic", "GET", "/panic", "", 500, map[string]any{"message": "Internal server error"}},
		{"internal hides cause", "GET", "/internal", "", 500, map[string]any{"message": "Internal server error"}},
		{"insufficient credits", "GET", "/credits", "", 402, map[string]any{"message": "Insufficient credits", "credits": float64(3), "required": float64(10)}},
		{"legacy error key", "GET", "/missing", "", 404, map[string]any{"error": "Image not found"}},
		{"bad json", "POST", "/echo", "{nope", 400, map[string]any{"message": "Invalid JSON body"}},
		{"empty body", "POST", "/echo", "", 400, map[string]any{"message": "Request body must be JSON"}},
		{"wrong type", "POST", "/echo", `{"name": 5}`, 400, map[string]any{"message": "Invalid type for name"}},
		{"too large", "POST", "/echo", `{"name": "` + strings.Repeat("x", 2000) + `"}`, 413, map[string]any{"error": "File size exceeds the allowed limit"}},
	}
	for _, tt := range tests {
		w := do(e, tt.method, tt.path, tt.body, nil)
		require.Equal(t, tt.status, w.Code, tt.name)
		require.Equal(t, tt.want, decode(t, w), tt.name)
		require.NotContains(t, w.Body.String(), "secret")
		require.NotContains(t, w.Body.String(), "hunter2")
	}
	require.Equal(t, 1, logs.FilterMessage("panic recovered").Len())
	require.GreaterOrEqual(t, logs.FilterMessage("request failed").Len(), 2)
}

func TestRetryAfter(t *testing.T) {
	t.Parallel()
	e, _ := newTestEcho(t)
	w := do(e, "GET", "/busy", "", nil)
	require.Equal(t, 503, w.Code)
	require.Equal(t, "2", w.Header().Get("Retry-After"))
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	e, logs := newTestEcho(t)
	w := do(e, "GET", "/credits", "", map[string]string{"X-Request-ID": "abc-123"})
	require.Equal(t, "abc-123", w.Header().Get("X-Request-ID"))
	entries := logs.FilterMessage("request").FilterField(zap.String("request_id", "abc-123"))
	require.Equal(t, 1, entries.Len())

	w = do(e, "GET", "/credits", "", map[string]string{"X-Request-ID": "bad id with spaces"})
	require.Len(t, w.Header().Get("X-Request-ID"), 32)
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e, _ := newTestEcho(t)
	w := do(e, "OPTIONS", "/echo", "", map[string]string{
		"Origin": "https://nounsai.wtf", "Access-Control-Request-Method": "PUT",
		"Access-Control-Request-Headers": "authorization, challenge-token",
	})
	require.Equal(t, 200, w.Code)
	require.Equal(t, "https://nounsai.wtf", w.Header().Get("Access-Control-Allow-Origin"))
	require.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "PUT")
	require.Equal(t, "authorization, challenge-token", w.Header().Get("Access-Control-Allow-Headers"))
	require.Contains(t, w.Header().Values("Vary"), "Origin")

	w = do(e, "GET", "/credits", "", map[string]string{"Origin": "http://localhost:3000"})
	require.Equal(t, "http://localhost:3000", w.Header().Get("Access-Control-Allow-Origin"))
	require.Contains(t, w.Header().Get("Access-Control-Expose-Headers"), "X-Image-Id")
}

// TestNoCORSWhenOff: a service behind the proxy (CORS off) adds no CORS
// header, so the proxy has nothing to strip; preflights are not answered.
func TestNoCORSWhenOff(t *testing.T) {
	t.Parallel()
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry()})
	e.GET("/x", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	w := do(e, "GET", "/x", "", map[string]string{"Origin": "https://nounsai.wtf"})
	require.Equal(t, http.StatusNoContent, w.Code)
	for k := range w.Header() {
		require.NotContains(t, k, "Access-Control", k)
	}
	require.Empty(t, w.Header().Values("Vary"))
	w = do(e, "OPTIONS", "/x", "", map[string]string{"Origin": "https://nounsai.wtf", "Access-Control-Request-Method": "GET"})
	require.Empty(t, w.Header().Get("Access-Control-Allow-Origin"))
}

// TestMetricsOnlyOnTheMetricsListener: the public server built by New
// answers GET /metrics with a 404 JSON (issue 13: metrics were public);
// ServeWithMetrics serves the registry, with the public server's request
// counts, on the second listener, and stops both when ctx ends.
func TestMetricsOnlyOnTheMetricsListener(t *testing.T) {
	t.Parallel()
	core, _ := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	e := web.New(web.Options{Service: "test", Log: zap.New(core), Registry: reg})
	e.GET("/credits", func(echo.Context) error { return apperr.InsufficientCredits(3, 10) })

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- web.ServeWithMetrics(ctx, web.NewServer(e), ln, mln, reg, zap.New(core), time.Second) }()
	public, metrics := "http://"+ln.Addr().String(), "http://"+mln.Addr().String()

	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(b)
	}
	code, _ := get(public + "/credits")
	require.Equal(t, http.StatusPaymentRequired, code)
	code, body := get(public + "/metrics")
	require.Equal(t, http.StatusNotFound, code, body)
	require.JSONEq(t, `{"message":"Not Found"}`, body)

	code, body = get(metrics + "/metrics")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `http_requests_total{method="GET",route="/credits",service="test",status="402"} 1`)
	code, body = get(metrics + "/credits")
	require.Equal(t, http.StatusNotFound, code, body)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		t.Fatal("ServeWithMetrics did not return after ctx ended")
	}
	_, err = http.Get(metrics + "/metrics")
	require.Error(t, err, "the metrics listener is closed with the main one")
}

// TestServeWithMetricsStopsWhenMetricsFails: a metrics listener that
// fails takes the main server down with it rather than leaving a service
// whose metrics silently vanished.
func TestServeWithMetricsStopsWhenMetricsFails(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, mln.Close()) // Accept fails at once
	done := make(chan error, 1)
	go func() {
		done <- web.ServeWithMetrics(t.Context(), web.NewServer(http.NotFoundHandler()), ln, mln, prometheus.NewRegistry(), zap.NewNop(), time.Second)
	}()
	select {
	case err := <-done:
		require.ErrorContains(t, err, "metrics")
	case <-time.After(5 * time.Second):
		t.Fatal("ServeWithMetrics kept serving after the metrics listener failed")
	}
}

// TestClientIPTrustsOnlyTrustedProxies: the access log's client address
// (echo's RealIP) follows the one trusted-proxy rule (ratelimit.ClientIP):
// X-Forwarded-For from an untrusted peer is ignored, from a trusted one it
// names the client.
func TestClientIPTrustsOnlyTrustedProxies(t *testing.T) {
	t.Parallel()
	core, logs := observer.New(zap.InfoLevel)
	e := web.New(web.Options{Service: "test", Log: zap.New(core), Registry: prometheus.NewRegistry(),
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}})
	var seen []string
	e.GET("/ip", func(c echo.Context) error {
		seen = append(seen, c.RealIP())
		return c.NoContent(http.StatusNoContent)
	})
	for _, tc := range []struct{ peer, xff, want string }{
		{"203.0.113.9:4000", "198.51.100.1", "203.0.113.9"}, // spoofed by an untrusted client
		{"10.1.2.3:4000", "198.51.100.1", "198.51.100.1"},   // appended by a trusted proxy
		{"10.1.2.3:4000", "198.51.100.1, 10.9.9.9", "198.51.100.1"},
		{"10.1.2.3:4000", "", "10.1.2.3"},
	} {
		r := httptest.NewRequest("GET", "/ip", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		e.ServeHTTP(httptest.NewRecorder(), r)
		got := logs.TakeAll()
		require.Len(t, got, 1)
		require.Equal(t, "request", got[0].Message)
		require.Equal(t, tc.want, got[0].ContextMap()["remote"], "%s via %s", tc.xff, tc.peer)
		require.Equal(t, tc.want, seen[len(seen)-1])
	}
}

// postRaw sends a POST with a body of n bytes the way browsers and
// Python's urllib do (no Expect: 100-continue): it writes the whole body,
// then reads the response. It returns the status line and body, or the
// error that ended the exchange (a reset connection).
func postRaw(t *testing.T, addr, path string, n int) (string, string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, n)
	if _, err := io.WriteString(conn, head); err != nil {
		return "", "", err
	}
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for sent := 0; sent < n; sent += len(chunk) {
		if _, err := conn.Write(chunk[:min(len(chunk), n-sent)]); err != nil {
			return "", "", err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.Status, string(body), err
}

// TestTooLargeBodyGetsReadable413: a 10 MB body over the limit, sent
// without Expect, gets its 413 JSON (a lingering close: the server reads
// and discards the body before closing) instead of a connection reset.
func TestTooLargeBodyGetsReadable413(t *testing.T) {
	t.Parallel()
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry(), BodyLimit: 1 << 20})
	e.POST("/echo", func(c echo.Context) error {
		_, err := io.Copy(io.Discard, c.Request().Body)
		if err != nil {
			return err
		}
		return c.NoContent(http.StatusNoContent)
	})
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	status, body, err := postRaw(t, srv.Listener.Addr().String(), "/echo", 10<<20)
	require.NoError(t, err)
	require.Equal(t, "413 Request Entity Too Large", status)
	require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, body)
}
