package service_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/service"
)

func TestOpenWeb(t *testing.T) {
	t.Parallel()
	redisURL := dbtest.RedisURL()
	common := config.Common{DatabaseURL: dbtest.NewURL(t), RedisURL: redisURL, BodyLimit: 1024}
	for _, tc := range []struct {
		name string
		cors bool
	}{{"browser-facing", true}, {"behind the proxy", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			w, err := service.OpenWeb(ctx, common, "svc", zap.NewNop(), tc.cors)
			require.NoError(t, err)
			defer w.Close()
			require.NoError(t, w.DB.Ping(ctx))
			require.NoError(t, w.Redis.Ping(ctx).Err())
			w.Echo.POST("/echo", func(c echo.Context) error {
				b, err := io.ReadAll(c.Request().Body)
				if err != nil {
					return err
				}
				return c.String(http.StatusOK, string(b))
			})

			do := func(method, path, body string) *httptest.ResponseRecorder {
				req := httptest.NewRequest(method, path, strings.NewReader(body))
				req.Header.Set("Origin", "https://nounsai.wtf")
				rec := httptest.NewRecorder()
				w.Handler().ServeHTTP(rec, req)
				return rec
			}
			rec := do("POST", "/echo", "hi")
			require.Equal(t, http.StatusOK, rec.Code)
			require.Equal(t, "hi", rec.Body.String())
			require.NotEmpty(t, rec.Header().Get(echo.HeaderXRequestID), "web.New's chain sets a request ID")
			if tc.cors {
				require.Equal(t, "https://nounsai.wtf", rec.Header().Get("Access-Control-Allow-Origin"))
			} else {
				require.Empty(t, rec.Header().Get("Access-Control-Allow-Origin"))
			}

			// The config's body limit applies, answered in JSON.
			rec = do("POST", "/echo", strings.Repeat("x", 2048))
			require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
			require.Contains(t, rec.Header().Get(echo.HeaderContentType), "application/json")

			// Request metrics land in the connections' registry.
			mfs, err := w.Registry.Gather()
			require.NoError(t, err)
			var names []string
			for _, mf := range mfs {
				names = append(names, mf.GetName())
			}
			require.Contains(t, names, "http_requests_total")
		})
	}

	t.Run("nothing stays open on error", func(t *testing.T) {
		t.Parallel()
		bad := common
		bad.RedisURL = "redis://127.0.0.1:1/0"
		_, err := service.OpenWeb(context.Background(), bad, "svc", zap.NewNop(), false)
		require.Error(t, err)
	})
}
