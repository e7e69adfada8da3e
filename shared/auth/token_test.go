package auth_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
)

var (
	secret     = []byte("legacy-secret-key")
	oldSecret  = []byte("previous-secret-key")
	testNow    = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	testFuture = testNow.Add(300 * 24 * time.Hour).Unix()
)

func sign(tb testing.TB, m jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	tb.Helper()
	s, err := jwt.NewWithClaims(m, claims).SignedString(key)
	require.NoError(tb, err)
	return s
}

// requireAuthErr checks err is a 401 with the legacy message msg.
func requireAuthErr(tb testing.TB, err error, msg string) {
	tb.Helper()
	require.Error(tb, err)
	e, ok := apperr.As(err)
	require.True(tb, ok, "not an *apperr.Error: %v", err)
	require.Equal(tb, apperr.KindUnauthorized, e.Kind)
	require.Equal(tb, msg, e.Message)
}

func TestVerify(t *testing.T) {
	t.Parallel()

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	pubDER, err := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	require.NoError(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})

	legacy := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": testFuture})
	parts := strings.Split(legacy, ".")
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(
		[]byte(strings.Replace(mustDecode(t, parts[1]), `"id":5`, `"id":6`, 1))) + "." + parts[2]
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, jwt.MapClaims{"id": 5, "exp": testFuture})

	tests := []struct {
		name    string
		header  string
		wantID  int64
		wantErr string // "" = accepted
	}{
		{"legacy raw token", legacy, 5, ""},
		{"bearer prefix", "Bearer " + legacy, 5, ""},
		{"bearer prefix lower case", "bearer " + legacy, 5, ""},
		{"id as numeric string", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": "7", "exp": testFuture}), 7, ""},
		{"previous secret during rotation", sign(t, jwt.SigningMethodHS256, oldSecret, jwt.MapClaims{"id": 5, "exp": testFuture}), 5, ""},
		{"missing header", "", 0, auth.MsgTokenMissing},
		{"blank header", "   ", 0, auth.MsgTokenMissing},
		{"bearer without token", "Bearer ", 0, auth.MsgTokenMissing},
		{"garbage", "not-a-jwt", 0, auth.MsgTokenInvalid},
		{"alg none", none, 0, auth.MsgTokenInvalid},
		{"wrong secret", sign(t, jwt.SigningMethodHS256, []byte("other"), jwt.MapClaims{"id": 5, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"expired", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": testNow.Add(-time.Second).Unix()}), 0, auth.MsgTokenInvalid},
		{"no exp", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5}), 0, auth.MsgTokenInvalid},
		{"tampered payload", tampered, 0, auth.MsgTokenInvalid},
		{"RS256 signed", sign(t, jwt.SigningMethodRS256, rsaKey, jwt.MapClaims{"id": 5, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"HS256 with the RSA public key as secret", sign(t, jwt.SigningMethodHS256, pubPEM, jwt.MapClaims{"id": 5, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"HS512", sign(t, jwt.SigningMethodHS512, secret, jwt.MapClaims{"id": 5, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"missing id", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"zero id", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 0, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"fractional id", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5.5, "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"non-numeric id", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": "five", "exp": testFuture}), 0, auth.MsgTokenInvalid},
		{"negative ver", sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": testFuture, "ver": -1}), 0, auth.MsgTokenInvalid},
		{"too long", legacy + strings.Repeat("a", 5000), 0, auth.MsgTokenInvalid},
	}
	v := &auth.Verifier{Secrets: [][]byte{secret, oldSecret}, Now: func() time.Time { return testNow }}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c, err := v.Verify(context.Background(), tt.header)
			if tt.wantErr != "" {
				requireAuthErr(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.wantID, c.UserID)
			require.Equal(t, auth.LegacyVersion, c.Version)
			require.True(t, strings.HasPrefix(c.JTI, "legacy-"), c.JTI)
			require.Equal(t, time.Unix(testFuture, 0).UTC(), c.ExpiresAt)
			require.True(t, c.IssuedAt.IsZero())
		})
	}
}

func mustDecode(tb testing.TB, s string) string {
	tb.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	require.NoError(tb, err)
	return string(b)
}

func TestVerifyWithoutSecrets(t *testing.T) {
	t.Parallel()
	v := &auth.Verifier{Secrets: [][]byte{nil, {}}}
	tok := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": 5, "exp": time.Now().Add(time.Hour).Unix()})
	_, err := v.Verify(context.Background(), tok)
	requireAuthErr(t, err, auth.MsgTokenInvalid)
}

func TestIssue(t *testing.T) {
	t.Parallel()
	is := auth.Issuer{Secret: secret, Now: func() time.Time { return testNow.Add(500 * time.Millisecond) }}
	tok, c, err := is.Issue(42, 3)
	require.NoError(t, err)
	require.Equal(t, int64(42), c.UserID)
	require.Equal(t, 3, c.Version)
	require.Len(t, c.JTI, 32)
	require.Equal(t, testNow, c.IssuedAt)
	require.Equal(t, testNow.Add(auth.DefaultTTL), c.ExpiresAt)

	// The payload keeps the legacy `id` claim as a JSON number.
	payload := mustDecode(t, strings.Split(tok, ".")[1])
	require.Contains(t, payload, `"id":42`)
	require.Contains(t, payload, `"ver":3`)

	v := &auth.Verifier{Secrets: [][]byte{secret}, Now: func() time.Time { return testNow.Add(time.Hour) }}
	got, err := v.Verify(context.Background(), tok)
	require.NoError(t, err)
	require.Equal(t, c, got)

	_, c2, err := is.Issue(42, 3)
	require.NoError(t, err)
	require.NotEqual(t, c.JTI, c2.JTI)

	// Expired after the TTL.
	v.Now = func() time.Time { return testNow.Add(auth.DefaultTTL + time.Second) }
	_, err = v.Verify(context.Background(), tok)
	requireAuthErr(t, err, auth.MsgTokenInvalid)

	for _, bad := range []struct {
		secret  []byte
		id      int64
		version int
		ttl     time.Duration
	}{
		{nil, 1, 0, time.Hour},
		{secret, 0, 0, time.Hour},
		{secret, 1, -1, time.Hour},
		{secret, 1, 0, 0},
	} {
		_, _, err := auth.Issue(bad.secret, bad.id, bad.version, bad.ttl, testNow)
		require.Error(t, err)
	}
}
