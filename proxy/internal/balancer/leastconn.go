package balancer

import (
	"sync/atomic"
	"time"
)

// LeastConn picks the available host with the fewest in-flight requests
// divided by its weight (nginx least_conn). Ties go to the hosts in turn.
// The zero value is ready for use.
type LeastConn struct {
	next atomic.Uint64
}

// Select implements Selector.
func (l *LeastConn) Select(pool []*Upstream, _ Job, now time.Time, skip func(*Upstream) bool) *Upstream {
	n := len(pool)
	if n == 0 {
		return nil
	}
	off := int(l.next.Add(1) % uint64(n))
	var best *Upstream
	bestLoad := 0.0
	for i := range n {
		u := pool[(off+i)%n]
		if !u.Available(now) || (skip != nil && skip(u)) {
			continue
		}
		load := float64(u.InFlight()) / u.Weight()
		if best == nil || load < bestLoad {
			best, bestLoad = u, load
		}
	}
	return best
}
