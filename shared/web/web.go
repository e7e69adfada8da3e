// Package web builds the echo server every service runs: recovery, request
// IDs, access logs, Prometheus HTTP metrics, CORS for services browsers call
// directly, the body limit, and the single error handler that turns every
// error into JSON in the legacy {"message": ...} shape. Request IDs and CORS
// follow the one edge policy, shared/edgepolicy.
//
// This package must never contain routes of a service or domain logic.
package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/edgepolicy"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// Options configure New. Log and Registry are required.
type Options struct {
	// Service names the service in logs and metrics.
	Service string
	// Log receives access logs, recovered panics and 5xx causes.
	Log *zap.Logger
	// Registry receives the HTTP metrics. New does not serve it: the
	// caller serves it on an internal listener (ServeWithMetrics) or, for
	// a service on a private network, registers MetricsHandler itself.
	Registry *prometheus.Registry
	// BodyLimit is the maximum request body in bytes; 0 means 5 MiB.
	BodyLimit int64
	// CORS applies the edge CORS policy (edgepolicy.CORS) to every
	// response. Set it for a service browsers call directly (accountsvc,
	// public as api-cpu); a service only reached through the proxy leaves
	// it off, since the proxy owns CORS for its responses.
	CORS bool
	// TrustedProxies are the peers whose X-Forwarded-For is believed for
	// the client IP (echo's RealIP, the access log), by the one rule
	// ratelimit.ClientIP applies; nil believes no X-Forwarded-For.
	TrustedProxies []netip.Prefix
	// SkipAccessLog, when set, returns true for requests that are not
	// access-logged (e.g. /health and /metrics polls).
	SkipAccessLog func(r *http.Request) bool
}

// DefaultBodyLimit is the default request body limit (5 MiB).
const DefaultBodyLimit = 5 << 20

// New returns an echo instance with the shared middleware chain and error
// handler installed; it registers no route (not even /metrics, see
// ServeWithMetrics). A GET or HEAD whose
// database connection was lost before its statement ran is answered by a
// second run on a fresh connection (retryReads).
func New(opts Options) *echo.Echo {
	if opts.BodyLimit <= 0 {
		opts.BodyLimit = DefaultBodyLimit
	}
	if opts.SkipAccessLog == nil {
		opts.SkipAccessLog = func(r *http.Request) bool {
			return r.URL.Path == "/health" || r.URL.Path == "/metrics"
		}
	}
	log := opts.Log.Named("http")
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = ErrorHandler(log)
	trusted := opts.TrustedProxies
	e.IPExtractor = func(r *http.Request) string { return ratelimit.ClientIP(r, trusted) }
	m := newMetrics(opts.Registry, opts.Service)
	e.Use(
		requestID(),
		accessLog(log, m, opts.SkipAccessLog),
		recoverer(log),
	)
	if opts.CORS {
		e.Use(cors())
	}
	e.Use(bodyLimit(opts.BodyLimit), retryReads())
	return e
}

type ctxKey int

const requestIDKey ctxKey = iota

// RequestID returns the request ID stored in ctx by the middleware, or "".
func RequestID(ctx context.Context) string {
	s, _ := ctx.Value(requestIDKey).(string)
	return s
}

// WithRequestID returns ctx carrying id (for jobs and outgoing calls).
func WithRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, requestIDKey, id)
}

func requestID() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			id := edgepolicy.RequestID(req.Header)
			c.Response().Header()[edgepolicy.RequestIDHeader] = []string{id}
			c.SetRequest(req.WithContext(WithRequestID(req.Context(), id)))
			return next(c)
		}
	}
}

func recoverer(log *zap.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) (err error) {
			defer func() {
				if r := recover(); r != nil {
					if r == http.ErrAbortHandler {
						panic(r)
					}
					log.Error("panic recovered",
						zap.String("request_id", RequestID(c.Request().Context())),
						zap.String("panic", fmt.Sprint(r)),
						zap.ByteString("stack", debug.Stack()))
					err = fmt.Errorf("panic: %v", r)
				}
			}()
			return next(c)
		}
	}
}

