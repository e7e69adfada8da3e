package ratelimit

import (
	"net/http"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
)

// KeyFunc returns the subject a request is counted under, e.g. "ip:1.2.3.4"
// or "user:5". An empty key means the rule does not apply to the request.
type KeyFunc func(r *http.Request) string

// Rule is one limit: Limit hits per Window per key.
type Rule struct {
	// Name identifies the rule in Redis keys; rules with the same name and
	// key share a counter. Required.
	Name string
	// Limit is the number of hits allowed per Window. Required, > 0.
	Limit int
	// Window is the fixed window length. Required, >= 1ms.
	Window time.Duration
	// Key picks the subject (ByIP, ByUser). Required.
	Key KeyFunc
	// Message is the public 429 message; empty means "Too many requests".
	Message string
}

// Middleware is echo middleware enforcing rule. Place it after the auth
// middleware (legacy order: auth, then rate limit, then handler) so that
// ByUser sees the claims. It sets X-RateLimit-Limit, X-RateLimit-Remaining
// and X-RateLimit-Reset (epoch seconds) and, over the limit, returns a 429
// *apperr.Error with RetryAfter, which the shared error handler renders as
// JSON with Retry-After. Redis errors let the request through and go to
// Options.OnError. A disabled limiter sets no headers.
//
// It panics if rule is incomplete, at route setup rather than per request.
func (l *Limiter) Middleware(rule Rule) echo.MiddlewareFunc {
	if rule.Name == "" || rule.Limit <= 0 || rule.Window < time.Millisecond || rule.Key == nil {
		panic("ratelimit: incomplete rule " + strconv.Quote(rule.Name))
	}
	msg := rule.Message
	if msg == "" {
		msg = "Too many requests"
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if l.opts.Disabled {
				return next(c)
			}
			key := rule.Key(r)
			if key == "" {
				return next(c)
			}
			res, err := l.Allow(r.Context(), rule.Name+":"+key, rule.Limit, rule.Window)
			if err != nil {
				l.FailedOpen(err)
				return next(c)
			}
			h := c.Response().Header()
			h.Set("X-RateLimit-Limit", strconv.Itoa(res.Limit))
			h.Set("X-RateLimit-Remaining", strconv.Itoa(res.Remaining))
			h.Set("X-RateLimit-Reset", strconv.FormatInt(res.Reset.Unix(), 10))
			if !res.Allowed {
				return apperr.TooManyRequests(msg).WithRetryAfter(res.RetryAfter)
			}
			return next(c)
		}
	}
}
