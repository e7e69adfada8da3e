package app_test

import (
	"context"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/app"
	"github.com/nounsai/sdserver/shared/apispec/apispectest"
)

// TestRoutesMatchOpenAPI diffs gpusvc's public routes, the ones clients
// reach through the proxy, with the operations api/openapi.yaml gives
// gpusvc (x-service: gpusvc), both ways. /health and /metrics are the
// proxy's to read: its own paths of the same names answer clients.
func TestRoutesMatchOpenAPI(t *testing.T) {
	t.Parallel()
	a, err := app.New(context.Background(), testConfig(t), zap.NewNop())
	require.NoError(t, err)
	t.Cleanup(a.Close)
	e, ok := a.Handler().(*echo.Echo)
	require.True(t, ok, "gpusvc's handler is its echo router")
	apispectest.DiffRoutes(t, "gpusvc", apispectest.RouteKeys(e.Routes(), "GET /health", "GET /metrics"))
}
