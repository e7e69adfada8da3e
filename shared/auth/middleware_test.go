package auth_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/edgepolicy"
)

// run passes a request with headers through mw and returns the error it
// returned and the claims the handler saw (ok false if it was not called).
func run(tb testing.TB, mw echo.MiddlewareFunc, method string, headers map[string]string) (auth.Claims, bool, error) {
	tb.Helper()
	req := httptest.NewRequest(method, "/", nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	c := echo.New().NewContext(req, httptest.NewRecorder())
	var (
		claims auth.Claims
		called bool
	)
	err := mw(func(c echo.Context) error {
		called = true
		claims, _ = auth.FromContext(c.Request().Context())
		return nil
	})(c)
	return claims, called, err
}

func TestRequiredAndOptional(t *testing.T) {
	t.Parallel()
	v := &auth.Verifier{Secrets: [][]byte{secret}}
	good := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": time.Now().Add(time.Hour).Unix()})
	expired := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": time.Now().Add(-time.Hour).Unix()})

	tests := []struct {
		name    string
		mw      echo.MiddlewareFunc
		header  string
		wantID  int64
		anon    bool
		wantErr string
	}{
		{"required ok", v.Required(), good, 5, false, ""},
		{"required bearer ok", v.Required(), "Bearer " + good, 5, false, ""},
		{"required missing", v.Required(), "", 0, false, auth.MsgTokenMissing},
		{"required expired", v.Required(), expired, 0, false, auth.MsgTokenInvalid},
		{"optional no header is anonymous", v.Optional(67, true), "", 67, true, ""},
		{"optional valid token", v.Optional(67, true), good, 5, false, ""},
		{"optional bad token is 401, not anonymous", v.Optional(67, true), "garbage", 0, false, auth.MsgTokenInvalid},
		{"optional expired token is 401", v.Optional(67, true), expired, 0, false, auth.MsgTokenInvalid},
		{"optional anonymous not allowed", v.Optional(67, false), "", 0, false, auth.MsgTokenMissing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			if tt.header != "" {
				h["Authorization"] = tt.header
			}
			claims, called, err := run(t, tt.mw, http.MethodPost, h)
			if tt.wantErr != "" {
				requireAuthErr(t, err, tt.wantErr)
				require.False(t, called)
				return
			}
			require.NoError(t, err)
			require.True(t, called)
			require.Equal(t, tt.wantID, claims.UserID)
			require.Equal(t, tt.anon, claims.Anonymous)
		})
	}
}

func TestChallengeToken(t *testing.T) {
	t.Parallel()
	mw := auth.ChallengeToken("current-token", "", "previous-token")
	tests := []struct {
		name   string
		method string
		header string
		ok     bool
		extra  map[string]string
	}{
		{"current", http.MethodPost, "current-token", true, nil},
		{"previous", http.MethodPost, "previous-token", true, nil},
		{"missing", http.MethodPost, "", false, nil},
		{"wrong", http.MethodPost, "current-tokem", false, nil},
		{"prefix", http.MethodPost, "current", false, nil},
		{"longer", http.MethodPost, "current-token-and-more", false, nil},
		{"preflight passes", http.MethodOptions, "", true, map[string]string{"Origin": "https://a.b", "Access-Control-Request-Method": "POST"}},
		{"a plain OPTIONS needs the token", http.MethodOptions, "", false, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			h := map[string]string{}
			for k, v := range tt.extra {
				h[k] = v
			}
			if tt.header != "" {
				h["challenge-token"] = tt.header
			}
			_, called, err := run(t, mw, tt.method, h)
			if tt.ok {
				require.NoError(t, err)
				require.True(t, called)
				return
			}
			requireAuthErr(t, err, "challenge-token header missing / invalid")
			require.False(t, called)
		})
	}

	// No configured token: everything but preflight is refused.
	_, _, err := run(t, auth.ChallengeToken(""), http.MethodGet, map[string]string{"challenge-token": ""})
	requireAuthErr(t, err, edgepolicy.MsgChallengeInvalid)
}

func TestAdminToken(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		token    string
		headers  map[string]string
		wantKind apperr.Kind // KindInternal = allowed
	}{
		{"bearer", "s3cret", map[string]string{"Authorization": "Bearer s3cret"}, apperr.KindInternal},
		{"x-admin-token", "s3cret", map[string]string{"X-Admin-Token": "s3cret"}, apperr.KindInternal},
		{"raw authorization is not enough", "s3cret", map[string]string{"Authorization": "s3cret"}, apperr.KindUnauthorized},
		{"wrong", "s3cret", map[string]string{"X-Admin-Token": "nope"}, apperr.KindUnauthorized},
		{"missing", "s3cret", nil, apperr.KindUnauthorized},
		{"disabled", "", map[string]string{"X-Admin-Token": ""}, apperr.KindForbidden},
		{"disabled even with a bearer", "", map[string]string{"Authorization": "Bearer "}, apperr.KindForbidden},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, called, err := run(t, auth.AdminToken(tt.token), http.MethodPost, tt.headers)
			if tt.wantKind == apperr.KindInternal {
				require.NoError(t, err)
				require.True(t, called)
				return
			}
			require.Equal(t, tt.wantKind, apperr.KindOf(err))
			require.False(t, called)
		})
	}
}

func TestContext(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	_, ok := auth.UserID(ctx)
	require.False(t, ok)
	ctx = auth.WithClaims(ctx, auth.Claims{UserID: 12, Version: 2})
	id, ok := auth.UserID(ctx)
	require.True(t, ok)
	require.Equal(t, int64(12), id)
	c, ok := auth.FromContext(ctx)
	require.True(t, ok)
	require.Equal(t, 2, c.Version)
}
