package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/web"
)

// TestRequiredOverHTTP runs the middleware behind the shared echo stack, as
// the services do, and checks the wire: accepted tokens reach the handler
// with their claims, every rejected one is 401 JSON with the legacy body.
func TestRequiredOverHTTP(t *testing.T) {
	t.Parallel()
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry()})
	v := &auth.Verifier{Secrets: [][]byte{secret}, Now: func() time.Time { return testNow }}
	e.GET("/me", func(c echo.Context) error {
		id, _ := auth.UserID(c.Request().Context())
		return c.JSON(http.StatusOK, map[string]int64{"id": id})
	}, v.Required())

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	legacy := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": testFuture})
	parts := strings.Split(legacy, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(mustDecode(t, parts[1]), `"id":5`, `"id":6`, 1))) + "." + parts[2]

	tests := []struct {
		name, header string
		status       int
		body         string
	}{
		{"legacy raw token", legacy, 200, `{"id":5}`},
		{"bearer", "Bearer " + legacy, 200, `{"id":5}`},
		{"missing", "", 401, `{"message":"Token is missing!"}`},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"id": 5, "exp": testFuture}), 401, `{"message":"Token is invalid!"}`},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("not-the-secret"), jwt.MapClaims{"id": 5, "exp": testFuture}), 401, `{"message":"Token is invalid!"}`},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": testNow.Add(-time.Minute).Unix()}), 401, `{"message":"Token is invalid!"}`},
		{"tampered payload", tampered, 401, `{"message":"Token is invalid!"}`},
		{"RS256", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"id": 5, "exp": testFuture}), 401, `{"message":"Token is invalid!"}`},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/me", nil)
		if tt.header != "" {
			r.Header.Set("Authorization", tt.header)
		}
		w := httptest.NewRecorder()
		e.ServeHTTP(w, r)
		require.Equal(t, tt.status, w.Code, tt.name)
		require.Contains(t, w.Header().Get("Content-Type"), "application/json", tt.name)
		require.JSONEq(t, tt.body, w.Body.String(), tt.name)
	}
}
