// Package accountapi is the HTTP API of accounts, login and referrals
// (docs/legacy-contract.md §3.1), wire-compatible with the legacy frontend: same
// paths, methods, headers, request fields and success and error bodies,
// with the legacy defects S1-S4, S7, S10, R1-R4 and C1-C3 fixed.
//
// Handlers read the request, call package account and map the result to
// the legacy JSON shape; errors go to the shared echo error handler. This
// package must never hold SQL or business rules, and never write a password,
// hash, key or another user's data into a response or a log.
package accountapi

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/accountsvc/internal/account"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/web"
)

// Legacy public messages of this API.
const (
	msgMissingCredentials = "Missing Credentials!"
	msgInvalidRequest     = "Invalid request!"
	msgEditingWrongUser   = "Editing wrong user!"
	msgWrongUser          = "Wrong user!"
	msgInvalidDataNoBang  = "Invalid data"
)

// Revoker puts a token on the deny-list (auth.Revocations).
type Revoker interface {
	Revoke(ctx context.Context, c auth.Claims) error
}

// Options are the API's dependencies. All are required.
type Options struct {
	Service *account.Service
	// Verifier checks JWTs (with revocation).
	Verifier *auth.Verifier
	// Revoker deny-lists tokens at logout.
	Revoker Revoker
	// Limiter counts the rate limits (disabled with RATE_LIMITS=off).
	Limiter *ratelimit.Limiter
	// ChallengeTokens are the accepted challenge-token values.
	ChallengeTokens []string
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
}

// API serves the account routes.
type API struct {
	svc     *account.Service
	verify  *auth.Verifier
	revoker Revoker
	limiter *ratelimit.Limiter
	ct      echo.MiddlewareFunc
	trusted []netip.Prefix
}

// New returns the API.
func New(o Options) *API {
	return &API{
		svc: o.Service, verify: o.Verifier, revoker: o.Revoker, limiter: o.Limiter,
		ct: auth.ChallengeToken(o.ChallengeTokens...), trusted: o.TrustedProxies,
	}
}

// Register adds the routes to e. Middleware order is the legacy one:
// challenge token or JWT, then the rate limit, then the handler.
func (a *API) Register(e *echo.Echo) {
	byIP := ratelimit.ByIP(a.trusted)
	ipRule := func(name string, n int) echo.MiddlewareFunc {
		return a.limiter.Middleware(ratelimit.Rule{Name: "account_" + name, Limit: n, Window: time.Minute, Key: byIP})
	}
	userRule := func(name string, n int) echo.MiddlewareFunc {
		return a.limiter.Middleware(ratelimit.Rule{Name: "account_" + name, Limit: n, Window: time.Minute, Key: ratelimit.ByUser})
	}
	jwt := a.verify.Required()

	// Challenge-token routes, 5/min per IP each (legacy).
	e.POST("/login", a.handleLogin, a.ct, ipRule("login", 5))
	e.POST("/users", a.handleSignup, a.ct, ipRule("signup", 5))
	e.POST("/users/verify/resend", a.handleResend, a.ct, ipRule("verify_resend", 5))
	e.POST("/users/verify/:verify_key", a.handleVerify, a.ct, ipRule("verify", 5))
	e.POST("/users/password/reset", a.handleResetRequest, a.ct, ipRule("reset_request", 5))
	e.GET("/users/password/reset/:reset_key", a.handleResetCheck, a.ct, ipRule("reset_check", 5))
	e.POST("/users/password/reset/:reset_key", a.handleReset, a.ct, ipRule("reset", 5))

	// JWT routes, per user (legacy limits; the legacy system had none on
	// referral-token and credits, R4).
	e.POST("/logout", a.handleLogout, jwt, userRule("logout", 10))
	e.GET("/users/:user_id", a.handleProfileGet, jwt, userRule("profile_get", 20))
	e.PUT("/users/:user_id", a.handleProfileUpdate, jwt, userRule("profile_update", 15))
	e.GET("/users/:user_id/referral-token", a.handleReferralToken, jwt, userRule("referral_token", 30))
	// GET /users/:user_id/credits is served by package creditapi (the
	// ledger's owner), with the same legacy shape and ownership message.
	e.GET("/users/:user_id/referrals", a.handleReferrals, jwt, userRule("referrals", 20))
}

