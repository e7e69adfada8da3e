package admission

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// maxNamedUsers bounds the user label of proxy_admission_wait_seconds.
const maxNamedUsers = 10

// Labels of proxy_admission_wait_seconds besides user ids.
const (
	labelOther     = "other"
	labelAnonymous = "anonymous"
)

// metrics are the admission metrics. A nil *metrics records nothing.
//
// The wait histogram's user label is bounded: a signed-in user is named
// (by id) while among the maxNamedUsers most recently seen heavy users —
// users with two or more requests running or waiting here when one of
// theirs was served — and every other user is "other"; clients without a
// token are "anonymous" (addresses stay out of metrics). A user pushed out
// of the named set has its series deleted.
type metrics struct {
	wait     *prometheus.HistogramVec
	rejected *prometheus.CounterVec

	mu    sync.Mutex
	named map[string]int64 // label → last seen (unix nanos)
}

func newMetrics(reg prometheus.Registerer, queueLength func() float64) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		wait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "proxy_admission_wait_seconds",
			Help:    "Time GPU requests waited in the admission queue before being sent, by user (the 10 most recent heavy users by id, others as other/anonymous).",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 12, 16, 20, 30},
		}, []string{"user"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_admission_rejections_total",
			Help: "GPU requests refused by admission with 503, by reason (queue_full, deadline: estimated start past the limit, timeout: waited the limit).",
		}, []string{"reason"}),
		named: map[string]int64{},
	}
	reg.MustRegister(m.wait, m.rejected, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "proxy_admission_queue_length",
		Help: "GPU requests waiting in this replica's admission queue.",
	}, queueLength))
	for _, r := range []string{ReasonQueueFull, ReasonDeadline, ReasonTimeout} {
		m.rejected.WithLabelValues(r)
	}
	return m
}

func (m *metrics) refused(reason string) {
	if m != nil {
		m.rejected.WithLabelValues(reason).Inc()
	}
}

// waited records a wait of d for the user labelled by who (see label).
func (m *metrics) waited(who userLabel, d time.Duration) {
	if m == nil {
		return
	}
	m.wait.WithLabelValues(m.name(who)).Observe(d.Seconds())
}

// userLabel is what the metrics need to know of a user.
type userLabel struct {
	key   string
	heavy bool
	at    int64
}

// name returns the label value for who, naming heavy signed-in users.
func (m *metrics) name(who userLabel) string {
	id, ok := strings.CutPrefix(who.key, "user:")
	if !ok {
		return labelAnonymous
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, named := m.named[id]; named || who.heavy {
		if !named && len(m.named) >= maxNamedUsers {
			oldest, at := "", int64(0)
			for k, t := range m.named {
				if oldest == "" || t < at {
					oldest, at = k, t
				}
			}
			delete(m.named, oldest)
			m.wait.DeleteLabelValues(oldest)
		}
		m.named[id] = who.at
		return id
	}
	return labelOther
}

// label describes u for the metrics; it takes c.mu.
func (c *Controller) label(u *user) userLabel {
	c.mu.Lock()
	defer c.mu.Unlock()
	return userLabel{key: u.key, heavy: u.running+u.waiting >= 2, at: c.deps.Now().UnixNano()}
}
