package app

import (
	"errors"
	"fmt"
	"time"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/hosts"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/service"
)

// Config is the proxy's configuration. Every field is read from the
// environment variable named in its comment (and the shared ones from
// config.Common); tests build it as a literal.
type Config struct {
	config.Common

	// MetricsAddr is the internal listener serving GET /metrics
	// (METRICS_ADDR; default loopback on the HTTP port + 1000, e.g.
	// 127.0.0.1:9080 for :8080; "off" gives "", no metrics listener). The
	// public listener answers /metrics with 404.
	MetricsAddr string

	// AccountURLs are the accountsvc instances that serve every non-GPU
	// route (ACCOUNTSVC_URLS, comma-separated; default
	// http://127.0.0.1:8081). They are health-checked like GPU hosts.
	AccountURLs []string
	// Policy balances the GPU hosts (BALANCER_POLICY): eeft (default,
	// earliest expected finish time), least_conn or round_robin.
	Policy string
	// HealthInterval is the period of the active checks
	// (HEALTH_INTERVAL, default 2s).
	HealthInterval time.Duration
	// HealthTimeout bounds one check (HEALTH_TIMEOUT, default 1s).
	HealthTimeout time.Duration
	// HealthRise is the consecutive passes that bring a host back
	// (HEALTH_RISE, default 2).
	HealthRise int
	// HealthFall is the consecutive failures that take a host out
	// (HEALTH_FALL, default 2).
	HealthFall int
	// GPUTimeout bounds a GPU-route request (GPU_TIMEOUT, default 300s).
	GPUTimeout time.Duration
	// UpstreamTimeout bounds every other request (UPSTREAM_TIMEOUT,
	// default 30s).
	UpstreamTimeout time.Duration
	// StreamTimeout bounds a Server-Sent Events stream such as
	// GET /v1/jobs/<id>/events (STREAM_TIMEOUT, default 1h).
	StreamTimeout time.Duration
	// HostsReloadInterval is the safety-net full reload of api_hosts,
	// on top of LISTEN/NOTIFY (HOSTS_RELOAD_INTERVAL, default 30s).
	HostsReloadInterval time.Duration
	// RateLimitIP is requests per minute per client IP, counted in Redis
	// across replicas (RATE_LIMIT_IP, default 600; 0 = off).
	RateLimitIP int
	// RateLimitGlobal is requests per minute across all clients
	// (RATE_LIMIT_GLOBAL, default 0 = off).
	RateLimitGlobal int
	// MaxConns caps concurrent client connections (MAX_CONNS, default
	// 4096; 0 = no cap).
	MaxConns int
	// ChallengeExempt are path prefixes served without the challenge
	// token (CHALLENGE_EXEMPT_PATHS, default /verify/,/reset/,/media/: pages
	// opened from emails, and the local stack's media files, which img and
	// audio tags load without headers).
	ChallengeExempt []string
	// AdmissionPolicy orders the GPU requests that wait for a slot
	// (ADMISSION_POLICY): fair (default, start-time fair queueing across
	// users with a per-user cap), fifo (arrival order, no cap) or off (no
	// queue at the proxy: every GPU request goes straight to the balancer
	// and waits in the host's own queue, as before admission existed).
	AdmissionPolicy string
	// AdmissionQueueMax bounds the waiting GPU requests per replica
	// (ADMISSION_QUEUE_MAX, default 256).
	AdmissionQueueMax int
	// AdmissionMaxWait bounds a GPU request's wait for a slot; one
	// estimated to start later is refused at once (ADMISSION_MAX_WAIT,
	// default 20s).
	AdmissionMaxWait time.Duration
	// AdmissionUserShare is the fraction of the fleet's slots one user may
	// hold while others wait (ADMISSION_USER_SHARE, default 0.5).
	AdmissionUserShare float64
	// AdmissionSyncInterval is how often each replica shares its per-user
	// counts through Redis (ADMISSION_SYNC_INTERVAL, default 1s).
	AdmissionSyncInterval time.Duration
}

