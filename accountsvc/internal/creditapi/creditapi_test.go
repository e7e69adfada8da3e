package creditapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/creditapi"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/web"
)

var (
	secret     = []byte("creditapi-test-secret-0123456789")
	adminToken = "admin-token-for-tests"
	now        = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
)

type env struct {
	pool   *pgxpool.Pool
	ledger *credits.Ledger
	srv    *httptest.Server
}

func newEnv(tb testing.TB) *env {
	tb.Helper()
	pool := dbtest.New(tb)
	clock := func() time.Time { return now }
	cfg := credits.LoadConfig(config.FromMap(map[string]string{"PRICE_CONTROLNET": "3"}), "local")
	ledger := credits.NewLedger(pool, cfg.Options(clock))
	e := web.New(web.Options{Service: "test", Log: zaptest.NewLogger(tb), Registry: prometheus.NewRegistry()})
	v := &auth.Verifier{Secrets: [][]byte{secret}}
	creditapi.New(ledger, creditapi.Options{Config: cfg, AnonymousEnabled: true, Now: clock}).
		Register(e, creditapi.Middleware{User: v.Required(), Admin: auth.AdminToken(adminToken)})
	// A charging route as gpusvc has one, to check the 402 body end to end.
	e.POST("/charge/:user_id", func(c echo.Context) error {
		id, _ := web.PathInt64(c, "user_id", "User")
		d, err := ledger.Debit(c.Request().Context(), credits.DebitInput{UserID: id, Amount: 5})
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, map[string]int64{"id": d.ID})
	})
	srv := httptest.NewServer(e)
	tb.Cleanup(srv.Close)
	return &env{pool: pool, ledger: ledger, srv: srv}
}

func (e *env) user(tb testing.TB) (int64, string) {
	tb.Helper()
	var id int64
	require.NoError(tb, e.pool.QueryRow(context.Background(),
		`INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("u%d@example.com", time.Now().UnixNano())).Scan(&id))
	tok, _, err := auth.Issue(secret, id, 0, time.Hour, time.Now())
	require.NoError(tb, err)
	return id, tok
}

func (e *env) do(tb testing.TB, method, path, authz, body string) (int, string) {
	tb.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	require.NoError(tb, err)
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	require.Equal(tb, "application/json", strings.Split(resp.Header.Get("Content-Type"), ";")[0], string(b))
	return resp.StatusCode, string(b)
}

func TestPricing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	status, body := e.do(t, http.MethodGet, "/pricing", "", "")
	require.Equal(t, http.StatusOK, status)
	var got struct {
		Prices map[string]struct {
			Credits int64  `json:"credits"`
			Unit    string `json:"unit"`
		} `json:"prices"`
		Anonymous   map[string]bool  `json:"anonymous"`
		SignupBonus map[string]int64 `json:"signup_bonus"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &got))
	require.Len(t, got.Prices, 10)
	require.Equal(t, int64(1), got.Prices["txt2img"].Credits)
	require.Equal(t, "image", got.Prices["txt2img"].Unit)
	require.Equal(t, int64(3), got.Prices["controlnet"].Credits, "configured")
	require.Equal(t, "second", got.Prices["audio"].Unit)
	require.Equal(t, map[string]bool{"enabled": true, "free": true}, got.Anonymous)
	require.Equal(t, map[string]int64{"credits": 50, "expires_in_days": 30}, got.SignupBonus)
}

func TestBalanceAndInsufficientBody(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, tok := e.user(t)
	other, _ := e.user(t)
	exp := now.Add(time.Hour)
	_, err := e.ledger.Grant(t.Context(), nil, credits.GrantInput{UserID: id, Amount: 3, ExpiresAt: &exp, Memo: "test"})
	require.NoError(t, err)

	status, body := e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", id), tok, "")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `{"credits": 3}`, body)

	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", other), tok, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"message": "Editing wrong user!"}`, body)

	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", id), "", "")
	require.Equal(t, http.StatusUnauthorized, status)
	require.JSONEq(t, `{"message": "Token is missing!"}`, body)

	status, body = e.do(t, http.MethodPost, fmt.Sprintf("/charge/%d", id), "", "")
	require.Equal(t, http.StatusPaymentRequired, status)
	require.JSONEq(t, `{"message": "Insufficient credits", "credits": 3, "required": 5}`, body)
}

