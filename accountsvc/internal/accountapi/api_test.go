package accountapi_test

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/config"
)

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// requireNoSecrets fails if body holds a password hash or any of secrets.
func requireNoSecrets(tb testing.TB, body string, secrets ...string) {
	tb.Helper()
	for _, s := range append([]string{"$argon2id$", "$5$", "$2b$", "password"}, secrets...) {
		if s != "" {
			require.NotContains(tb, body, s)
		}
	}
}

// TestLegacyFlow is the acceptance flow with the legacy frontend's bodies:
// signup, the key from the outbox, verify, login (Basic), the profile, the
// credits, the referral token, logout.
func TestLegacyFlow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	const addr, pw = "Alice@Example.com", "hunter2-hunter2"

	r := e.do(req{Method: http.MethodPost, Path: "/users", Headers: ct(),
		Body: `{"email":" Alice@Example.com ","password":"hunter2-hunter2","metadata":{"theme":"dark"},"referralToken":"not-a-real-token"}`})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, []string{"id"}, keys(r.JSON(t)))
	id := int64(r.JSON(t)["id"].(float64))
	require.Equal(t, "5", r.Header.Get("X-RateLimit-Limit"))
	require.Equal(t, "4", r.Header.Get("X-RateLimit-Remaining"))
	require.NotEmpty(t, r.Header.Get("X-RateLimit-Reset"))

	m := e.waitEmail(addr, "NounsAI Playground Verification")
	key := keyOf(t, m, "verify")

	// The key is stored hashed, never in plaintext.
	var stored string
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT verify_key FROM users WHERE id = $1`, id).Scan(&stored))
	require.Len(t, stored, 64)
	require.NotEqual(t, key, stored)

	// Correct password but unverified.
	r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic(addr, pw))})
	require.Equal(t, http.StatusBadRequest, r.Code)
	require.Equal(t, map[string]any{"message": "Email not verified!"}, r.JSON(t))
	// Wrong password on an unverified account does not reveal the state.
	r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic(addr, "wrong-password"))})
	require.Equal(t, http.StatusUnauthorized, r.Code)
	require.Equal(t, map[string]any{"message": "Invalid credentials!"}, r.JSON(t))

	r = e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: ct()})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, map[string]any{"id": float64(id)}, r.JSON(t))
	r = e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: ct()})
	require.Equal(t, http.StatusBadRequest, r.Code)
	require.Equal(t, map[string]any{"message": "Invalid verification key"}, r.JSON(t))

	// Login is case-insensitive on the address; the password after the
	// first colon may contain colons.
	r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("alice@example.COM", pw))})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, []string{"id", "token"}, keys(r.JSON(t)))
	require.Equal(t, float64(id), r.JSON(t)["id"])
	tok := r.JSON(t)["token"].(string)
	requireNoSecrets(t, r.Body, key, stored)

	// The profile: legacy raw Authorization header, no hash, no keys.
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id), Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	p := r.JSON(t)
	require.Equal(t, []string{"created_at", "email", "id", "is_verified", "metadata", "referral_token"}, keys(p))
	require.Equal(t, "Alice@Example.com", p["email"])
	require.Equal(t, true, p["is_verified"])
	require.Equal(t, map[string]any{"theme": "dark"}, p["metadata"])
	require.Nil(t, p["referral_token"])
	require.Greater(t, p["created_at"].(float64), float64(1e12), "epoch milliseconds")
	requireNoSecrets(t, r.Body, key, stored)
	require.Equal(t, "20", r.Header.Get("X-RateLimit-Limit"))

	// Bearer works too.
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/credits", id), Headers: map[string]string{"Authorization": "Bearer " + tok}})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, map[string]any{"credits": float64(50)}, r.JSON(t), "signup bonus")

	// Another user's id.
	for _, path := range []string{"/users/%d", "/users/%d/credits", "/users/%d/referral-token"} {
		r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf(path, id+1), Headers: map[string]string{"Authorization": tok}})
		require.Equal(t, http.StatusBadRequest, r.Code, path)
		require.Equal(t, map[string]any{"message": "Editing wrong user!"}, r.JSON(t))
	}
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/referrals", id+1), Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, http.StatusBadRequest, r.Code)
	require.Equal(t, map[string]any{"message": "Wrong user!"}, r.JSON(t))
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id)})
	require.Equal(t, http.StatusUnauthorized, r.Code)
	require.Equal(t, map[string]any{"message": "Token is missing!"}, r.JSON(t))

	// Referral token: created once, 96 hex, then stable.
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/referral-token", id), Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	rt := r.JSON(t)["token"].(string)
	require.Regexp(t, `^[0-9a-f]{96}$`, rt)
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/referral-token", id), Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, rt, r.JSON(t)["token"])
	require.NotEmpty(t, r.Header.Get("X-RateLimit-Limit"), "R4: the route is limited")

	// Logout revokes the presented token only.
	tok2 := e.login(addr, pw)
	r = e.do(req{Method: http.MethodPost, Path: "/logout", Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, map[string]any{"status": "success"}, r.JSON(t))
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id), Headers: map[string]string{"Authorization": tok}})
	require.Equal(t, http.StatusUnauthorized, r.Code)
	require.Equal(t, map[string]any{"message": "Token is invalid!"}, r.JSON(t))
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id), Headers: map[string]string{"Authorization": tok2}})
	require.Equal(t, http.StatusOK, r.Code)
}

// TestLegacyPasslibHash: a row with the legacy sha256_crypt hash logs in,
// is upgraded to argon2id, and the same password still works.
func TestLegacyPasslibHash(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	const legacy = "$5$rounds=535000$05R.9KB6UC2kLI3w$Q/zslzx./JjkAVPTwp6th7nW5l7JU91Gte/UmIh.U78"
	ctx := context.Background()
	var id int64
	require.NoError(t, e.pool.QueryRow(ctx,
		`INSERT INTO users (email, password, is_verified, metadata) VALUES ('old@example.com', $1, TRUE, '{}') RETURNING id`,
		legacy).Scan(&id))

	r := e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("old@example.com", "wrong"))})
	require.Equal(t, http.StatusUnauthorized, r.Code)

	r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("old@example.com", "test"))})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, float64(id), r.JSON(t)["id"])

	var stored string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password FROM users WHERE id = $1`, id).Scan(&stored))
	require.True(t, strings.HasPrefix(stored, "$argon2id$v=19$m=19456,t=2,p=1$"), stored)

	e.login("old@example.com", "test")
	var again string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password FROM users WHERE id = $1`, id).Scan(&again))
	require.Equal(t, stored, again, "no second rehash")
}

// TestReferralRewardOnce: B signs up with A's token and verifies; A is paid
// exactly once even when the verification is replayed 20 times at once.
func TestReferralRewardOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	a := e.verifiedUser("a@example.com", "password-a", nil)
	tokA := e.login("a@example.com", "password-a")
	r := e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/referral-token", a), Headers: map[string]string{"Authorization": tokA}})
	require.Equal(t, http.StatusOK, r.Code)
	refTok := r.JSON(t)["token"].(string)

	b := e.signup("b@example.com", "password-b", map[string]any{"referralToken": refTok})
	key := keyOf(t, e.waitEmail("b@example.com", "NounsAI Playground Verification"), "verify")

	// 20 concurrent verifications: one succeeds, the others are refused,
	// and the referrer is paid once.
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
	)
	for range 20 {
		wg.Go(func() {
			r := e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: ct()})
			mu.Lock()
			codes[r.Code]++
			mu.Unlock()
		})
	}
	wg.Wait()
	require.Equal(t, map[int]int{http.StatusOK: 1, http.StatusBadRequest: 19}, codes)

	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/credits", a), Headers: map[string]string{"Authorization": tokA}})
	require.Equal(t, map[string]any{"credits": float64(50 + 100)}, r.JSON(t), "signup bonus + one referral reward")

	ctx := context.Background()
	var n int
	require.NoError(t, e.pool.QueryRow(ctx,
		`SELECT count(*) FROM transactions WHERE user_id = $1 AND memo = 'rewards_referral_verify'`, a).Scan(&n))
	require.Equal(t, 1, n)
	var flag bool
	require.NoError(t, e.pool.QueryRow(ctx,
		`SELECT (metadata->>'rewards_referral_verify')::boolean FROM users WHERE id = $1`, b).Scan(&flag))
	require.True(t, flag, "legacy marker on the referred user")

	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/referrals", a), Headers: map[string]string{"Authorization": tokA}})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	got := r.JSON(t)
	require.Equal(t, float64(100), got["credits_earned"])
	require.Equal(t, float64(1), got["total"])
	refs := got["referrals"].([]any)
	require.Len(t, refs, 1)
	ref := refs[0].(map[string]any)
	require.Equal(t, []string{"created_at", "id", "verified"}, keys(ref))
	require.Equal(t, float64(b), ref["id"])
	require.Equal(t, true, ref["verified"])
	requireNoSecrets(t, r.Body, "b@example.com")

	// An unknown referral token is ignored (C2): the signup succeeds.
	e.signup("c@example.com", "password-c", map[string]any{"referralToken": strings.Repeat("ab", 48)})
}

// TestPasswordReset: always 200, the key works once, a newer request voids
// older keys, and every token issued before the reset is refused.
func TestPasswordReset(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	id := e.verifiedUser("reset@example.com", "old-password", nil)
	before := e.login("reset@example.com", "old-password")

	known := e.do(req{Method: http.MethodPost, Path: "/users/password/reset", Headers: ct(), Body: `{"email":"RESET@example.com"}`})
	unknown := e.do(req{Method: http.MethodPost, Path: "/users/password/reset", Headers: ct(), Body: `{"email":"nobody@example.com"}`})
	require.Equal(t, http.StatusOK, known.Code)
	require.Equal(t, known.Code, unknown.Code)
	require.Equal(t, known.Body, unknown.Body)
	require.Equal(t, map[string]any{"status": "success"}, known.JSON(t))
	first := keyOf(t, e.waitEmail("reset@example.com", "NounsAI Playground Password Reset"), "reset")

	// A newer request voids the older key.
	e.do(req{Method: http.MethodPost, Path: "/users/password/reset", Headers: ct(), Body: `{"email":"reset@example.com"}`})
	key := keyOf(t, e.waitEmail("reset@example.com", "NounsAI Playground Password Reset"), "reset")
	r := e.do(req{Method: http.MethodGet, Path: "/users/password/reset/" + first, Headers: ct()})
	require.Equal(t, http.StatusBadRequest, r.Code)
	require.Equal(t, map[string]any{"message": "Invalid key"}, r.JSON(t))

	r = e.do(req{Method: http.MethodGet, Path: "/users/password/reset/" + key, Headers: ct()})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	// Only these two fields: no user id (the legacy row leaked it). (A
	// substring check for the id would fail by chance on the digits of
	// expires_at.)
	require.Equal(t, []string{"expires_at", "valid"}, keys(r.JSON(t)))
	require.Equal(t, true, r.JSON(t)["valid"])
	require.NotContains(t, r.Body, "user_id")

	r = e.do(req{Method: http.MethodPost, Path: "/users/password/reset/" + key, Headers: ct(), Body: `{"password":"short"}`})
	require.Equal(t, http.StatusBadRequest, r.Code)
	r = e.do(req{Method: http.MethodPost, Path: "/users/password/reset/" + key, Headers: ct(), Body: `{"password":"new-password"}`})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	require.Equal(t, map[string]any{"status": "success"}, r.JSON(t))
	r = e.do(req{Method: http.MethodPost, Path: "/users/password/reset/" + key, Headers: ct(), Body: `{"password":"newer-password"}`})
	require.Equal(t, http.StatusBadRequest, r.Code)
	require.Equal(t, map[string]any{"message": "Reset key not found"}, r.JSON(t))

	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id), Headers: map[string]string{"Authorization": before}})
	require.Equal(t, http.StatusUnauthorized, r.Code, "token from before the reset")
	r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("reset@example.com", "old-password"))})
	require.Equal(t, http.StatusUnauthorized, r.Code)
	after := e.login("reset@example.com", "new-password")
	r = e.do(req{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d", id), Headers: map[string]string{"Authorization": after}})
	require.Equal(t, http.StatusOK, r.Code)

	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM password_recovery WHERE user_id = $1`, id).Scan(&n))
	require.Zero(t, n)
}

