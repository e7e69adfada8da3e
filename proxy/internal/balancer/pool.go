package balancer

import (
	"sync/atomic"
	"time"
)

// Pool is a set of upstreams that can be replaced atomically while requests
// read it. The zero value is an empty pool ready for use.
type Pool struct {
	hosts atomic.Pointer[[]*Upstream]
}

// NewPool returns a pool holding hosts.
func NewPool(hosts []*Upstream) *Pool {
	p := &Pool{}
	p.Set(hosts)
	return p
}

// Hosts returns the current snapshot. The caller must not modify it.
func (p *Pool) Hosts() []*Upstream {
	if h := p.hosts.Load(); h != nil {
		return *h
	}
	return nil
}

// Set replaces the snapshot; hosts must not be modified afterwards.
func (p *Pool) Set(hosts []*Upstream) {
	p.hosts.Store(&hosts)
}

// OthersAvailable reports whether a host of the pool other than u is
// available at now. A nil pool has none.
func (p *Pool) OthersAvailable(u *Upstream, now time.Time) bool {
	if p == nil {
		return false
	}
	for _, h := range p.Hosts() {
		if h != u && h.Available(now) {
			return true
		}
	}
	return false
}
