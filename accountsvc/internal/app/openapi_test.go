package app_test

import (
	"path/filepath"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/apispec/apispectest"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestRoutesMatchOpenAPI diffs accountsvc's routes (local storage, so
// GET /media/* is served too) with the operations api/openapi.yaml gives
// accountsvc (x-service: accountsvc), both ways. The local stack's fake
// Discord webhook (a stand-in for the vendor, never in production) is not
// part of the API.
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	_, prefix := dbtest.Redis(t)
	redisURL := dbtest.RedisURL()
	dir := t.TempDir()
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{
		"DATABASE_URL":    dbtest.NewURL(t),
		"REDIS_URL":       redisURL,
		"REDIS_PREFIX":    prefix,
		"STORAGE_BACKEND": "local",
		"STORAGE_DIR":     filepath.Join(dir, "storage"),
		"EMAIL_BACKEND":   "outbox",
		"OUTBOX_DIR":      filepath.Join(dir, "outbox"),
	}))
	require.NoError(t, err)
	a, err := app.New(t.Context(), cfg, zaptest.NewLogger(t))
	require.NoError(t, err)
	t.Cleanup(a.Close)
	e, ok := a.Handler().(*echo.Echo)
	require.True(t, ok, "accountsvc's handler is its echo router")
	apispectest.DiffRoutes(t, "accountsvc", apispectest.RouteKeys(e.Routes(), "POST /dev/discord/webhook"))
}
