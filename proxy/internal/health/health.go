// Package health runs the active health checks: every interval it sends
// GET /health to every upstream of the pools it watches, applies rise/fall
// thresholds, and records the capacity a gpusvc host reports (slots,
// in_flight, queued) on its balancer.Upstream. Passive checks (failures seen
// on real traffic) are recorded by the forwarding code through
// balancer.Upstream.RecordFailure.
//
// This package must never send anything but GET requests to the health path.
package health

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/config"
)

// maxBody bounds how much of a /health answer is read.
const maxBody = 64 << 10

// Config holds the active check settings.
type Config struct {
	// Path is the health path on each host; "" means "/health".
	Path string
	// Interval between check rounds; 0 means 2 s.
	Interval time.Duration
	// Timeout of one check; 0 means 1 s.
	Timeout time.Duration
	// Rise is the consecutive passes that mark a down host up; 0 means 2.
	Rise int
	// Fall is the consecutive failures that mark an up host down; 0 means 2.
	Fall int
}

func (c Config) withDefaults() Config {
	if c.Path == "" {
		c.Path = "/health"
	}
	c.Interval = config.OrDefault(c.Interval, 2*time.Second)
	c.Timeout = config.OrDefault(c.Timeout, time.Second)
	c.Rise = config.OrDefault(c.Rise, 2)
	c.Fall = config.OrDefault(c.Fall, 2)
	return c
}

// Checker checks the upstreams of some pools. Run owns its state.
type Checker struct {
	cfg    Config
	client *http.Client
	pools  []*balancer.Pool
	log    *zap.Logger
	now    func() time.Time

	counts map[*balancer.Upstream]*streak
}

// streak counts consecutive check results of one host.
type streak struct {
	passes, fails int
}

// NewChecker returns a checker of the hosts in pools using client (whose
// Transport should be the proxy's, so checks share its connections).
func NewChecker(cfg Config, client *http.Client, log *zap.Logger, pools ...*balancer.Pool) *Checker {
	return &Checker{
		cfg:    cfg.withDefaults(),
		client: client,
		pools:  pools,
		log:    log,
		now:    time.Now,
		counts: map[*balancer.Upstream]*streak{},
	}
}

// Run checks every host each interval until ctx ends, then returns nil.
// Hosts that are down are also checked halfway between rounds, so a
// restarted host is back after about Rise × Interval / 2.
func (c *Checker) Run(ctx context.Context) error {
	c.check(ctx, false)
	tick := 0
	clock.Every(ctx, c.cfg.Interval/2, func(ctx context.Context) {
		tick++
		c.check(ctx, tick%2 == 1)
	})
	return nil
}

// check runs one round over every host, or only over the hosts the active
// checks consider down.
func (c *Checker) check(ctx context.Context, downOnly bool) {
	var ups []*balancer.Upstream
	for _, p := range c.pools {
		for _, u := range p.Hosts() {
			if !downOnly || !u.ActiveHealthy() {
				ups = append(ups, u)
			}
		}
	}
	if len(ups) == 0 {
		return
	}
	results := make([]balancer.CheckResult, len(ups))
	var wg sync.WaitGroup
	for i, u := range ups {
		wg.Go(func() { results[i] = c.probe(ctx, u) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	live := make(map[*balancer.Upstream]bool, len(ups))
	for i, u := range ups {
		live[u] = true
		s := c.counts[u]
		if s == nil {
			s = &streak{}
			c.counts[u] = s
		}
		r := results[i]
		wasHealthy := u.ActiveHealthy()
		healthy := wasHealthy
		if r.Err == nil {
			s.passes++
			s.fails = 0
			if !wasHealthy && s.passes >= c.cfg.Rise {
				healthy = true
			}
		} else {
			s.fails++
			s.passes = 0
			if wasHealthy && s.fails >= c.cfg.Fall {
				healthy = false
			}
		}
		u.SetCheck(r, healthy)
		switch {
		case healthy && !wasHealthy:
			c.log.Info("host up", zap.String("address", u.Address))
		case !healthy && wasHealthy:
			c.log.Warn("host down", zap.String("address", u.Address), zap.Error(r.Err))
		}
	}
	if !downOnly {
		for u := range c.counts {
			if !live[u] {
				delete(c.counts, u)
			}
		}
	}
}

// report is the part of a /health body the proxy reads.
type report struct {
	Slots    int64 `json:"slots"`
	InFlight int64 `json:"in_flight"`
	Queued   int64 `json:"queued"`
	Queue    int64 `json:"queue_size"`
}

// probe sends one GET to u's health path.
func (c *Checker) probe(ctx context.Context, u *balancer.Upstream) balancer.CheckResult {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	target := *u.URL
	target.Path = u.URL.Path + c.cfg.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return balancer.CheckResult{At: c.now(), Err: fmt.Errorf("build health request: %w", err)}
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return balancer.CheckResult{At: c.now(), Err: fmt.Errorf("get %s: %w", c.cfg.Path, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return balancer.CheckResult{At: c.now(), Err: fmt.Errorf("read %s: %w", c.cfg.Path, err)}
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return balancer.CheckResult{At: c.now(), Err: fmt.Errorf("%s answered %d", c.cfg.Path, resp.StatusCode)}
	}
	r := balancer.CheckResult{At: c.now()}
	var rep report
	// Hosts that do not report capacity (accountsvc) answer other JSON or
	// none; that is still a pass.
	if json.Unmarshal(body, &rep) == nil && rep.Slots > 0 {
		r.Slots = min(rep.Slots, 1024)
		r.InFlight = max(rep.InFlight, 0)
		r.Queued = max(rep.Queued, 0)
		r.QueueSize = min(max(rep.Queue, 0), 1024)
	}
	return r
}
