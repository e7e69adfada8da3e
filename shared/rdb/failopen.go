package rdb

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// FailOpen records the requests that went on without Redis: the counter
// redis_fail_open_total{use} and a warning, logged at most once per
// interval per use so that an outage does not flood the log. Safe for
// concurrent use.
type FailOpen struct {
	total    *prometheus.CounterVec
	log      *zap.Logger
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	last    map[string]time.Time
	skipped map[string]int
}

// NewFailOpen registers the counter on reg and returns the recorder.
func NewFailOpen(reg prometheus.Registerer, log *zap.Logger) *FailOpen {
	f := &FailOpen{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "redis_fail_open_total",
			Help: "Requests that went on without Redis (it failed or its breaker was open), by use.",
		}, []string{"use"}),
		log:      log,
		interval: 10 * time.Second,
		now:      time.Now,
		last:     map[string]time.Time{},
		skipped:  map[string]int{},
	}
	reg.MustRegister(f.total)
	return f
}

// Record counts one request of use ("ratelimit", "deny_list", ...) that
// went on without Redis because of err.
func (f *FailOpen) Record(use string, err error) {
	f.total.WithLabelValues(use).Inc()
	now := f.now()
	f.mu.Lock()
	if now.Sub(f.last[use]) < f.interval {
		f.skipped[use]++
		f.mu.Unlock()
		return
	}
	skipped := f.skipped[use]
	f.last[use], f.skipped[use] = now, 0
	f.mu.Unlock()
	f.log.Warn("redis unavailable: going on without it", zap.String("use", use),
		zap.Int("not_logged_since_last", skipped), zap.Error(err))
}

// Func returns Record bound to use, for OnError hooks.
func (f *FailOpen) Func(use string) func(error) {
	return func(err error) { f.Record(use, err) }
}