// TestProfileUpdate: the legacy frontend's PUT (whole row back, password
// absent or the stored hash) saves metadata; a real change needs the
// current password and revokes older tokens.
func TestProfileUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	id := e.verifiedUser("p@example.com", "password-1", nil)
	tok := e.login("p@example.com", "password-1")
	path := fmt.Sprintf("/users/%d", id)
	auth := map[string]string{"Authorization": tok}
	ctx := context.Background()
	var hash string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password FROM users WHERE id = $1`, id).Scan(&hash))

	for i, body := range []string{
		`{"metadata":{"v":1}}`,
		`{"password":null,"metadata":{"v":2}}`,
		`{"password":"","metadata":{"v":3}}`,
		jsonBody(t, map[string]any{"id": id, "email": "p@example.com", "password": hash, "is_verified": true, "metadata": map[string]any{"v": 4}}),
	} {
		r := e.do(req{Method: http.MethodPut, Path: path, Headers: auth, Body: body})
		require.Equal(t, http.StatusOK, r.Code, r.Body)
		require.Equal(t, map[string]any{"status": "success"}, r.JSON(t))
		r = e.do(req{Method: http.MethodGet, Path: path, Headers: auth})
		require.Equal(t, map[string]any{"v": float64(i + 1)}, r.JSON(t)["metadata"])
	}

	// A new password without (or with a wrong) current password is
	// refused and never stored.
	for _, body := range []string{
		`{"password":"password-2","metadata":{"v":9}}`,
		`{"password":"password-2","current_password":"nope-nope","metadata":{"v":9}}`,
	} {
		r := e.do(req{Method: http.MethodPut, Path: path, Headers: auth, Body: body})
		require.Equal(t, http.StatusBadRequest, r.Code, r.Body)
	}
	var still string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password FROM users WHERE id = $1`, id).Scan(&still))
	require.Equal(t, hash, still)

	r := e.do(req{Method: http.MethodPut, Path: path, Headers: auth,
		Body: `{"password":"password-2","current_password":"password-1","metadata":{"v":5}}`})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	fresh := r.JSON(t)["token"].(string)
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT password FROM users WHERE id = $1`, id).Scan(&still))
	require.True(t, strings.HasPrefix(still, "$argon2id$"))
	require.NotEqual(t, hash, still)

	r = e.do(req{Method: http.MethodGet, Path: path, Headers: auth})
	require.Equal(t, http.StatusUnauthorized, r.Code, "the old token is refused")
	r = e.do(req{Method: http.MethodGet, Path: path, Headers: map[string]string{"Authorization": fresh}})
	require.Equal(t, http.StatusOK, r.Code)
	e.login("p@example.com", "password-2")
}

// TestNoEnumeration: signup, reset and login answer the same for known and
// unknown addresses.
func TestNoEnumeration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.verifiedUser("known@example.com", "password-k", nil)
	e.signup("pending@example.com", "password-p", nil)
	e.waitEmail("pending@example.com", "NounsAI Playground Verification")

	newOne := e.do(req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"fresh@example.com","password":"password-f","metadata":{}}`})
	dup := e.do(req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"KNOWN@example.com","password":"password-x","metadata":{}}`})
	dupPending := e.do(req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"pending@example.com","password":"password-y"}`})
	for _, r := range []response{dup, dupPending} {
		require.Equal(t, newOne.Code, r.Code)
		require.Equal(t, keys(newOne.JSON(t)), keys(r.JSON(t)))
	}
	require.Greater(t, dup.JSON(t)["id"].(float64), newOne.JSON(t)["id"].(float64), "ids come from the same sequence")

	// The owners are told by email instead.
	e.waitEmail("known@example.com", "NounsAI Playground Sign-up Attempt")
	key := keyOf(t, e.waitEmail("pending@example.com", "NounsAI Playground Verification"), "verify")
	r := e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: ct()})
	require.Equal(t, http.StatusOK, r.Code)
	// Two signups with different passwords contest the address: the
	// verification confirms neither password (either may have been someone
	// else's) and mails a set-password link to the inbox instead.
	for _, pw := range []string{"password-p", "password-y"} {
		r = e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("pending@example.com", pw))})
		require.Equal(t, http.StatusUnauthorized, r.Code)
	}
	key = keyOf(t, e.waitEmail("pending@example.com", "NounsAI Playground Password Reset"), "reset")
	r = e.do(req{Method: http.MethodPost, Path: "/users/password/reset/" + key, Headers: ct(), Body: `{"password":"password-z"}`})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	e.login("pending@example.com", "password-z")
	// A verified account's password is never touched by a signup.
	e.login("known@example.com", "password-k")

	unknown := e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("ghost@example.com", "password-k"))})
	wrong := e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic("known@example.com", "password-z"))})
	require.Equal(t, http.StatusUnauthorized, unknown.Code)
	require.Equal(t, unknown.Code, wrong.Code)
	require.Equal(t, unknown.Body, wrong.Body)

	for _, addr := range []string{"known@example.com", "ghost@example.com", "not an address"} {
		r := e.do(req{Method: http.MethodPost, Path: "/users/verify/resend", Headers: ct(), Body: jsonBody(t, map[string]string{"email": addr})})
		require.Equal(t, http.StatusOK, r.Code)
		require.Equal(t, map[string]any{"status": "success"}, r.JSON(t))
	}
}

