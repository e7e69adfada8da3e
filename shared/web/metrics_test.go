package web_test

import (
	"net/http"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/web"
)

// histogram returns the one histogram family named name in reg.
func histogram(t *testing.T, reg *prometheus.Registry, name string) *dto.MetricFamily {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			require.Equal(t, dto.MetricType_HISTOGRAM, mf.GetType())
			return mf
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func bounds(h *dto.Histogram) []float64 {
	var b []float64
	for _, bk := range h.GetBucket() {
		b = append(b, bk.GetUpperBound())
	}
	return b
}

func TestDurationHistogramsShareBuckets(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := web.NewDurationHistogram(reg, "job_seconds", "Job time.", "op")
	h.WithLabelValues("a").Observe(0.2)
	job := histogram(t, reg, "job_seconds").GetMetric()[0]
	require.Equal(t, "op", job.GetLabel()[0].GetName())
	b := bounds(job.GetHistogram())
	require.Equal(t, 0.001, b[0], "from 1 ms")
	require.Equal(t, 300.0, b[len(b)-1], "to 5 min")

	// The HTTP latency of web.New uses the same buckets, with its service
	// label.
	e := web.New(web.Options{Service: "svc", Log: zap.NewNop(), Registry: reg})
	e.GET("/x", func(c echo.Context) error { return c.NoContent(http.StatusNoContent) })
	do(e, "GET", "/x", "", nil)
	httpm := histogram(t, reg, "http_request_duration_seconds").GetMetric()[0]
	require.Equal(t, b, bounds(httpm.GetHistogram()))
	labels := map[string]string{}
	for _, l := range httpm.GetLabel() {
		labels[l.GetName()] = l.GetValue()
	}
	require.Equal(t, map[string]string{"service": "svc", "route": "/x", "method": "GET"}, labels)

	// A nil registerer registers nothing (tests build metrics without one).
	web.NewDurationHistogram(nil, "job_seconds", "Job time.", "op").WithLabelValues("a").Observe(1)
}