type statusResponse struct {
	Status string `json:"status"`
}

var success = statusResponse{Status: "success"}

type idResponse struct {
	ID int64 `json:"id"`
}

// owner returns the caller's id if the path's user_id names them. The
// legacy API compared the two as strings and answered 400 msg otherwise.
func owner(c echo.Context, msg string) (int64, error) {
	claims, ok := auth.FromContext(c.Request().Context())
	if !ok || claims.Anonymous {
		return 0, apperr.Unauthorized(auth.MsgTokenMissing)
	}
	if c.Param("user_id") != strconv.FormatInt(claims.UserID, 10) {
		return 0, apperr.Invalid(msg)
	}
	return claims.UserID, nil
}

// ---- signup and verification ----

type signupRequest struct {
	Email         *string         `json:"email"`
	Password      *string         `json:"password"`
	Metadata      json.RawMessage `json:"metadata"`
	ReferralToken *string         `json:"referralToken"`
}

func (a *API) handleSignup(c echo.Context) error {
	var req signupRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Email == nil || req.Password == nil || *req.Email == "" || *req.Password == "" {
		return apperr.Invalid(account.MsgInvalidData)
	}
	in := account.SignupInput{Email: *req.Email, Password: *req.Password, Metadata: req.Metadata}
	if req.ReferralToken != nil {
		in.ReferralToken = *req.ReferralToken
	}
	id, err := a.svc.Signup(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, idResponse{ID: id})
}

func (a *API) handleVerify(c echo.Context) error {
	id, err := a.svc.Verify(c.Request().Context(), c.Param("verify_key"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, idResponse{ID: id})
}

type emailRequest struct {
	Email *string `json:"email"`
}

// handleResend always answers 200 {"status":"success"} (issue 10): a body
// that is not JSON, or has no usable email, does nothing and answers the
// same, so the route tells nothing about any address. Only a body over the
// size limit is refused (413).
func (a *API) handleResend(c echo.Context) error {
	var req emailRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		if apperr.Is(err, apperr.KindInvalid) {
			return c.JSON(http.StatusOK, success)
		}
		return err
	}
	if req.Email != nil && *req.Email != "" {
		if err := a.svc.ResendVerification(c.Request().Context(), *req.Email); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, success)
}

// ---- login and logout ----

type loginResponse struct {
	ID    int64  `json:"id"`
	Token string `json:"token"`
}

// basicCredentials parses "Basic base64(user:password)", splitting at the
// first colon, with the legacy errors.
func basicCredentials(header string) (user, password string, err error) {
	if strings.TrimSpace(header) == "" {
		return "", "", apperr.Invalid(msgMissingCredentials)
	}
	scheme, payload, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "basic") || len(payload) > 8192 {
		return "", "", apperr.Unauthorized(msgInvalidRequest)
	}
	raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(payload))
	if err != nil {
		return "", "", apperr.Unauthorized(msgInvalidRequest)
	}
	user, password, ok = strings.Cut(string(raw), ":")
	if !ok || user == "" || password == "" {
		return "", "", apperr.Unauthorized(msgInvalidRequest)
	}
	return user, password, nil
}

func (a *API) handleLogin(c echo.Context) error {
	r := c.Request()
	user, password, err := basicCredentials(r.Header.Get(echo.HeaderAuthorization))
	if err != nil {
		return err
	}
	res, err := a.svc.Login(r.Context(), ratelimit.ClientIP(r, a.trusted), user, password)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, loginResponse{ID: res.UserID, Token: res.Token})
}

func (a *API) handleLogout(c echo.Context) error {
	claims, ok := auth.FromContext(c.Request().Context())
	if !ok {
		return apperr.Unauthorized(auth.MsgTokenMissing)
	}
	if err := a.revoker.Revoke(c.Request().Context(), claims); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, success)
}

// ---- password reset ----

func (a *API) handleResetRequest(c echo.Context) error {
	var req emailRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Email == nil || *req.Email == "" {
		return apperr.Invalid(msgInvalidDataNoBang)
	}
	if err := a.svc.RequestReset(c.Request().Context(), *req.Email); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, success)
}

type resetCheckResponse struct {
	// ExpiresAt is epoch milliseconds, like every legacy timestamp.
	ExpiresAt int64 `json:"expires_at"`
	Valid     bool  `json:"valid"`
}

