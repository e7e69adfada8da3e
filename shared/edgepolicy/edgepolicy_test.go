package edgepolicy_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/edgepolicy"
)

func TestChallenge(t *testing.T) {
	t.Parallel()
	preflight := map[string]string{"Origin": "https://a.b", "Access-Control-Request-Method": "POST"}
	for _, tc := range []struct {
		name   string
		tokens []string
		exempt []string
		method string
		path   string
		token  string
		hdr    map[string]string
		want   bool
	}{
		{"current", []string{"cur", "", "prev"}, nil, "POST", "/images", "cur", nil, true},
		{"previous", []string{"cur", "", "prev"}, nil, "POST", "/images", "prev", nil, true},
		{"missing", []string{"cur"}, nil, "POST", "/images", "", nil, false},
		{"prefix of a token", []string{"cur"}, nil, "POST", "/images", "cu", nil, false},
		{"exempt path", []string{"cur"}, []string{"/verify/"}, "GET", "/verify/abc", "", nil, true},
		{"not exempt", []string{"cur"}, []string{"/verify/"}, "GET", "/verifyx", "", nil, false},
		{"preflight", []string{"cur"}, nil, "OPTIONS", "/images", "", preflight, true},
		{"plain OPTIONS", []string{"cur"}, nil, "OPTIONS", "/images", "", nil, false},
		// No token configured: fail closed, even for an empty header.
		{"no token configured", nil, nil, "GET", "/users/1", "", nil, false},
		{"only empty tokens", []string{""}, nil, "GET", "/users/1", "x", nil, false},
		{"no token, exempt path", nil, []string{"/reset/"}, "GET", "/reset/k", "", nil, true},
	} {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			r.Header.Set("challenge-token", tc.token)
		}
		for k, v := range tc.hdr {
			r.Header.Set(k, v)
		}
		require.Equal(t, tc.want, edgepolicy.NewChallenge(tc.tokens, tc.exempt...).Allows(r), tc.name)
	}
	w := httptest.NewRecorder()
	edgepolicy.WriteChallengeFailure(w)
	require.Equal(t, http.StatusUnauthorized, w.Code)
	require.JSONEq(t, `{"message":"challenge-token header missing / invalid"}`, w.Body.String())
}

func TestCORS(t *testing.T) {
	t.Parallel()
	// No Origin: no CORS header at all.
	w := httptest.NewRecorder()
	require.False(t, edgepolicy.CORS(w, httptest.NewRequest("GET", "/x", nil)))
	require.Empty(t, w.Header())

	// A simple request: the origin echoed, the one exposed list.
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Origin", "https://nouns.ai")
	w = httptest.NewRecorder()
	require.False(t, edgepolicy.CORS(w, r))
	require.Equal(t, []string{"https://nouns.ai"}, w.Header().Values("Access-Control-Allow-Origin"))
	require.Equal(t, []string{"Origin"}, w.Header().Values("Vary"))
	exposed := strings.Split(w.Header().Get("Access-Control-Expose-Headers"), ", ")
	require.Subset(t, exposed, []string{"X-Image-Id", "X-Image-Ids", "X-Request-ID", "Retry-After", "X-RateLimit-Remaining"})
	// Appending to the header does not write into the shared list.
	w.Header()["Access-Control-Expose-Headers"] = append(w.Header()["Access-Control-Expose-Headers"], "X-Other")
	w2 := httptest.NewRecorder()
	edgepolicy.CORS(w2, r)
	require.Equal(t, []string{edgepolicy.ExposedHeaders}, w2.Header()["Access-Control-Expose-Headers"])

	// A preflight is answered.
	r = httptest.NewRequest("OPTIONS", "/images", nil)
	r.Header.Set("Origin", "https://nouns.ai")
	r.Header.Set("Access-Control-Request-Method", "PUT")
	r.Header.Set("Access-Control-Request-Headers", "challenge-token, content-type")
	w = httptest.NewRecorder()
	require.True(t, edgepolicy.CORS(w, r))
	require.Equal(t, http.StatusOK, w.Code)
	require.Equal(t, "https://nouns.ai", w.Header().Get("Access-Control-Allow-Origin"))
	require.Contains(t, w.Header().Get("Access-Control-Allow-Methods"), "PUT")
	require.Equal(t, "challenge-token, content-type", w.Header().Get("Access-Control-Allow-Headers"))
	require.Equal(t, []string{"Origin", "Access-Control-Request-Method", "Access-Control-Request-Headers"}, w.Header().Values("Vary"))
}

func TestRequestID(t *testing.T) {
	t.Parallel()
	for in, keep := range map[string]bool{
		"abc-123":                true,
		strings.Repeat("a", 128): true,
		strings.Repeat("a", 129): false,
		"with space":             false,
		"tab\tid":                false,
		"é":                      false,
		"":                       false,
	} {
		h := http.Header{}
		if in != "" {
			h.Set("X-Request-ID", in)
		}
		got := edgepolicy.RequestID(h)
		if keep {
			require.Equal(t, in, got)
		} else {
			require.Len(t, got, 32, in)
		}
	}
	require.NotEqual(t, edgepolicy.NewRequestID(), edgepolicy.NewRequestID())
}

func TestSecrets(t *testing.T) {
	t.Parallel()
	s := edgepolicy.NewSecrets("a-secret", "")
	require.True(t, s.Match("a-secret"))
	require.False(t, s.Match(""))
	require.False(t, s.Match("a-secre"))
	require.False(t, edgepolicy.NewSecrets().Match(""))
	require.False(t, edgepolicy.NewSecrets("").Match(""))
}
