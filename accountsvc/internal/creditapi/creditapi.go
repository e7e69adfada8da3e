// Package creditapi holds accountsvc's HTTP handlers for the credits ledger:
// the public price list, a user's balance and transaction history, and the
// operator route that grants credits. The ledger itself is shared/credits.
//
// Handlers read claims through shared/auth and return errors for the shared
// error handler; this package must never contain SQL or ledger logic, and
// never pass echo.Context below a handler.
package creditapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/web"
)

// Paging defaults of GET /users/<id>/transactions (legacy: page 1, limit
// 20; a value that does not parse falls back to the default).
const (
	defaultPage  = 1
	defaultLimit = 20
)

// Options configure a Handler.
type Options struct {
	// Config is the ledger configuration (prices, signup bonus) shown by
	// GET /pricing.
	Config credits.Config
	// AnonymousEnabled reports whether token-less (free) generation is on.
	AnonymousEnabled bool
	// Now is the clock for grant expiries; nil means time.Now.
	Now func() time.Time
}

// Handler serves the credits routes. It is safe for concurrent use.
type Handler struct {
	ledger *credits.Ledger
	opts   Options
}

// New returns the handlers over ledger.
func New(ledger *credits.Ledger, opts Options) *Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{ledger: ledger, opts: opts}
}

// Middleware are the guards Register puts in front of the routes.
type Middleware struct {
	// User requires a valid JWT (auth.Verifier.Required). Required.
	User echo.MiddlewareFunc
	// Admin requires the operator token (adminguard.Guard.Token: per-IP
	// limit, audit line, admin token). Required.
	Admin echo.MiddlewareFunc
	// UserLimit, when set, rate-limits the per-user routes (after User).
	UserLimit echo.MiddlewareFunc
}

// Register adds the routes to e:
//
//	GET  /pricing                       public
//	GET  /users/:user_id/credits        owner (JWT)  {"credits": N}
//	GET  /users/:user_id/transactions   owner (JWT)  newest first, ?page=&limit= (max 100)
//	POST /admin/credits/grants          operator (Authorization: Bearer <ADMIN_TOKEN>)
func (h *Handler) Register(e *echo.Echo, mw Middleware) {
	user := []echo.MiddlewareFunc{mw.User}
	if mw.UserLimit != nil {
		user = append(user, mw.UserLimit)
	}
	e.GET("/pricing", h.handlePricingGet)
	e.GET("/users/:user_id/credits", h.handleCreditsGet, user...)
	e.GET("/users/:user_id/transactions", h.handleTransactionsList, user...)
	e.POST("/admin/credits/grants", h.handleGrantCreate, mw.Admin)
}

type priceResponse struct {
	Credits int64  `json:"credits"`
	Unit    string `json:"unit"`
}

type pricingResponse struct {
	Prices      map[string]priceResponse `json:"prices"`
	Anonymous   anonymousResponse        `json:"anonymous"`
	SignupBonus signupBonusResponse      `json:"signup_bonus"`
}

type anonymousResponse struct {
	// Enabled: requests without a token are accepted; Free: they cost
	// nothing (they are rate-limited instead).
	Enabled bool `json:"enabled"`
	Free    bool `json:"free"`
}

type signupBonusResponse struct {
	Credits int64 `json:"credits"`
	// ExpiresInDays is 0 when the bonus never expires.
	ExpiresInDays int `json:"expires_in_days"`
}

func (h *Handler) handlePricingGet(c echo.Context) error {
	resp := pricingResponse{
		Prices: map[string]priceResponse{},
		// Anonymous callers are never charged (credits.Ledger.Charge).
		Anonymous:   anonymousResponse{Enabled: h.opts.AnonymousEnabled, Free: true},
		SignupBonus: signupBonusResponse{Credits: h.opts.Config.SignupBonusCredits, ExpiresInDays: h.opts.Config.SignupBonusDays},
	}
	for _, p := range h.opts.Config.Pricing.Table() {
		resp.Prices[p.Op] = priceResponse{Credits: p.Credits, Unit: p.Unit}
	}
	c.Response().Header().Set("Cache-Control", "public, max-age=60")
	return c.JSON(http.StatusOK, resp)
}

// owner returns the caller's user id when it equals the :user_id path
// parameter, else a 400 with the legacy message.
func owner(c echo.Context, wrongUser string) (int64, error) {
	claims, ok := auth.FromContext(c.Request().Context())
	if !ok || claims.Anonymous {
		return 0, apperr.Unauthorized(auth.MsgTokenMissing)
	}
	id, err := strconv.ParseInt(strings.TrimSpace(c.Param("user_id")), 10, 64)
	if err != nil || id != claims.UserID {
		return 0, apperr.Invalid(wrongUser)
	}
	return id, nil
}

func (h *Handler) handleCreditsGet(c echo.Context) error {
	id, err := owner(c, "Editing wrong user!")
	if err != nil {
		return err
	}
	n, err := h.ledger.Balance(c.Request().Context(), id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int64{"credits": n})
}

