// Package httpapi is gpusvc's HTTP layer: the legacy GPU routes (POST
// /images, /extend_prompt, /interrogate, /upscale, /mask) with their legacy
// request fields, auth and rate limits, plus GET /models and GET /health.
// Handlers parse the legacy bodies into generate's types and render the
// legacy response shapes; every error goes to the shared error handler.
//
// This package must never run inference, touch the database or charge
// credits itself: it calls package generate.
package httpapi

import (
	"context"
	"net/http"
	"net/netip"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/gpuroute"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// Options are the dependencies of the routes. All are required but Log.
type Options struct {
	Generate *generate.Service
	Registry *models.Registry
	Capacity *capacity.Limiter
	Verifier *auth.Verifier
	Limiter  *ratelimit.Limiter
	// ChallengeTokens are the accepted challenge-token values.
	ChallengeTokens []string
	// AnonymousUserID and AnonymousEnabled: token-less POST /images runs
	// as this user (legacy 67) when enabled, free and rate-limited per IP.
	AnonymousUserID  int64
	AnonymousEnabled bool
	// TrustedProxies are the peers whose X-Forwarded-For names the client.
	TrustedProxies []netip.Prefix
	// Ping checks the database for /health (503 when it fails).
	Ping func(ctx context.Context) error
	// RedisStatus reports Redis in the /health body ("ok" or "degraded");
	// it never fails the check. Nil reports nothing.
	RedisStatus func(ctx context.Context) string
	// Jobs queues async image generations (POST /v1/images/generations);
	// nil leaves the route out.
	Jobs ImageEnqueuer
	Log  *zap.Logger
}

type handlers struct {
	Options
	gen *generate.Service
	log *zap.Logger
}

// Register adds every gpusvc route to e (one list, legacy limits per
// §3.2/§3.7; check order: challenge token or JWT, then the rate limit,
// then the handler).
func Register(e *echo.Echo, o Options) {
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	h := &handlers{Options: o, gen: o.Generate, log: log.Named("httpapi")}
	ct := auth.ChallengeToken(o.ChallengeTokens...)
	byIP := ratelimit.ByIP(o.TrustedProxies)
	limit := func(name string, n int, key ratelimit.KeyFunc) echo.MiddlewareFunc {
		return o.Limiter.Middleware(ratelimit.Rule{Name: name, Limit: n, Window: time.Minute, Key: key})
	}
	// Legacy "32/min if user else 16/min": signed-in callers per user,
	// anonymous ones per client IP.
	anonByIP := func(r *http.Request) string {
		if c, ok := auth.FromContext(r.Context()); ok && !c.Anonymous {
			return ""
		}
		return byIP(r)
	}

	e.GET("/health", h.handleHealth)
	// The GPU routes, as the shared table names them (the proxy sends
	// exactly these here).
	// Routes that do GPU work tell the proxy when their slot frees, and
	// when the host was too full to take them.
	route := func(r gpuroute.Route, fn echo.HandlerFunc, m ...echo.MiddlewareFunc) {
		if r.MeasuresWork() {
			m = append([]echo.MiddlewareFunc{hostFull, slotNotice}, m...)
		}
		e.Add(r.Method(), r.Path(), fn, m...)
	}
	route(gpuroute.Models, h.handleModelList)
	route(gpuroute.Images, h.handleImageCreate, ct, o.Verifier.Optional(o.AnonymousUserID, o.AnonymousEnabled),
		limit("images_user", 32, ratelimit.ByUser), limit("images_anonymous", 16, anonByIP))
	route(gpuroute.ExtendPrompt, h.handleExtendPrompt, ct, limit("extend_prompt", 5, byIP))
	route(gpuroute.Interrogate, h.handleInterrogate, o.Verifier.Required(), limit("interrogate", 20, ratelimit.ByUser))
	route(gpuroute.Upscale, h.handleUpscale, o.Verifier.Required(), limit("upscale", 10, ratelimit.ByUser))
	route(gpuroute.Mask, h.handleMask, ct, limit("mask", 6, byIP))
	if o.Jobs != nil {
		route(gpuroute.Generations, h.handleImageGenerationCreate, o.Verifier.Required(),
			limit("images_async", 32, ratelimit.ByUser))
	}
}
