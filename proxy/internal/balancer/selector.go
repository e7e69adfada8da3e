package balancer

import (
	"fmt"
	"time"
)

// Job describes the request being placed.
type Job struct {
	// Work is the estimated cost in work units (see Estimator); 0 for
	// requests whose cost is negligible.
	Work float64
}

// Selector is a balancing policy. Select returns the available host of pool
// that should serve job at time now, skipping any host for which skip
// returns true (hosts already tried), or nil if none is available.
// Implementations are safe for concurrent use.
type Selector interface {
	Select(pool []*Upstream, job Job, now time.Time, skip func(*Upstream) bool) *Upstream
}

// Policy names accepted by New (BALANCER_POLICY).
const (
	PolicyEEFT       = "eeft"
	PolicyLeastConn  = "least_conn"
	PolicyRoundRobin = "round_robin"
)

// New returns the selector named by policy.
func New(policy string) (Selector, error) {
	switch policy {
	case PolicyEEFT, "":
		return &EEFT{}, nil
	case PolicyLeastConn:
		return &LeastConn{}, nil
	case PolicyRoundRobin:
		return &RoundRobin{}, nil
	}
	return nil, fmt.Errorf("unknown balancer policy %q (want eeft, least_conn or round_robin)", policy)
}
