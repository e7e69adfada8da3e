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
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

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
