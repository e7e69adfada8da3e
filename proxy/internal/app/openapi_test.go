package app_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/shared/apispec/apispectest"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestRoutesMatchOpenAPI diffs the routes the proxy answers itself with
// the operations api/openapi.yaml gives the proxy (x-service: proxy), both
// ways. (Every other path goes upstream: accountsvc's and gpusvc's own
// tests diff theirs.)
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	rc, prefix := dbtest.Redis(t)
	cfg := testConfig("http://127.0.0.1:1")
	cfg.RedisPrefix = prefix
	a, err := app.New(cfg, zaptest.NewLogger(t), app.Deps{DB: dbtest.New(t), Redis: rc})
	require.NoError(t, err)
	apispectest.DiffRoutes(t, "proxy", apispectest.RouteKeys(app.EchoRoutes(a)))
}