func TestTransactions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := t.Context()
	id, tok := e.user(t)
	other, otherTok := e.user(t)
	exp := now.Add(48 * time.Hour)
	g1, err := e.ledger.Grant(ctx, nil, credits.GrantInput{UserID: id, Amount: 5, ExpiresAt: &exp, Memo: "signup_bonus"})
	require.NoError(t, err)
	g2, err := e.ledger.Grant(ctx, nil, credits.GrantInput{UserID: id, Amount: 5, Memo: "rewards_referral_verify"})
	require.NoError(t, err)
	d, err := e.ledger.Debit(ctx, credits.DebitInput{UserID: id, Amount: 7, Reason: "txt2img", Metadata: json.RawMessage(`{"job": "j1"}`)})
	require.NoError(t, err)
	r, err := e.ledger.Refund(ctx, d.ID)
	require.NoError(t, err)

	status, body := e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions", id), tok, "")
	require.Equal(t, http.StatusOK, status)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(body), &rows))
	require.Len(t, rows, 4)
	// Newest first; ties on created_at (one fake clock) break by id.
	require.Equal(t, []float64{float64(r.ID), float64(d.ID), float64(g2.ID), float64(g1.ID)},
		[]float64{rows[0]["id"].(float64), rows[1]["id"].(float64), rows[2]["id"].(float64), rows[3]["id"].(float64)})
	require.Equal(t, "refund", rows[0]["type"])
	require.Equal(t, float64(d.ID), rows[0]["refund_of"])
	require.Equal(t, "debit", rows[1]["type"])
	require.Equal(t, "txt2img", rows[1]["memo"])
	require.Equal(t, map[string]any{"job": "j1"}, rows[1]["metadata"])
	require.Equal(t, []any{
		map[string]any{"grant_id": float64(g1.ID), "amount": float64(5)},
		map[string]any{"grant_id": float64(g2.ID), "amount": float64(2)},
	}, rows[1]["allocations"])
	require.Equal(t, float64(now.UnixMilli()), rows[3]["created_at"], "epoch milliseconds")
	require.Equal(t, float64(exp.UnixMilli()), rows[3]["expires_at"])
	require.Nil(t, rows[2]["expires_at"])
	require.Contains(t, rows[2], "expires_at")
	require.Equal(t, float64(5), rows[3]["amount_remaining"])

	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions?page=2&limit=3", id), tok, "")
	require.Equal(t, http.StatusOK, status)
	require.NoError(t, json.Unmarshal([]byte(body), &rows))
	require.Len(t, rows, 1)

	// limit above 100 is capped, unparsable values fall back to the defaults.
	status, _ = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions?limit=100000&page=abc", id), tok, "")
	require.Equal(t, http.StatusOK, status)
	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions?page=-1", id), tok, "")
	require.Equal(t, http.StatusBadRequest, status, body)

	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions", id), otherTok, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"message": "Wrong user!"}`, body)
	status, body = e.do(t, http.MethodGet, "/users/abc/transactions", otherTok, "")
	require.Equal(t, http.StatusBadRequest, status)
	require.JSONEq(t, `{"message": "Wrong user!"}`, body)

	status, body = e.do(t, http.MethodGet, fmt.Sprintf("/users/%d/transactions", other), otherTok, "")
	require.Equal(t, http.StatusOK, status)
	require.JSONEq(t, `[]`, body)
}

func TestAdminGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	id, _ := e.user(t)
	bearer := "Bearer " + adminToken
	body := fmt.Sprintf(`{"user_id": %d, "amount": 25, "expires_in_days": 30, "memo": "support ticket 12"}`, id)

	status, resp := e.do(t, http.MethodPost, "/admin/credits/grants", "", body)
	require.Equal(t, http.StatusUnauthorized, status, resp)
	status, _ = e.do(t, http.MethodPost, "/admin/credits/grants", "Bearer wrong", body)
	require.Equal(t, http.StatusUnauthorized, status)

	status, resp = e.do(t, http.MethodPost, "/admin/credits/grants", bearer, body)
	require.Equal(t, http.StatusCreated, status, resp)
	var g map[string]any
	require.NoError(t, json.Unmarshal([]byte(resp), &g))
	require.Equal(t, float64(25), g["amount"])
	require.Equal(t, float64(25), g["amount_remaining"])
	require.Equal(t, "support ticket 12", g["memo"])
	require.Equal(t, float64(now.Add(30*24*time.Hour).UnixMilli()), g["expires_at"])
	bal, err := e.ledger.Balance(t.Context(), id)
	require.NoError(t, err)
	require.Equal(t, int64(25), bal)

	tests := []struct {
		name, body string
		status     int
	}{
		{"no body", ``, http.StatusBadRequest},
		{"malformed", `{"user_id":`, http.StatusBadRequest},
		{"no user", `{"amount": 5, "memo": "m"}`, http.StatusBadRequest},
		{"no amount", fmt.Sprintf(`{"user_id": %d, "memo": "m"}`, id), http.StatusBadRequest},
		{"zero amount", fmt.Sprintf(`{"user_id": %d, "amount": 0, "memo": "m"}`, id), http.StatusBadRequest},
		{"fractional amount", fmt.Sprintf(`{"user_id": %d, "amount": 1.5, "memo": "m"}`, id), http.StatusBadRequest},
		{"string amount", fmt.Sprintf(`{"user_id": %d, "amount": "5", "memo": "m"}`, id), http.StatusBadRequest},
		{"negative days", fmt.Sprintf(`{"user_id": %d, "amount": 5, "memo": "m", "expires_in_days": -1}`, id), http.StatusBadRequest},
		{"no memo", fmt.Sprintf(`{"user_id": %d, "amount": 5}`, id), http.StatusBadRequest},
		{"unknown user", `{"user_id": 987654, "amount": 5, "memo": "m"}`, http.StatusNotFound},
	}
	for _, tt := range tests {
		status, resp := e.do(t, http.MethodPost, "/admin/credits/grants", bearer, tt.body)
		require.Equal(t, tt.status, status, "%s: %s", tt.name, resp)
	}
}
