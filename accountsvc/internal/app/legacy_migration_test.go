package app_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/migrate"
)

// The old system's config.json values the migration keeps.
const (
	legacySecretKey      = "legacy-flask-secret-key-0123456789"
	legacyChallengeToken = "legacy-challenge-token"
	// alicePassword and aliceHash are a passlib sha256_crypt pair (the
	// SHA-crypt reference vector, rounds=10000), as the old /signup stored.
	alicePassword = "Hello world!"
	aliceHash     = "$5$rounds=10000$saltstringsaltst$3xv.VbSHBb41AL9AvLeujZkZRBAwqFMz2.opqey6IcA"
)

// legacyTables are the tables of the Flask system whose rows the migration
// must keep (docs/operations.md, "Migrating from the old Flask system").
var legacyTables = []string{
	"users", "password_recovery", "images", "audio", "videos", "links", "models",
	"api_hosts", "referrals", "rewards", "transactions", "video_projects",
}

// TestLegacyMigration follows the runbook's migration steps: a database
// built with the legacy DDL and rows is migrated with migrate.Up (what
// `accountsvc migrate` runs), the row counts are unchanged, and accountsvc,
// configured from the old config.json through CONFIG_FILE, serves the old
// flows: a legacy HS256 token without "Bearer", a passlib password (rehashed
// to argon2id at login), and the user's existing images.
func TestLegacyMigration(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.Empty(t)
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })

	// The old system's database: its schema, production-shaped rows, and
	// user 1 (alice, verified, images 1 and 2) with a real passlib hash.
	for _, f := range []string{"legacy_schema.sql", "legacy_rows.sql"} {
		b, err := os.ReadFile(filepath.Join("..", "..", "..", "shared", "migrate", "testdata", f))
		require.NoError(t, err)
		_, err = conn.Exec(ctx, string(b))
		require.NoError(t, err, f)
	}
	_, err = conn.Exec(ctx, `UPDATE users SET password = $1 WHERE id = 1`, aliceHash)
	require.NoError(t, err)
	before := rowCounts(t, conn)

	// The runbook's `accountsvc migrate`, twice: the second run is a no-op.
	require.NoError(t, migrate.Up(ctx, dbURL, zaptest.NewLogger(t)))
	migrated := rowCounts(t, conn)
	requireNothingLost(t, before, migrated)
	require.NoError(t, migrate.Up(ctx, dbURL, zaptest.NewLogger(t)))
	require.Equal(t, migrated, rowCounts(t, conn), "a second migrate changes nothing")

	h := newLegacyApp(t, dbURL)

	// 1. A token the old server issued: HS256 with secret_key, claims
	// {"id", "exp"} only, sent raw (no "Bearer ").
	legacyToken, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"id":  1,
		"exp": time.Now().Add(300 * 24 * time.Hour).Unix(),
	}).SignedString([]byte(legacySecretKey))
	require.NoError(t, err)
	require.Equal(t, []int64{2, 1}, imageIDs(t, h, legacyToken), "alice's existing images with her legacy token")

	// 2. Login with the passlib password: accepted, and rehashed.
	token := login(t, h, "alice@example.com", alicePassword)
	var hash string
	require.NoError(t, conn.QueryRow(ctx, `SELECT password FROM users WHERE id = 1`).Scan(&hash))
	require.True(t, strings.HasPrefix(hash, "$argon2id$"), "the passlib hash is replaced by argon2id at login")
	require.Equal(t, []int64{2, 1}, imageIDs(t, h, token), "alice's images with a new token")

	// 3. The same password keeps working against the argon2id hash; a
	// wrong one does not.
	_ = login(t, h, "alice@example.com", alicePassword)
	rec := postLogin(t, h, "alice@example.com", "not her password")
	require.Equal(t, http.StatusUnauthorized, rec.Code, rec.Body.String())

	// The legacy token stays valid after the rehash (no password change).
	require.Equal(t, []int64{2, 1}, imageIDs(t, h, legacyToken))

	// Nothing was lost along the way.
	requireNothingLost(t, before, rowCounts(t, conn))
}

