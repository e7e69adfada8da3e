package e2e_test

import (
	"fmt"
	"net/http"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
)

// testLegacyAccountFlow: signup → the key from the outbox → verify → login
// (Basic) → GET /users/<id> → GET /users/<id>/credits, with the legacy
// frontend's bodies, through the proxy and directly.
func testLegacyAccountFlow(t *testing.T, s *stack) {
	for _, tg := range s.targets() {
		addr := fmt.Sprintf("Legacy-%s@Example.com", tg.name)
		const password = "hunter2:with-a-colon"

		r := tg.do(t, http.MethodPost, "/users", "",
			fmt.Sprintf(`{"email":" %s ","password":%q,"metadata":{"theme":"dark"},"referralToken":"not-a-real-token"}`, addr, password))
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, []string{"id"}, keys(r.Map(t)))
		id := r.ID(t)

		// Not verified yet.
		r = tg.do(t, http.MethodPost, "/login", "", nil, "Authorization", basicAuth(addr, password))
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)
		require.JSONEq(t, `{"message":"Email not verified!"}`, string(r.body))

		key := s.verifyKey(t, addr)
		r = tg.do(t, http.MethodPost, "/users/verify/"+key, "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.JSONEq(t, fmt.Sprintf(`{"id":%d}`, id), string(r.body))

		r = tg.do(t, http.MethodPost, "/login", "", nil, "Authorization", basicAuth(addr, password))
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, []string{"id", "token"}, keys(r.Map(t)))
		require.EqualValues(t, id, r.Map(t)["id"])
		tok := r.Map(t)["token"].(string)

		// The legacy frontend sends the token raw in Authorization.
		r = tg.do(t, http.MethodGet, fmt.Sprintf("/users/%d", id), tok, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		p := r.Map(t)
		require.Equal(t, []string{"created_at", "email", "id", "is_verified", "metadata", "referral_token"}, keys(p))
		require.Equal(t, addr, p["email"])
		require.Equal(t, true, p["is_verified"])
		require.Equal(t, map[string]any{"theme": "dark"}, p["metadata"])
		require.NotContains(t, string(r.body), "argon2")

		r = tg.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", id), tok, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.JSONEq(t, `{"credits":50}`, string(r.body), "signup bonus")

		// Another user's id, and no token.
		r = tg.do(t, http.MethodGet, fmt.Sprintf("/users/%d/credits", id+1000), tok, nil)
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)
		r = tg.do(t, http.MethodGet, fmt.Sprintf("/users/%d", id), "", nil)
		require.Equal(t, http.StatusUnauthorized, r.status, tg.name)
		require.JSONEq(t, `{"message":"Token is missing!"}`, string(r.body))
	}

	// The proxy refuses a missing challenge token with the legacy body,
	// and lets the verification page opened from the email through
	// without it.
	proxy := s.targets()[0]
	r := proxy.do(t, http.MethodPost, "/users", "", `{"email":"x@example.com","password":"long enough pw"}`, "challenge-token", "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.JSONEq(t, `{"message":"challenge-token header missing / invalid"}`, string(r.body))
	r = proxy.do(t, http.MethodGet, "/verify/"+fmt.Sprintf("%096x", 1), "", nil, "challenge-token", "")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Contains(t, r.header.Get("Content-Type"), "text/html")
}

// keys returns the sorted keys of m.
func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