// LoadConfig reads the configuration from l and validates it, reporting
// every bad setting.
func LoadConfig(l *config.Loader) (Config, error) {
	c := Config{
		Common:              config.LoadCommon(l, "127.0.0.1:8080"),
		AccountURLs:         l.List("ACCOUNTSVC_URLS", "", []string{"http://127.0.0.1:8081"}),
		Policy:              l.String("BALANCER_POLICY", "", balancer.PolicyEEFT),
		HealthInterval:      l.Duration("HEALTH_INTERVAL", "", 2*time.Second),
		HealthTimeout:       l.Duration("HEALTH_TIMEOUT", "", time.Second),
		HealthRise:          l.Int("HEALTH_RISE", "", 2),
		HealthFall:          l.Int("HEALTH_FALL", "", 2),
		GPUTimeout:          l.Duration("GPU_TIMEOUT", "", 300*time.Second),
		UpstreamTimeout:     l.Duration("UPSTREAM_TIMEOUT", "", 30*time.Second),
		StreamTimeout:       l.Duration("STREAM_TIMEOUT", "", time.Hour),
		HostsReloadInterval: l.Duration("HOSTS_RELOAD_INTERVAL", "", 30*time.Second),
		RateLimitIP:         l.Int("RATE_LIMIT_IP", "", 600),
		RateLimitGlobal:     l.Int("RATE_LIMIT_GLOBAL", "", 0),
		MaxConns:            l.Int("MAX_CONNS", "", 4096),
		ChallengeExempt:     l.List("CHALLENGE_EXEMPT_PATHS", "", []string{"/verify/", "/reset/", "/media/"}),

		AdmissionPolicy:       l.String("ADMISSION_POLICY", "", admission.PolicyFair),
		AdmissionQueueMax:     l.Int("ADMISSION_QUEUE_MAX", "", 256),
		AdmissionMaxWait:      l.Duration("ADMISSION_MAX_WAIT", "", 20*time.Second),
		AdmissionUserShare:    l.Float("ADMISSION_USER_SHARE", "", 0.5),
		AdmissionSyncInterval: l.Duration("ADMISSION_SYNC_INTERVAL", "", time.Second),
	}
	// The proxy drains in-flight generations on shutdown, so its default
	// drain covers the GPU timeout (SHUTDOWN_TIMEOUT still wins).
	c.ShutdownTimeout = l.Duration("SHUTDOWN_TIMEOUT", "", c.GPUTimeout+5*time.Second)
	c.MetricsAddr = config.LoadMetricsAddr(l, c.HTTPAddr)
	if err := l.Check(c.Validate()); err != nil {
		return Config{}, err
	}
	return c, nil
}

// AdmissionOff is the ADMISSION_POLICY that turns the proxy's admission
// queue off.
const AdmissionOff = "off"

// MetricsListenAddr is METRICS_ADDR, the internal listener of /metrics
// (service.MetricsConfig; "" for none).
func (c Config) MetricsListenAddr() string { return c.MetricsAddr }

// The binary opens the metrics listener only for a MetricsConfig.
var _ service.MetricsConfig = Config{}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate()}
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if len(c.AccountURLs) == 0 {
		bad("ACCOUNTSVC_URLS", "must name at least one accountsvc URL")
	}
	for _, u := range c.AccountURLs {
		if _, err := hosts.ParseAddress(u); err != nil {
			bad("ACCOUNTSVC_URLS", "%q: %v", u, err)
		}
	}
	if _, err := balancer.New(c.Policy); err != nil {
		bad("BALANCER_POLICY", "%v", err)
	}
	positive := map[string]time.Duration{
		"HEALTH_INTERVAL": c.HealthInterval, "HEALTH_TIMEOUT": c.HealthTimeout, "GPU_TIMEOUT": c.GPUTimeout,
		"UPSTREAM_TIMEOUT": c.UpstreamTimeout, "STREAM_TIMEOUT": c.StreamTimeout, "HOSTS_RELOAD_INTERVAL": c.HostsReloadInterval,
		"ADMISSION_MAX_WAIT": c.AdmissionMaxWait, "ADMISSION_SYNC_INTERVAL": c.AdmissionSyncInterval,
	}
	for name, d := range positive {
		if d <= 0 {
			bad(name, "must be positive")
		}
	}
	if c.HealthRise < 1 {
		bad("HEALTH_RISE", "must be at least 1")
	}
	if c.HealthFall < 1 {
		bad("HEALTH_FALL", "must be at least 1")
	}
	if c.RateLimitIP < 0 {
		bad("RATE_LIMIT_IP", "must not be negative")
	}
	if c.RateLimitGlobal < 0 {
		bad("RATE_LIMIT_GLOBAL", "must not be negative")
	}
	if c.AdmissionPolicy != admission.PolicyFair && c.AdmissionPolicy != admission.PolicyFIFO && c.AdmissionPolicy != AdmissionOff {
		bad("ADMISSION_POLICY", "%q is not fair, fifo or off", c.AdmissionPolicy)
	}
	if c.AdmissionQueueMax < 1 {
		bad("ADMISSION_QUEUE_MAX", "must be at least 1")
	}
	if !(c.AdmissionUserShare > 0 && c.AdmissionUserShare <= 1) {
		bad("ADMISSION_USER_SHARE", "must be in (0, 1]")
	}
	if c.MaxConns < 0 {
		bad("MAX_CONNS", "must not be negative")
	}
	return errors.Join(errs...)
}
