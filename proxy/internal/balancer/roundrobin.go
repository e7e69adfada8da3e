package balancer

import (
	"sync/atomic"
	"time"
)

// RoundRobin hands requests to the available hosts in turn, ignoring load
// and weight. Kept for comparison. The zero value is ready for use.
type RoundRobin struct {
	next atomic.Uint64
}

// Select implements Selector.
func (r *RoundRobin) Select(pool []*Upstream, _ Job, now time.Time, skip func(*Upstream) bool) *Upstream {
	n := uint64(len(pool))
	for range n {
		u := pool[r.next.Add(1)%n]
		if u.Available(now) && (skip == nil || !skip(u)) {
			return u
		}
	}
	return nil
}
