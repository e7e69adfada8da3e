package pages_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/pages"
	"github.com/nounsai/sdserver/shared/web"
)

func TestPages(t *testing.T) {
	t.Parallel()
	e := web.New(web.Options{Service: "test", Log: zap.NewNop(), Registry: prometheus.NewRegistry()})
	pages.New("dev-challenge-token").Register(e)
	key := strings.Repeat("ab", 48)
	tests := []struct {
		path   string
		status int
		want   string
	}{
		{"/verify/" + key, 200, `fetch("/users/verify/" + "` + key + `"`},
		{"/reset/" + key, 200, `"/users/password/reset/" + key`},
		{"/verify/not-hex<script>", 404, `{"message":"Invalid key"}`},
		{"/reset/abc", 404, `{"message":"Invalid key"}`},
	}
	for _, tt := range tests {
		w := httptest.NewRecorder()
		e.ServeHTTP(w, httptest.NewRequest(http.MethodGet, tt.path, nil))
		require.Equal(t, tt.status, w.Code, tt.path)
		require.Contains(t, w.Body.String(), tt.want, tt.path)
		if tt.status == 200 {
			require.Contains(t, w.Body.String(), `"dev-challenge-token"`)
			require.Equal(t, "no-store", w.Header().Get("Cache-Control"))
		}
	}
}
