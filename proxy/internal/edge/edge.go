// Package edge protects the proxy's data path before a request is forwarded:
// the shared edge policy (shared/edgepolicy: CORS, which the proxy owns for
// every response, and the legacy challenge-token check), per-IP and global
// rate limits counted in Redis (so proxy replicas share them), and a cap on
// concurrent client connections.
//
// A rate-limit check is one Redis round trip per request and limit, with a
// context bounded by a short timeout (past it the request goes through, as
// on any Redis error, so that a slow Redis cannot hold every request; this
// needs a client that honours context deadlines, go-redis
// ContextTimeoutEnabled). A key found over its limit is remembered until its
// window ends, so that a client hammering the proxy is refused without a
// round trip.
//
// This package must never read a request body or call an upstream.
package edge

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/edgepolicy"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// Config holds the edge settings.
type Config struct {
	// ChallengeTokens are the accepted challenge-token values; empty
	// strings are ignored. With none, every request that needs a token is
	// refused (edgepolicy: fail closed).
	ChallengeTokens []string
	// ChallengeExempt are path prefixes served without the token: pages
	// opened from emails (/verify/, /reset/) cannot send a header.
	ChallengeExempt []string
	// RateLimitIP is the requests per minute allowed per client IP;
	// 0 turns the limit off.
	RateLimitIP int
	// RateLimitGlobal is the requests per minute allowed across all
	// clients and proxy replicas; 0 turns the limit off.
	RateLimitGlobal int
	// TrustedProxies are peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// RateLimitTimeout bounds one rate-limit check in Redis (through the
	// context, so only with a client that honours context deadlines); past
	// it the request goes through. 0 means 100 ms.
	RateLimitTimeout time.Duration
}

// maxDenied bounds the remembered over-limit keys; beyond it expired ones
// are dropped, and all of them if none has expired.
const maxDenied = 10000

// Guard is the edge middleware in front of the forwarding handler. It is
// safe for concurrent use.
type Guard struct {
	cfg       Config
	challenge *edgepolicy.Challenge
	limiter   *ratelimit.Limiter
	next      http.Handler
	log       *zap.Logger
	now       func() time.Time

	deniedMu sync.RWMutex
	denied   map[string]ratelimit.Result // over-limit keys until their Reset
}

// NewGuard returns a guard passing accepted requests to next. limiter may be
// nil when both rate limits are off.
func NewGuard(cfg Config, limiter *ratelimit.Limiter, next http.Handler, log *zap.Logger) *Guard {
	g := &Guard{
		cfg: cfg, challenge: edgepolicy.NewChallenge(cfg.ChallengeTokens, cfg.ChallengeExempt...),
		limiter: limiter, next: next, log: log, now: time.Now, denied: map[string]ratelimit.Result{},
	}
	g.cfg.RateLimitTimeout = config.OrDefault(g.cfg.RateLimitTimeout, 100*time.Millisecond)
	if limiter == nil {
		g.cfg.RateLimitIP, g.cfg.RateLimitGlobal = 0, 0
	}
	return g
}

// ServeHTTP implements http.Handler: CORS (a preflight is answered here,
// without the token, as the legacy proxy did), the challenge token, the
// rate limits, then next.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if edgepolicy.CORS(w, r) {
		return
	}
	if !g.challenge.Allows(r) {
		edgepolicy.WriteChallengeFailure(w)
		return
	}
	if !g.allow(w, r) {
		return
	}
	g.next.ServeHTTP(w, r)
}

// allow applies the rate limits; over a limit it answers 429 and returns
// false. Redis errors let the request through (the limits protect
// capacity; an outage of Redis must not take the API down).
func (g *Guard) allow(w http.ResponseWriter, r *http.Request) bool {
	if g.cfg.RateLimitIP > 0 {
		ip := ratelimit.ClientIP(r, g.cfg.TrustedProxies)
		if !g.hit(w, r, "proxy_ip:"+ratelimit.IPSubject(ip), g.cfg.RateLimitIP) {
			return false
		}
	}
	if g.cfg.RateLimitGlobal > 0 {
		return g.hit(w, r, "proxy_global", g.cfg.RateLimitGlobal)
	}
	return true
}

func (g *Guard) hit(w http.ResponseWriter, r *http.Request, key string, limit int) bool {
	now := g.now()
	if res, ok := g.deniedUntilReset(key, now); ok {
		writeTooMany(w, res, now)
		return false
	}
	ctx, cancel := context.WithTimeout(r.Context(), g.cfg.RateLimitTimeout)
	res, err := g.limiter.Allow(ctx, key, limit, time.Minute)
	cancel()
	if err != nil {
		g.limiter.FailedOpen(err) // counted and logged at most every 10 s by the app's hook
		return true
	}
	if res.Allowed {
		return true
	}
	g.rememberDenied(key, res, now)
	writeTooMany(w, res, now)
	return false
}

// deniedUntilReset returns the remembered refusal of key if its window has
// not ended at now.
func (g *Guard) deniedUntilReset(key string, now time.Time) (ratelimit.Result, bool) {
	g.deniedMu.RLock()
	res, ok := g.denied[key]
	g.deniedMu.RUnlock()
	return res, ok && now.Before(res.Reset)
}

// rememberDenied records that key is over its limit until res.Reset. In a
// fixed window a key over its limit stays over it until the window ends,
// whatever other replicas count, so the refusal is exact.
func (g *Guard) rememberDenied(key string, res ratelimit.Result, now time.Time) {
	g.deniedMu.Lock()
	defer g.deniedMu.Unlock()
	if len(g.denied) >= maxDenied {
		for k, v := range g.denied {
			if !now.Before(v.Reset) {
				delete(g.denied, k)
			}
		}
		if len(g.denied) >= maxDenied {
			clear(g.denied)
		}
	}
	g.denied[key] = res
}

// writeTooMany answers 429 with the rate-limit headers of res at now.
func writeTooMany(w http.ResponseWriter, res ratelimit.Result, now time.Time) {
	retry := max((res.Reset.Sub(now)+time.Second-1)/time.Second, 1)
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(res.Reset.Unix(), 10))
	h.Set("Retry-After", strconv.FormatInt(int64(retry), 10))
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"message":"Too many requests"}` + "\n"))
}

// LimitListener returns a listener that keeps at most n client connections
// open at once; further connections wait in the kernel backlog until one
// closes. n ≤ 0 returns ln unchanged.
func LimitListener(ln net.Listener, n int) net.Listener {
	if n <= 0 {
		return ln
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close closes the listener and wakes an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	release func()
	once    sync.Once
}

// Close closes the connection and releases its slot once.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
