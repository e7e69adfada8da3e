// Package adminguard protects the operator surface: every /admin route of
// every service (the proxy's console and host list, accountsvc's credit
// grants). Each request is rate-limited per client IP (the trusted-proxy
// rule of ratelimit.ClientIP) and leaves one structured audit line, whatever
// its outcome; token routes also check the admin token here.
//
// The limits stay on in production even with RATE_LIMITS=off (see
// Enforced): an admin token or a console login must not be guessable at
// network speed. The audit line never holds the token, the cookie or the
// body. This package holds no state of its own: counts live in Redis
// through shared/ratelimit.
package adminguard

import (
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// The default limits, per client IP and minute. The console page polls two
// fragments (about 42 requests a minute); a person signs in a few times.
const (
	DefaultLimit      = 120
	DefaultLoginLimit = 10
)

// Options configure a Guard.
type Options struct {
	// Token is the admin token; empty disables the token routes (403).
	Token string
	// Limiter counts the requests. Nil turns the limits off (the caller
	// logs why); build it with Enforced so that RATE_LIMITS=off does not
	// turn it off in production.
	Limiter *ratelimit.Limiter
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// Log receives the audit lines. Required.
	Log *zap.Logger
	// Limit and LoginLimit are requests per client IP and minute on the
	// admin routes and on the console's sign-in (0: the defaults).
	Limit, LoginLimit int
}

// Guard builds the middleware of the admin routes. It is safe for
// concurrent use.
type Guard struct {
	opts  Options
	token echo.MiddlewareFunc
}

// New returns a Guard.
func New(opts Options) *Guard {
	if opts.Limit <= 0 {
		opts.Limit = DefaultLimit
	}
	if opts.LoginLimit <= 0 {
		opts.LoginLimit = DefaultLoginLimit
	}
	return &Guard{opts: opts, token: auth.AdminToken(opts.Token)}
}

// Enforced reports whether the admin limits apply: always in production,
// else when rate limits are on (RATE_LIMITS).
func Enforced(environment string, rateLimits bool) bool {
	return rateLimits || environment == "production"
}

// Token is the middleware of an admin API route: audit, the per-IP limit,
// then the admin token (auth.AdminToken: Bearer or X-Admin-Token).
func (g *Guard) Token() echo.MiddlewareFunc {
	return chain(g.audit(func(r *http.Request) bool {
		return r.Header.Get("X-Admin-Token") != "" || r.Header.Get(echo.HeaderAuthorization) != ""
	}), g.limit("admin", g.opts.Limit), g.token)
}

// Session is the middleware of a console route that checks its own session
// cookie (named cookie): audit and the per-IP limit.
func (g *Guard) Session(cookie string) echo.MiddlewareFunc {
	return chain(g.audit(func(r *http.Request) bool {
		_, err := r.Cookie(cookie)
		return err == nil
	}), g.limit("admin", g.opts.Limit))
}

// Login is the middleware of the console's sign-in form: audit, the
// general per-IP limit and the stricter one on sign-in attempts.
func (g *Guard) Login() echo.MiddlewareFunc {
	return chain(g.audit(func(r *http.Request) bool { return r.ContentLength != 0 }),
		g.limit("admin", g.opts.Limit), g.limit("admin-login", g.opts.LoginLimit))
}

// chain runs mws in order before the handler.
func chain(mws ...echo.MiddlewareFunc) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		for i := len(mws) - 1; i >= 0; i-- {
			next = mws[i](next)
		}
		return next
	}
}

// limit counts every request of the route per client IP under rule name.
func (g *Guard) limit(name string, perMinute int) echo.MiddlewareFunc {
	if g.opts.Limiter == nil {
		return func(next echo.HandlerFunc) echo.HandlerFunc { return next }
	}
	return g.opts.Limiter.Middleware(ratelimit.Rule{
		Name: name, Limit: perMinute, Window: time.Minute, Key: ratelimit.ByIP(g.opts.TrustedProxies),
		Message: "Too many admin requests",
	})
}

// audit writes one line per request once the response is known: the
// client IP, the route, whether a credential was presented (never the
// credential), the status and the outcome.
func (g *Guard) audit(presented func(*http.Request) bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			if err != nil {
				// Render the error now, so that the status is known.
				c.Error(err)
			}
			r := c.Request()
			status := c.Response().Status
			g.opts.Log.Info("admin request",
				zap.String("ip", ratelimit.ClientIP(r, g.opts.TrustedProxies)),
				zap.String("method", r.Method),
				zap.String("route", c.Path()),
				zap.Bool("credential_presented", presented(r)),
				zap.Int("status", status),
				zap.String("outcome", outcome(status)),
				zap.String("user_agent", truncate(r.UserAgent(), 200)))
			return nil
		}
	}
}

// outcome names what happened to an admin request by its status: ok,
// denied (401/403), rate_limited (429), rejected (other 4xx) or failed.
func outcome(status int) string {
	switch {
	case status == http.StatusTooManyRequests:
		return "rate_limited"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return "denied"
	case status >= 500:
		return "failed"
	case status >= 400:
		return "rejected"
	}
	return "ok"
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
