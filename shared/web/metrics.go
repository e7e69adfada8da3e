package web

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// durationBuckets are the bucket bounds, in seconds, of every histogram
// NewDurationHistogram makes.
var durationBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// NewDurationHistogram returns a histogram of durations in seconds by
// labels, registered on reg (nil registers nothing). Every duration a
// service measures (this package's HTTP latency, the proxy's upstream time,
// gpusvc's generation time) uses it, so all share one set of buckets, 1 ms
// to 5 min, and one request's time compares hop by hop.
func NewDurationHistogram(reg prometheus.Registerer, name, help string, labels ...string) *prometheus.HistogramVec {
	return promauto.With(reg).NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: durationBuckets}, labels)
}

// MetricsPath is where the metrics listener serves the registry.
const MetricsPath = "/metrics"

// MetricsHandler returns an echo handler serving reg in the Prometheus
// text format (for a service that keeps /metrics on its own, private,
// listener, like gpusvc).
func MetricsHandler(reg *prometheus.Registry) echo.HandlerFunc {
	return echo.WrapHandler(promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
}

// NewMetricsServer returns the internal listener's server: GET (and HEAD)
// /metrics serve reg; every other path is a 404 and every other method a
// 405, in the JSON error shape of the public listener.
func NewMetricsServer(reg *prometheus.Registry, log *zap.Logger) *http.Server {
	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.HTTPErrorHandler = ErrorHandler(log.Named("metrics"))
	e.GET(MetricsPath, MetricsHandler(reg))
	srv := NewServer(e)
	srv.ErrorLog = zap.NewStdLog(log.Named("metrics"))
	return srv
}

// ServeWithMetrics serves srv on ln like Serve and, when metrics is not
// nil, NewMetricsServer(reg) on metrics. The two stop together: when ctx
// ends both shut down gracefully (each waiting at most drain); when either
// fails the other is shut down too. It returns both servers' errors joined,
// nil after a clean shutdown. ServeWithMetrics
// closes metrics, as Serve closes ln.
func ServeWithMetrics(ctx context.Context, srv *http.Server, ln, metrics net.Listener, reg *prometheus.Registry, log *zap.Logger, drain time.Duration) error {
	if metrics == nil {
		return Serve(ctx, srv, ln, log, drain)
	}
	both, stop := context.WithCancel(ctx)
	defer stop()
	mlog := log.Named("metrics")
	merr := make(chan error, 1)
	go func() {
		// A failed metrics listener takes the service down with it:
		// running without metrics would go unnoticed.
		err := serveQuiet(both, NewMetricsServer(reg, log), metrics, drain)
		if err != nil {
			mlog.Error("metrics server failed", zap.Error(err))
		}
		stop()
		merr <- err
	}()
	mlog.Info("metrics server listening", zap.String("addr", metrics.Addr().String()))
	err := Serve(both, srv, ln, log, drain)
	stop()
	return errors.Join(err, <-merr)
}

// serveQuiet is Serve without its log lines ("http server listening" is
// the public listener's, which tests read to find its address).
func serveQuiet(ctx context.Context, srv *http.Server, ln net.Listener, drain time.Duration) error {
	if err := Serve(ctx, srv, ln, zap.NewNop(), drain); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	return nil
}
