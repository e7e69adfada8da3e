// Package edge protects the proxy's data path before a request is forwarded:
// CORS (the proxy owns it for every response), the legacy challenge-token
// check, per-IP and global rate limits counted in Redis (so proxy replicas
// share them), and a cap on concurrent client connections.
//
// This package must never read a request body or call an upstream.
package edge

import (
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// ChallengeHeader is the legacy shared-secret header.
const ChallengeHeader = "challenge-token"

// challengeBody is the 401 body: the legacy API's JSON message (the old
// proxy answered plain text; every error here is JSON).
var challengeBody = []byte(`{"message":"` + auth.MsgChallengeInvalid + `"}` + "\n")

// exposed are the response headers browsers may read.
const exposed = "X-Image-Id, X-Image-Ids, X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"

// Config holds the edge settings.
type Config struct {
	// ChallengeTokens are the accepted challenge-token values; empty
	// strings are ignored. With none, the check is off.
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
}

// Guard is the edge middleware in front of the forwarding handler. It is
// safe for concurrent use.
type Guard struct {
	cfg     Config
	tokens  [][sha256.Size]byte
	limiter *ratelimit.Limiter
	next    http.Handler
	log     *zap.Logger
}

// NewGuard returns a guard passing accepted requests to next. limiter may be
// nil when both rate limits are off.
func NewGuard(cfg Config, limiter *ratelimit.Limiter, next http.Handler, log *zap.Logger) *Guard {
	g := &Guard{cfg: cfg, limiter: limiter, next: next, log: log}
	for _, t := range cfg.ChallengeTokens {
		if t != "" {
			g.tokens = append(g.tokens, sha256.Sum256([]byte(t)))
		}
	}
	if limiter == nil {
		g.cfg.RateLimitIP, g.cfg.RateLimitGlobal = 0, 0
	}
	return g
}

// ServeHTTP implements http.Handler.
func (g *Guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if origin := r.Header.Get("Origin"); origin != "" {
		h["Vary"] = []string{"Origin"}
		h["Access-Control-Allow-Origin"] = []string{origin}
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			// Preflight is answered here, without the token (legacy).
			h.Add("Vary", "Access-Control-Request-Method")
			h.Add("Vary", "Access-Control-Request-Headers")
			h.Set("Access-Control-Allow-Methods", "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT")
			if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
				h.Set("Access-Control-Allow-Headers", rh)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusOK)
			return
		}
		h["Access-Control-Expose-Headers"] = []string{exposed}
	}
	if !g.CheckChallenge(r) {
		WriteChallengeFailure(w)
		return
	}
	if !g.allow(w, r) {
		return
	}
	g.next.ServeHTTP(w, r)
}

// WriteChallengeFailure answers 401 with the legacy API's JSON body
// {"message": "challenge-token header missing / invalid"}.
func WriteChallengeFailure(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(challengeBody)
}

// CheckChallenge reports whether r carries an accepted challenge token (or
// needs none). Tokens are compared as SHA-256 digests in constant time, and
// every accepted token is compared, so timing reveals nothing.
func (g *Guard) CheckChallenge(r *http.Request) bool {
	if len(g.tokens) == 0 {
		return true
	}
	for _, p := range g.cfg.ChallengeExempt {
		if strings.HasPrefix(r.URL.Path, p) {
			return true
		}
	}
	v := r.Header.Get(ChallengeHeader)
	if v == "" {
		return false
	}
	got := sha256.Sum256([]byte(v))
	ok := 0
	for i := range g.tokens {
		ok |= subtle.ConstantTimeCompare(got[:], g.tokens[i][:])
	}
	return ok == 1
}

// allow applies the rate limits; over a limit it answers 429 and returns
// false. Redis errors let the request through (the limits protect
// capacity; an outage of Redis must not take the API down).
func (g *Guard) allow(w http.ResponseWriter, r *http.Request) bool {
	if g.cfg.RateLimitIP > 0 {
		ip := ratelimit.ClientIP(r, g.cfg.TrustedProxies)
		if !g.hit(w, r, "proxy_ip:"+ip, g.cfg.RateLimitIP) {
			return false
		}
	}
	if g.cfg.RateLimitGlobal > 0 {
		return g.hit(w, r, "proxy_global", g.cfg.RateLimitGlobal)
	}
	return true
}

func (g *Guard) hit(w http.ResponseWriter, r *http.Request, key string, limit int) bool {
	res, err := g.limiter.Allow(r.Context(), key, limit, time.Minute)
	if err != nil {
		g.log.Warn("rate limit unavailable", zap.Error(err))
		return true
	}
	if res.Allowed {
		return true
	}
	h := w.Header()
	h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset", strconv.FormatInt(res.Reset.Unix(), 10))
	h.Set("Retry-After", strconv.Itoa(int(res.RetryAfter/time.Second)))
	h.Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusTooManyRequests)
	_, _ = w.Write([]byte(`{"message":"Too many requests"}` + "\n"))
	return false
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
