package generate

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/shared/web"
)

// Metrics are the per-host Prometheus metrics of generation.
type Metrics struct {
	latency  *prometheus.HistogramVec
	rejected *prometheus.CounterVec
	refunds  prometheus.Counter
	// holdsLost counts requests that finished after the sweeper had
	// refunded their hold (they answered 504 and stored nothing).
	holdsLost prometheus.Counter
}

// NewMetrics creates the metrics and registers them, with gauges reading
// capacity's slots, in-flight and queued jobs, on reg (nil registers
// nothing, for tests).
func NewMetrics(reg prometheus.Registerer, capa *capacity.Limiter) *Metrics {
	f := promauto.With(reg)
	m := &Metrics{
		latency: web.NewDurationHistogram(reg, "gpusvc_generation_duration_seconds",
			"Time a job held a GPU slot, by operation, backend and outcome.", "op", "backend", "outcome"),
		rejected: f.NewCounterVec(prometheus.CounterOpts{Name: "gpusvc_jobs_rejected_total",
			Help: "Jobs refused with 503 because the host was full, by reason."}, []string{"reason"}),
		refunds: f.NewCounter(prometheus.CounterOpts{Name: "gpusvc_refunds_total",
			Help: "Charges refunded after a failed job."}),
		holdsLost: f.NewCounter(prometheus.CounterOpts{Name: "gpusvc_holds_lost_total",
			Help: "Requests that finished after the sweeper refunded their charge hold (answered 504, nothing stored)."}),
	}
	if capa != nil {
		f.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpusvc_slots", Help: "GPU slots (concurrent jobs) of this host."},
			func() float64 { return float64(capa.Slots()) })
		f.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpusvc_in_flight", Help: "Jobs holding a GPU slot."},
			func() float64 { return float64(capa.InFlight()) })
		f.NewGaugeFunc(prometheus.GaugeOpts{Name: "gpusvc_queue_depth", Help: "Jobs waiting for a GPU slot."},
			func() float64 { return float64(capa.Queued()) })
	}
	return m
}
