// Package balancer decides which upstream host serves a request.
//
// An Upstream holds the live state of one backend (in-flight requests,
// outstanding work, learned speed, passive and active health) in atomics, so
// the data path never takes a lock. A Pool is an immutable, atomically
// swapped snapshot of the upstreams that may be chosen. A Selector is one
// balancing policy: EEFT (earliest expected finish time, the default),
// LeastConn and RoundRobin.
//
// Time is always passed in by the caller (now), so the same code runs under
// the real clock in the proxy and under a virtual clock in the simulation.
//
// This package must never perform I/O, log, or import HTTP machinery beyond
// net/url.
package balancer
