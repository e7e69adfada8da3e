package auth

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
)

// MsgChallengeInvalid is the legacy public message of a failed
// challenge-token check.
const MsgChallengeInvalid = "challenge-token header missing / invalid"

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

// tokenSet compares a presented secret against accepted ones in constant
// time. Both sides are hashed first so that neither the length of the
// accepted tokens nor the position of a mismatch leaks through timing, and
// every accepted token is compared (no early exit).
type tokenSet [][sha256.Size]byte

func newTokenSet(tokens ...string) tokenSet {
	var s tokenSet
	for _, t := range tokens {
		if t != "" {
			s = append(s, sha256.Sum256([]byte(t)))
		}
	}
	return s
}

func (s tokenSet) match(presented string) bool {
	if presented == "" {
		return false
	}
	h := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range s {
		ok |= subtle.ConstantTimeCompare(h[:], s[i][:])
	}
	return ok == 1
}

// ChallengeToken is echo middleware requiring the `challenge-token` header to
// equal one of tokens (the current one and any previous ones during a
// rotation), compared in constant time. Empty tokens are ignored; with none
// every request is refused. CORS preflight (OPTIONS) passes. Failure is 401
// {"message":"challenge-token header missing / invalid"}.
//
// The challenge token ships with the frontend: it is a speed bump against
// casual scripting, not authentication (legacy S8).
func ChallengeToken(tokens ...string) echo.MiddlewareFunc {
	accepted := newTokenSet(tokens...)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			if r.Method == http.MethodOptions {
				return next(c)
			}
			if !accepted.match(r.Header.Get("challenge-token")) {
				return apperr.Unauthorized(MsgChallengeInvalid)
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
	accepted := newTokenSet(token)
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
			if !accepted.match(presented) {
				return apperr.Unauthorized("Admin token missing / invalid")
			}
			return next(c)
		}
	}
}