// TestResendAlwaysSucceeds: POST /users/verify/resend answers 200
// {"status":"success"} to any body, malformed or not, and sends nothing
// unless the body names an unverified account.
func TestResendAlwaysSucceeds(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	e.signup("resend@example.com", "password-r", nil)
	first := keyOf(t, e.waitEmail("resend@example.com", "NounsAI Playground Verification"), "verify")
	count := func() (n int) {
		require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT count(*) FROM river_job WHERE kind = 'account_email'`).Scan(&n))
		return n
	}
	before := count()
	for _, body := range []string{"", `{`, `nope`, `[]`, `null`, `{}`, `{"email":null}`, `{"email":""}`, `{"email":5}`,
		`{"email":{}}`, `{"email":"not an address"}`, `{"email":"ghost@example.com"}`, `{"email":"resend@example.com"} x`} {
		r := e.do(req{Method: http.MethodPost, Path: "/users/verify/resend", Headers: ct(), Body: body})
		require.Equal(t, http.StatusOK, r.Code, "%q: %s", body, r.Body)
		require.Equal(t, map[string]any{"status": "success"}, r.JSON(t), body)
	}
	require.Equal(t, before, count(), "nothing was sent")
	r := e.do(req{Method: http.MethodPost, Path: "/users/verify/" + first, Headers: ct()})
	require.Equal(t, http.StatusOK, r.Code, "the key was not replaced: %s", r.Body)
}

// TestProfilePasswordLockout: wrong current passwords on PUT /users/<id>
// count against the login lockout of the client IP on the account.
func TestProfilePasswordLockout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.verifiedUserVia("pl@example.com", "password-1", "10.0.0.2")
	tok := e.login("pl@example.com", "password-1")
	var id int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `SELECT id FROM users WHERE email = 'pl@example.com'`).Scan(&id))
	put := func(current string) response {
		return e.do(req{Method: http.MethodPut, Path: fmt.Sprintf("/users/%d", id),
			Headers: map[string]string{"Authorization": tok, "RemoteAddr": "127.0.0.1:4000", "X-Forwarded-For": "203.0.113.5"},
			Body:    jsonBody(t, map[string]string{"password": "password-2", "current_password": current})})
	}
	for i := range 6 {
		r := put("wrong-password")
		require.Equal(t, http.StatusBadRequest, r.Code, "%d: %s", i, r.Body)
		require.Equal(t, map[string]any{"message": "Current password is incorrect!"}, r.JSON(t))
	}
	r := put("password-1")
	require.Equal(t, http.StatusTooManyRequests, r.Code, r.Body)
	require.Equal(t, "Too many failed login attempts, try again later", r.JSON(t)["message"])
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	r = e.do(req{Method: http.MethodPost, Path: "/login",
		Headers: ct("Authorization", basic("pl@example.com", "password-1"), "RemoteAddr", "127.0.0.1:4000", "X-Forwarded-For", "203.0.113.5")})
	require.Equal(t, http.StatusTooManyRequests, r.Code, "the login from that address is locked too: %s", r.Body)
	r = e.do(req{Method: http.MethodPost, Path: "/login",
		Headers: ct("Authorization", basic("pl@example.com", "password-1"), "RemoteAddr", "127.0.0.1:4000", "X-Forwarded-For", "203.0.113.6")})
	require.Equal(t, http.StatusOK, r.Code, "another address is not locked out: %s", r.Body)
}

// TestBadInput: malformed requests get 4xx JSON (the helper checks the
// Content-Type) and change nothing.
func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	id := e.verifiedUser("bad@example.com", "password-b", nil)
	tok := e.login("bad@example.com", "password-b")
	ctx := context.Background()
	count := func() (n int) {
		require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) + (SELECT count(*) FROM password_recovery) FROM users`).Scan(&n))
		return n
	}
	var meta string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT metadata::text FROM users WHERE id = $1`, id).Scan(&meta))
	before := count()
	big := `{"email":"big@example.com","password":"password-1","metadata":{"x":"` + strings.Repeat("a", 10<<20) + `"}}`
	b64 := base64.StdEncoding.EncodeToString
	user := fmt.Sprintf("/users/%d", id)

	cases := []struct {
		name string
		r    req
		code int
	}{
		{"signup no challenge", req{Method: http.MethodPost, Path: "/users", Body: `{"email":"x@example.com","password":"password-1"}`}, 401},
		{"signup empty body", req{Method: http.MethodPost, Path: "/users", Headers: ct()}, 400},
		{"signup invalid json", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":`}, 400},
		{"signup array", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `[]`}, 400},
		{"signup missing password", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com"}`}, 400},
		{"signup email number", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":5,"password":"password-1"}`}, 400},
		{"signup short password", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com","password":"short"}`}, 400},
		{"signup long password", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: jsonBody(t, map[string]string{"email": "x@example.com", "password": strings.Repeat("p", 1025)})}, 400},
		{"signup bad email", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"not-an-email","password":"password-1"}`}, 400},
		{"signup NUL email", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x\u0000@example.com","password":"password-1"}`}, 400},
		{"signup bidi email", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x\u202e@example.com","password":"password-1"}`}, 400},
		{"signup lone surrogate", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x\ud800@example.com","password":"password-1"}`}, 400},
		{"signup metadata array", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com","password":"password-1","metadata":[1]}`}, 400},
		{"signup metadata NUL", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com","password":"password-1","metadata":{"a":"\u0000"}}`}, 400},
		{"signup metadata huge number", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com","password":"password-1","metadata":{"a":1e99999}}`}, 400},
		{"signup referral number", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: `{"email":"x@example.com","password":"password-1","referralToken":7}`}, 400},
		{"signup 10 MB", req{Method: http.MethodPost, Path: "/users", Headers: ct(), Body: big}, 413},
		{"login no header", req{Method: http.MethodPost, Path: "/login", Headers: ct()}, 400},
		{"login bearer", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Bearer abc")}, 401},
		{"login bad base64", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic !!!")}, 401},
		{"login no colon", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic "+b64([]byte("bad@example.com")))}, 401},
		{"login empty user", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic "+b64([]byte(":password-b")))}, 401},
		{"login empty password", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic "+b64([]byte("bad@example.com:")))}, 401},
		{"login NUL user", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic "+b64([]byte("bad\x00@example.com:password-b")))}, 401},
		{"login invalid utf8", req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", "Basic "+b64([]byte("\xff\xfe@example.com:password-b")))}, 401},
		{"verify garbage", req{Method: http.MethodPost, Path: "/users/verify/%00%ff", Headers: ct()}, 400},
		{"verify long", req{Method: http.MethodPost, Path: "/users/verify/" + strings.Repeat("a", 5000), Headers: ct()}, 400},
		{"reset check garbage", req{Method: http.MethodGet, Path: "/users/password/reset/zzz", Headers: ct()}, 400},
		{"reset no email", req{Method: http.MethodPost, Path: "/users/password/reset", Headers: ct(), Body: `{}`}, 400},
		{"reset email object", req{Method: http.MethodPost, Path: "/users/password/reset", Headers: ct(), Body: `{"email":{}}`}, 400},
		{"reset set invalid json", req{Method: http.MethodPost, Path: "/users/password/reset/abc", Headers: ct(), Body: `nope`}, 400},
		{"reset set unknown key", req{Method: http.MethodPost, Path: "/users/password/reset/abc", Headers: ct(), Body: `{"password":"password-9"}`}, 400},
		{"put invalid json", req{Method: http.MethodPut, Path: user, Headers: map[string]string{"Authorization": tok}, Body: `{"metadata":`}, 400},
		{"put metadata string", req{Method: http.MethodPut, Path: user, Headers: map[string]string{"Authorization": tok}, Body: `{"metadata":"x"}`}, 400},
		{"put password number", req{Method: http.MethodPut, Path: user, Headers: map[string]string{"Authorization": tok}, Body: `{"password":1,"metadata":{}}`}, 400},
		{"put wrong user", req{Method: http.MethodPut, Path: "/users/abc", Headers: map[string]string{"Authorization": tok}, Body: `{"metadata":{}}`}, 400},
		{"get bad token", req{Method: http.MethodGet, Path: user, Headers: map[string]string{"Authorization": "garbage"}}, 401},
		{"logout without token", req{Method: http.MethodPost, Path: "/logout"}, 401},
	}
	for _, c := range cases {
		r := e.do(c.r)
		require.Equal(t, c.code, r.Code, "%s: %s", c.name, r.Body)
		require.NotEmpty(t, r.JSON(t), c.name)
	}
	require.Equal(t, before, count())
	var after string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT metadata::text FROM users WHERE id = $1`, id).Scan(&after))
	require.Equal(t, meta, after)
}

// TestRateLimitsAndLockout: the legacy 5/min per IP on /login, counted per
// client IP behind a trusted proxy, 429 JSON with Retry-After; and failures
// from other addresses do not lock the owner out.
func TestRateLimitsAndLockout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.verifiedUserVia("lock@example.com", "password-l", "10.0.0.1")

	login := func(ip, password string) response {
		return e.do(req{Method: http.MethodPost, Path: "/login",
			Headers: ct("Authorization", basic("lock@example.com", password), "RemoteAddr", "127.0.0.1:4000", "X-Forwarded-For", ip)})
	}
	// Windows are aligned to the clock, so on a slow machine the sixth
	// attempt may fall into the next minute: within two windows at most
	// ten attempts pass.
	var r response
	for i := 0; ; i++ {
		r = login("203.0.113.1", "wrong-password")
		if r.Code == http.StatusTooManyRequests {
			require.GreaterOrEqual(t, i, 5, "the sixth attempt at the earliest")
			break
		}
		require.Equal(t, http.StatusUnauthorized, r.Code, i)
		require.Less(t, i, 10, "no 429 after %d attempts", i+1)
	}
	require.NotEmpty(t, r.Header.Get("Retry-After"))
	if r.JSON(t)["message"] != "Too many failed login attempts, try again later" {
		// Not the address's lockout on the account (which a seventh
		// attempt in the next window may meet first): the route's limit.
		require.Equal(t, "0", r.Header.Get("X-RateLimit-Remaining"))
	}
	require.Contains(t, r.JSON(t), "message")

	// A client that is not a trusted proxy cannot pick its bucket. This
	// is at least the account's sixth failure.
	r = e.do(req{Method: http.MethodPost, Path: "/login",
		Headers: ct("Authorization", basic("lock@example.com", "wrong-password"), "RemoteAddr", "198.51.100.7:1", "X-Forwarded-For", "203.0.113.99")})
	require.Equal(t, http.StatusUnauthorized, r.Code, r.Body)
	require.Equal(t, "4", r.Header.Get("X-RateLimit-Remaining"), "counted under its own address")

	// Six or more failures of the account from other addresses do not lock
	// the owner out: the right password from a fresh IP logs in.
	r = login("203.0.113.2", "password-l")
	require.Equal(t, http.StatusOK, r.Code, r.Body)

	// (The address that failed is locked out of the account once the
	// route's per-minute limit lets it try again: account's
	// TestLockoutSameAddress.)
}

// TestLockoutFromOtherAddresses: six failed logins from six different
// client addresses do not lock the owner out: the right password from the
// owner's own address still logs in.
func TestLockoutFromOtherAddresses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, true)
	e.verifiedUserVia("target@example.com", "password-t", "10.0.0.7")
	login := func(ip, password string) response {
		return e.do(req{Method: http.MethodPost, Path: "/login",
			Headers: ct("Authorization", basic("target@example.com", password), "RemoteAddr", "127.0.0.1:4000", "X-Forwarded-For", ip)})
	}
	for i := range 6 {
		r := login(fmt.Sprintf("203.0.113.%d", 20+i), "wrong-password")
		require.Equal(t, http.StatusUnauthorized, r.Code, r.Body)
	}
	r := login("10.0.0.7", "password-t")
	require.Equal(t, http.StatusOK, r.Code, r.Body)
}

// verifiedUserVia signs up and verifies from a given client address (so
// the helper does not use up the test's own rate-limit buckets).
func (e *env) verifiedUserVia(addr, password, ip string) {
	e.tb.Helper()
	h := ct("RemoteAddr", "127.0.0.1:4000", "X-Forwarded-For", ip)
	r := e.do(req{Method: http.MethodPost, Path: "/users", Headers: h, Body: jsonBody(e.tb, map[string]string{"email": addr, "password": password})})
	require.Equal(e.tb, http.StatusOK, r.Code, r.Body)
	key := keyOf(e.tb, e.waitEmail(addr, "NounsAI Playground Verification"), "verify")
	r = e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: h})
	require.Equal(e.tb, http.StatusOK, r.Code, r.Body)
}

// TestLegacyToken: a token of the old system ({"id", "exp"}, no version)
// works until the user's first password change.
func TestLegacyToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, false)
	id := e.verifiedUser("legacy@example.com", "password-1", nil)
	legacy, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"id": id, "exp": time.Now().Add(300 * 24 * time.Hour).Unix(),
	}).SignedString([]byte(config.DevJWTSecret))
	require.NoError(t, err)
	h := map[string]string{"Authorization": legacy}
	path := fmt.Sprintf("/users/%d", id)

	r := e.do(req{Method: http.MethodGet, Path: path, Headers: h})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	r = e.do(req{Method: http.MethodPut, Path: path, Headers: h, Body: `{"password":"password-2","current_password":"password-1"}`})
	require.Equal(t, http.StatusOK, r.Code, r.Body)
	r = e.do(req{Method: http.MethodGet, Path: path, Headers: h})
	require.Equal(t, http.StatusUnauthorized, r.Code)
}