// entryResponse holds the columns a transactions row and a grant answer
// share, in the legacy column order (timestamps in epoch milliseconds,
// metadata as JSON). It is embedded first, so its keys come first.
type entryResponse struct {
	ID              int64           `json:"id"`
	UserID          int64           `json:"user_id"`
	Type            string          `json:"type"`
	Amount          int64           `json:"amount"`
	AmountRemaining int64           `json:"amount_remaining"`
	ExpiresAt       *int64          `json:"expires_at"`
	Memo            string          `json:"memo"`
	Metadata        json.RawMessage `json:"metadata"`
	CreatedAt       int64           `json:"created_at"`
}

// epochMillis returns t in epoch milliseconds; nil (never) stays nil.
func epochMillis(t *time.Time) *int64 {
	if t == nil {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// transactionResponse is a transactions row as the legacy API serialised
// rows (every column), plus refund_of and a debit's allocations.
type transactionResponse struct {
	entryResponse
	UpdatedAt   int64                `json:"updated_at"`
	RefundOf    *int64               `json:"refund_of,omitempty"`
	Allocations []allocationResponse `json:"allocations,omitempty"`
}

type allocationResponse struct {
	GrantID int64 `json:"grant_id"`
	Amount  int64 `json:"amount"`
}

// queryInt parses a query parameter, falling back to def when it is absent
// or does not parse (legacy behaviour).
func queryInt(c echo.Context, name string, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(c.QueryParam(name)))
	if err != nil {
		return def
	}
	return n
}

func (h *Handler) handleTransactionsList(c echo.Context) error {
	id, err := owner(c, "Wrong user!")
	if err != nil {
		return err
	}
	page := queryInt(c, "page", defaultPage)
	limit := min(queryInt(c, "limit", defaultLimit), credits.MaxPageSize)
	if page < 1 || limit < 1 {
		return apperr.Invalid("page and limit must be positive integers")
	}
	entries, err := h.ledger.History(c.Request().Context(), id, page, limit)
	if err != nil {
		return err
	}
	out := make([]transactionResponse, len(entries))
	for i, e := range entries {
		r := transactionResponse{
			entryResponse: entryResponse{ID: e.ID, UserID: e.UserID, Type: e.Type, Amount: e.Amount,
				AmountRemaining: e.AmountRemaining, ExpiresAt: epochMillis(e.ExpiresAt), Memo: e.Memo,
				Metadata: e.Metadata, CreatedAt: e.CreatedAt.UnixMilli()},
			UpdatedAt: e.UpdatedAt.UnixMilli(), RefundOf: e.RefundOf,
		}
		for _, a := range e.Allocations {
			r.Allocations = append(r.Allocations, allocationResponse(a))
		}
		out[i] = r
	}
	return c.JSON(http.StatusOK, out)
}

type grantRequest struct {
	UserID        *int64          `json:"user_id"`
	Amount        *int64          `json:"amount"`
	ExpiresInDays int             `json:"expires_in_days"`
	Memo          string          `json:"memo"`
	Metadata      json.RawMessage `json:"metadata"`
}

// grantResponse is the grant's transactions row, and whether the
// Idempotency-Key replayed an earlier grant.
type grantResponse struct {
	entryResponse
	Replayed bool `json:"replayed"`
}

// handleGrantCreate grants credits as an operator. Body: {user_id, amount,
// expires_in_days (0 or absent: never expires), memo, metadata?}. An
// Idempotency-Key header makes the grant happen once per user. 201 with the
// grant (200 when replayed).
func (h *Handler) handleGrantCreate(c echo.Context) error {
	var req grantRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	switch {
	case req.UserID == nil:
		return apperr.Invalid("user_id is required")
	case req.Amount == nil:
		return apperr.Invalid("amount is required")
	case req.ExpiresInDays < 0 || req.ExpiresInDays > credits.MaxDays:
		return apperr.Invalid("expires_in_days must be between 0 and 3650")
	}
	in := credits.GrantInput{UserID: *req.UserID, Amount: *req.Amount, Memo: req.Memo, Metadata: req.Metadata,
		IdempotencyKey: c.Request().Header.Get("Idempotency-Key")}
	if req.ExpiresInDays > 0 {
		t := h.opts.Now().UTC().Add(time.Duration(req.ExpiresInDays) * 24 * time.Hour)
		in.ExpiresAt = &t
	}
	g, err := h.ledger.Grant(c.Request().Context(), nil, in)
	if err != nil {
		return err
	}
	resp := grantResponse{
		entryResponse: entryResponse{ID: g.ID, UserID: g.UserID, Type: credits.TypeCredit, Amount: g.Amount,
			AmountRemaining: g.Remaining, ExpiresAt: epochMillis(g.ExpiresAt), Memo: g.Memo, Metadata: g.Metadata,
			CreatedAt: g.CreatedAt.UnixMilli()},
		Replayed: g.Replayed,
	}
	status := http.StatusCreated
	if g.Replayed {
		status = http.StatusOK
	}
	return c.JSON(status, resp)
}