// seededTables may gain rows in the migration: 00006 seeds the legacy model
// ids and the anonymous account (id 67) when they are missing.
var seededTables = map[string]bool{"models": true, "users": true}

// requireNothingLost checks the runbook's before/after row counts: equal,
// except that the seeded tables may only grow.
func requireNothingLost(t *testing.T, before, after map[string]int64) {
	t.Helper()
	for table, n := range before {
		if seededTables[table] {
			require.GreaterOrEqual(t, after[table], n, "rows of %s", table)
			continue
		}
		require.Equal(t, n, after[table], "rows of %s", table)
	}
	// Row contents are compared column by column in shared/migrate's
	// TestUpKeepsLegacyRows.
}

// newLegacyApp starts accountsvc's handler configured the way the runbook
// says: CONFIG_FILE names the old config.json (secret_key,
// challenge_token), the environment adds the data stores.
func newLegacyApp(t *testing.T, dbURL string) http.Handler {
	t.Helper()
	dir := t.TempDir()
	legacyConfig, err := json.Marshal(map[string]any{
		"server_type":     "cpu",
		"secret_key":      legacySecretKey,
		"challenge_token": legacyChallengeToken,
	})
	require.NoError(t, err)
	configFile := filepath.Join(dir, "config.json")
	require.NoError(t, os.WriteFile(configFile, legacyConfig, 0o600))

	_, prefix := dbtest.Redis(t)
	redisURL := dbtest.RedisURL()
	env := map[string]string{
		"CONFIG_FILE":     configFile,
		"DATABASE_URL":    dbURL,
		"REDIS_URL":       redisURL,
		"REDIS_PREFIX":    prefix,
		"RATE_LIMITS":     "off",
		"STORAGE_BACKEND": "local",
		"STORAGE_DIR":     filepath.Join(dir, "storage"),
		"EMAIL_BACKEND":   "outbox",
		"OUTBOX_DIR":      filepath.Join(dir, "outbox"),
	}
	l, err := config.NewLoader(func(k string) (string, bool) {
		v, ok := env[k]
		return v, ok
	})
	require.NoError(t, err)
	cfg, err := app.LoadConfig(l)
	require.NoError(t, err)
	require.Equal(t, []byte(legacySecretKey), cfg.JWTSecrets[0], "secret_key from the old config.json")

	a, err := app.New(t.Context(), cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	return a.Handler()
}

// rowCounts returns the number of rows of every legacy table.
func rowCounts(t *testing.T, conn *pgx.Conn) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	for _, table := range legacyTables {
		var n int64
		require.NoError(t, conn.QueryRow(t.Context(), "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n))
		out[table] = n
	}
	return out
}

func postLogin(t *testing.T, h http.Handler, email, password string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.Header.Set("challenge-token", legacyChallengeToken)
	req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(email+":"+password)))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// login logs in through the legacy route and returns the token.
func login(t *testing.T, h http.Handler, email, password string) string {
	t.Helper()
	rec := postLogin(t, h, email, password)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var body struct {
		Token string `json:"token"`
		ID    int64  `json:"id"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	require.Equal(t, int64(1), body.ID)
	require.NotEmpty(t, body.Token)
	return body.Token
}

// imageIDs lists user 1's image ids through GET /users/1/images?field=id
// with token as the raw Authorization header, as the old frontend sends it.
func imageIDs(t *testing.T, h http.Handler, token string) []int64 {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/users/1/images?field=id", nil)
	req.Header.Set("Authorization", token)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var rows []struct {
		ID int64 `json:"id"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &rows))
	ids := make([]int64, 0, len(rows))
	for _, r := range rows {
		ids = append(ids, r.ID)
	}
	return ids
}