func (a *API) handleResetCheck(c echo.Context) error {
	exp, err := a.svc.CheckReset(c.Request().Context(), c.Param("reset_key"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resetCheckResponse{ExpiresAt: exp.UnixMilli(), Valid: true})
}

type passwordRequest struct {
	Password *string `json:"password"`
}

func (a *API) handleReset(c echo.Context) error {
	var req passwordRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Password == nil || *req.Password == "" {
		return apperr.Invalid(msgInvalidDataNoBang)
	}
	if err := a.svc.ResetPassword(c.Request().Context(), c.Param("reset_key"), *req.Password); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, success)
}

// ---- profile ----

// profileResponse is the user row without the password hash or the
// verification key (legacy S1); keys sorted as Flask did.
type profileResponse struct {
	CreatedAt     int64           `json:"created_at"`
	Email         string          `json:"email"`
	ID            int64           `json:"id"`
	IsVerified    bool            `json:"is_verified"`
	Metadata      json.RawMessage `json:"metadata"`
	ReferralToken *string         `json:"referral_token"`
}

func (a *API) handleProfileGet(c echo.Context) error {
	id, err := owner(c, msgEditingWrongUser)
	if err != nil {
		return err
	}
	p, err := a.svc.Profile(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, profileResponse{
		CreatedAt: p.CreatedAt.UnixMilli(), Email: p.Email, ID: p.ID, IsVerified: p.Verified,
		Metadata: p.Metadata, ReferralToken: p.ReferralToken,
	})
}

// updateRequest is what the legacy frontend sends back (the whole row it
// read, password included) plus current_password for a real change. Other
// fields are ignored.
type updateRequest struct {
	Password        *string         `json:"password"`
	CurrentPassword *string         `json:"current_password"`
	Metadata        json.RawMessage `json:"metadata"`
}

type updateResponse struct {
	Status string `json:"status"`
	// Token replaces the caller's token after a password change (every
	// earlier token is refused from then on).
	Token string `json:"token,omitempty"`
}

func (a *API) handleProfileUpdate(c echo.Context) error {
	id, err := owner(c, msgEditingWrongUser)
	if err != nil {
		return err
	}
	var req updateRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	in := account.UpdateInput{
		Password: req.Password, CurrentPassword: req.CurrentPassword,
		IP: ratelimit.ClientIP(c.Request(), a.trusted),
	}
	if m := strings.TrimSpace(string(req.Metadata)); m != "" && m != "null" {
		in.Metadata = req.Metadata
	}
	tok, err := a.svc.UpdateProfile(c.Request().Context(), id, in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, updateResponse{Status: "success", Token: tok})
}

type tokenResponse struct {
	Token string `json:"token"`
}

func (a *API) handleReferralToken(c echo.Context) error {
	id, err := owner(c, msgEditingWrongUser)
	if err != nil {
		return err
	}
	tok, err := a.svc.ReferralToken(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tokenResponse{Token: tok})
}

type referralItem struct {
	CreatedAt int64 `json:"created_at"`
	ID        int64 `json:"id"`
	Verified  bool  `json:"verified"`
}

type referralsResponse struct {
	CreditsEarned int64          `json:"credits_earned"`
	Referrals     []referralItem `json:"referrals"`
	Total         int64          `json:"total"`
}

// queryInt reads a paging parameter; a value that does not parse falls
// back to def, as in the legacy API.
func queryInt(c echo.Context, name string, def int) int {
	n, err := strconv.Atoi(c.QueryParam(name))
	if err != nil || n < 1 {
		return def
	}
	return n
}

func (a *API) handleReferrals(c echo.Context) error {
	id, err := owner(c, msgWrongUser)
	if err != nil {
		return err
	}
	r, err := a.svc.Referrals(c.Request().Context(), id, queryInt(c, "page", 1), queryInt(c, "limit", 20))
	if err != nil {
		return err
	}
	out := referralsResponse{CreditsEarned: r.CreditsEarned, Total: r.Total, Referrals: make([]referralItem, 0, len(r.Users))}
	for _, u := range r.Users {
		out.Referrals = append(out.Referrals, referralItem{CreatedAt: u.CreatedAt.UnixMilli(), ID: u.UserID, Verified: u.Verified})
	}
	return c.JSON(http.StatusOK, out)
}
