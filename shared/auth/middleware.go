package auth

import (
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/edgepolicy"
)

// Required is echo middleware that lets a request through only with a valid
// token in Authorization, storing its claims in the request context.
// Otherwise it returns the 401 *apperr.Error of Verify.
func (v *Verifier) Required() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			claims, err := v.Verify(r.Context(), r.Header.Get(echo.HeaderAuthorization))
			if err != nil {
				return err
			}
			c.SetRequest(r.WithContext(WithClaims(r.Context(), claims)))
			return next(c)
		}
	}
}

// Optional is echo middleware for routes open to anonymous callers (legacy
// POST /images). Without an Authorization header (or with an empty one) the
// request proceeds with anonymous claims (UserID anonymousID, Anonymous
// true) when allowAnonymous is set, else it gets 401 "Token is missing!".
// A header that is present but invalid, expired or revoked always gets 401:
// it never silently becomes anonymous (legacy defect S9).
func (v *Verifier) Optional(anonymousID int64, allowAnonymous bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			header := r.Header.Get(echo.HeaderAuthorization)
			claims := Claims{UserID: anonymousID, Version: LegacyVersion, Anonymous: true}
			if tokenFromHeader(header) != "" || !allowAnonymous {
				var err error
				if claims, err = v.Verify(r.Context(), header); err != nil {
					return err
				}
			}
			c.SetRequest(r.WithContext(WithClaims(r.Context(), claims)))
			return next(c)
		}
	}
}

// ChallengeToken is echo middleware applying the shared challenge-token
// check (edgepolicy.Challenge) for tokens: the current one and any previous
// ones during a rotation, compared in constant time. Empty tokens are
// ignored; with none every request is refused. A CORS preflight passes.
// Failure is 401 {"message":"challenge-token header missing / invalid"}.
func ChallengeToken(tokens ...string) echo.MiddlewareFunc {
	check := edgepolicy.NewChallenge(tokens)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if !check.Allows(c.Request()) {
				return apperr.Unauthorized(edgepolicy.MsgChallengeInvalid)
			}
			return next(c)
		}
	}
}

// AdminToken is echo middleware for operator routes: the request must carry
// token as "Authorization: Bearer <token>" or "X-Admin-Token: <token>",
// compared in constant time; otherwise 401. An empty token disables the
// routes: every request gets 403.
func AdminToken(token string) echo.MiddlewareFunc {
	accepted := edgepolicy.NewSecrets(token)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			if len(accepted) == 0 {
				return apperr.Forbidden("Admin access is disabled")
			}
			h := c.Request().Header
			presented := h.Get("X-Admin-Token")
			if a := h.Get(echo.HeaderAuthorization); presented == "" && len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
				presented = strings.TrimSpace(a[7:])
			}
			if !accepted.Match(presented) {
				return apperr.Unauthorized("Admin token missing / invalid")
			}
			return next(c)
		}
	}
}
