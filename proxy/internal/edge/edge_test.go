package edge_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/edge"
)

func TestChallenge(t *testing.T) {
	t.Parallel()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	g := edge.NewGuard(edge.Config{ChallengeTokens: []string{"current", "", "previous"}, ChallengeExempt: []string{"/verify/"}}, nil, ok, zaptest.NewLogger(t))
	for _, tc := range []struct {
		method, path, token string
		hdr                 map[string]string
		want                int
	}{
		{"GET", "/users/1", "current", nil, http.StatusNoContent},
		{"PUT", "/users/1", "previous", nil, http.StatusNoContent},
		{"GET", "/users/1", "", nil, http.StatusUnauthorized},
		{"GET", "/users/1", "curren", nil, http.StatusUnauthorized},
		{"GET", "/verify/abc", "", nil, http.StatusNoContent},
		// A plain OPTIONS is forwarded and needs the token; a preflight is
		// answered here without it.
		{"OPTIONS", "/images", "", nil, http.StatusUnauthorized},
		{"OPTIONS", "/images", "", map[string]string{"Origin": "https://a.b", "Access-Control-Request-Method": "POST"}, http.StatusOK},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		if tc.token != "" {
			req.Header.Set("challenge-token", tc.token)
		}
		for k, v := range tc.hdr {
			req.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		g.ServeHTTP(w, req)
		require.Equal(t, tc.want, w.Code, "%s %s %q", tc.method, tc.path, tc.token)
		if tc.want == http.StatusUnauthorized {
			require.JSONEq(t, `{"message":"challenge-token header missing / invalid"}`, w.Body.String())
		}
	}
}

func TestLimitListener(t *testing.T) {
	t.Parallel()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ln := edge.LimitListener(raw, 1)
	accepted := make(chan net.Conn, 2)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	c1, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c1.Close()
	c2, err := net.Dial("tcp", raw.Addr().String())
	require.NoError(t, err)
	defer c2.Close()
	first := <-accepted
	select {
	case <-accepted:
		t.Fatal("second connection accepted over the limit")
	case <-time.After(100 * time.Millisecond):
	}
	require.NoError(t, first.Close())
	select {
	case c := <-accepted:
		require.NoError(t, c.Close())
	case <-time.After(time.Second):
		t.Fatal("second connection not accepted after the first closed")
	}
	require.NoError(t, ln.Close())
}
