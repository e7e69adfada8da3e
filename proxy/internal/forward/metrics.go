package forward

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/gpuroute"
	"github.com/nounsai/sdserver/shared/web"
)

// Metrics holds the data path's Prometheus metrics. A nil *Metrics records
// nothing.
type Metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	noHosts  *prometheus.CounterVec
	retries  *prometheus.CounterVec
}

// codeClass is the code label of a status: its class ("2xx"), "cancelled"
// for 499 (the client went away) and "error" for anything else.
func codeClass(status int) string {
	switch {
	case status == 499:
		return "cancelled"
	case status >= 100 && status < 600:
		return [...]string{"1xx", "2xx", "3xx", "4xx", "5xx"}[status/100-1]
	}
	return "error"
}

// NewMetrics registers the proxy metrics on reg, including gauges read at
// scrape time from the upstreams of pools (labelled with pool names, in
// order: the first pool is "gpu", the second "account").
func NewMetrics(reg prometheus.Registerer, pools ...*balancer.Pool) *Metrics {
	m := &Metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_upstream_requests_total",
			Help: "Requests forwarded, by route, upstream host and status class.",
		}, []string{"route", "host", "code"}),
		duration: web.NewDurationHistogram(reg, "proxy_upstream_request_duration_seconds",
			"Time from receiving a request to the end of its upstream response, by route and host.", "route", "host"),
		noHosts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_no_upstream_total",
			Help: "Requests answered 503 because no upstream host was available, by route.",
		}, []string{"route"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "proxy_upstream_retries_total",
			Help: "Requests retried on another host, by route.",
		}, []string{"route"}),
	}
	// Every route's series exist from the start, at 0.
	for r := range gpuroute.Count {
		m.noHosts.WithLabelValues(r.String())
		m.retries.WithLabelValues(r.String())
	}
	reg.MustRegister(m.requests, m.noHosts, m.retries, &upstreamCollector{pools: pools})
	return m
}

func (m *Metrics) observe(up *balancer.Upstream, route gpuroute.Route, status int, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(route.String(), up.Address, codeClass(status)).Inc()
	m.duration.WithLabelValues(route.String(), up.Address).Observe(d.Seconds())
}

func (m *Metrics) noHost(route gpuroute.Route) {
	if m != nil {
		m.noHosts.WithLabelValues(route.String()).Inc()
	}
}

func (m *Metrics) retried(route gpuroute.Route) {
	if m != nil {
		m.retries.WithLabelValues(route.String()).Inc()
	}
}

// upstreamCollector reports each upstream's state at scrape time.
type upstreamCollector struct {
	pools []*balancer.Pool
}

var (
	descHealthy     = prometheus.NewDesc("proxy_upstream_healthy", "1 if the host may receive new requests.", []string{"pool", "host"}, nil)
	descInFlight    = prometheus.NewDesc("proxy_upstream_in_flight", "Requests the proxy has on the host.", []string{"pool", "host"}, nil)
	descOutstanding = prometheus.NewDesc("proxy_upstream_outstanding_work", "Estimated work units in flight on the host.", []string{"pool", "host"}, nil)
	descSpeed       = prometheus.NewDesc("proxy_upstream_seconds_per_work_unit", "Learned EWMA of seconds per work unit (0 = not learned).", []string{"pool", "host"}, nil)
	descSlots       = prometheus.NewDesc("proxy_upstream_reported_slots", "Slots the host reported in /health.", []string{"pool", "host"}, nil)
	descQueued      = prometheus.NewDesc("proxy_upstream_reported_queued", "Queue length the host reported in /health.", []string{"pool", "host"}, nil)
	descFailures    = prometheus.NewDesc("proxy_upstream_failures_total", "Failed requests (connection errors, host-fault 5xx, timeouts; see README Health).", []string{"pool", "host"}, nil)
)

// Describe implements prometheus.Collector.
func (c *upstreamCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descHealthy, descInFlight, descOutstanding, descSpeed, descSlots, descQueued, descFailures} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *upstreamCollector) Collect(ch chan<- prometheus.Metric) {
	now := time.Now()
	for i, p := range c.pools {
		pool := "gpu"
		if i > 0 {
			pool = "account"
		}
		for _, u := range p.Hosts() {
			s := u.Status(now)
			healthy := 0.0
			if u.Available(now) {
				healthy = 1
			}
			ch <- prometheus.MustNewConstMetric(descHealthy, prometheus.GaugeValue, healthy, pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descInFlight, prometheus.GaugeValue, float64(s.InFlight), pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descOutstanding, prometheus.GaugeValue, s.Outstanding, pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descSpeed, prometheus.GaugeValue, s.SecPerUnit, pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descSlots, prometheus.GaugeValue, float64(s.Slots), pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descQueued, prometheus.GaugeValue, float64(s.RepQueued), pool, u.Address)
			ch <- prometheus.MustNewConstMetric(descFailures, prometheus.CounterValue, float64(s.Failures), pool, u.Address)
		}
	}
}