func cors() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if edgepolicy.CORS(c.Response(), c.Request()) {
				return nil
			}
			return next(c)
		}
	}
}

// TooLargeMessage is the legacy 413 body text.
const TooLargeMessage = "File size exceeds the allowed limit"

// bodyLimit refuses bodies over limit with the legacy 413 JSON, followed
// by a lingering close (edgepolicy.Linger) so that clients that write the
// whole body before reading get to read it.
func bodyLimit(limit int64) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			raw := req.Body
			if req.ContentLength > limit {
				err := c.JSON(http.StatusRequestEntityTooLarge, map[string]string{"error": TooLargeMessage})
				edgepolicy.Linger(c.Response(), req, raw)
				return err
			}
			if raw != nil && raw != http.NoBody {
				req.Body = http.MaxBytesReader(c.Response(), raw, limit)
			}
			err := next(c)
			if err != nil && Classify(err).Kind.Status() == http.StatusRequestEntityTooLarge && !c.Response().Committed {
				// Answer now, before discarding the rest of the body.
				c.Error(err)
				err = nil
			}
			if c.Response().Status == http.StatusRequestEntityTooLarge {
				edgepolicy.Linger(c.Response(), req, raw)
			}
			return err
		}
	}
}

type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	inflight prometheus.Gauge
}

func newMetrics(reg *prometheus.Registry, service string) *metrics {
	labels := prometheus.Labels{"service": service}
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total", Help: "HTTP requests by route, method and status.", ConstLabels: labels,
		}, []string{"route", "method", "status"}),
		duration: NewDurationHistogram(prometheus.WrapRegistererWith(labels, reg),
			"http_request_duration_seconds", "HTTP request latency by route and method.", "route", "method"),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "http_requests_in_flight", Help: "HTTP requests being served.", ConstLabels: labels,
		}),
	}
	reg.MustRegister(m.requests, m.inflight)
	return m
}

func accessLog(log *zap.Logger, m *metrics, skip func(*http.Request) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			m.inflight.Inc()
			err := next(c)
			if err != nil {
				// Write the error response now so the status is known.
				c.Error(err)
			}
			m.inflight.Dec()
			req := c.Request()
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			status := c.Response().Status
			elapsed := time.Since(start)
			m.requests.WithLabelValues(route, req.Method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, req.Method).Observe(elapsed.Seconds())
			if !skip(req) {
				log.Info("request",
					zap.String("request_id", RequestID(req.Context())),
					zap.String("method", req.Method),
					zap.String("route", route),
					zap.Int("status", status),
					zap.Duration("latency", elapsed),
					zap.Int64("bytes_out", c.Response().Size),
					zap.String("remote", c.RealIP()))
			}
			return nil
		}
	}
}

// Listen opens a TCP listener on addr ("host:port"; port 0 picks one).
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", addr, err)
	}
	return ln, nil
}

// NewServer returns an http.Server for h with timeouts against slow
// clients. There is no WriteTimeout: generation responses may be slow;
// handlers bound their own work.
func NewServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
	}
}

// Serve serves srv on ln until ctx is done, then shuts down gracefully,
// waiting at most drain for in-flight requests. It returns nil after a
// clean shutdown.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener, log *zap.Logger, drain time.Duration) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	log.Info("http server listening", zap.String("addr", ln.Addr().String()))
	select {
	case err := <-errc:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("http server draining", zap.Duration("timeout", drain))
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		return fmt.Errorf("http server shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("http server stopped")
	return nil
}

// Probe GETs http://<addr>/health and returns nil on 200: the body of the
// `healthcheck` subcommand that container HEALTHCHECKs run (distroless
// images have no curl). A wildcard host (":8080", "0.0.0.0:8080") is
// probed on loopback.
func Probe(ctx context.Context, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("health probe: bad address %q: %w", addr, err)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+net.JoinHostPort(host, port)+"/health", nil)
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health probe: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health probe: status %d", resp.StatusCode)
	}
	return nil
}
