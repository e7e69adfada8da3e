package web_test

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestReadRoutesSurviveTerminatedBackend is the database blip of issue 14
// seen from HTTP: the server terminates the backend while a GET's query is
// running on it (pg_terminate_backend, a failover). The GET answers 200 from
// a second run on a fresh connection; a POST hit by the same fault is not
// repeated: it answers 503 with Retry-After, so the client may retry it.
func TestReadRoutesSurviveTerminatedBackend(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewURL(t)
	pool, err := db.Open(ctx, url, db.Options{MaxConns: 4})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	admin, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) })

	e, _ := newTestEcho(t)
	var runs atomic.Int32
	// handler sleeps in the database on its first run (long enough to be
	// killed) and not on later ones; each route marks its statement.
	handler := func(mark string) echo.HandlerFunc {
		return func(c echo.Context) error {
			n := runs.Add(1)
			sleep := 0.0
			if n == 1 {
				sleep = 60
			}
			var pid int32
			err := pool.QueryRow(c.Request().Context(),
				`/* `+mark+` */ SELECT pg_backend_pid() FROM pg_sleep($1)`, sleep).Scan(&pid)
			if err != nil {
				return err
			}
			return c.JSON(http.StatusOK, map[string]any{"pid": pid, "runs": n})
		}
	}
	e.GET("/slow-read", handler("slow-read"))
	e.POST("/slow-write", handler("slow-write"))

	kill := func(mark string) {
		require.Eventually(t, func() bool {
			var killed bool
			err := admin.QueryRow(ctx, `
				SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
				WHERE datname = current_database() AND query LIKE $1 AND state = 'active'
				  AND pid <> pg_backend_pid()`, "/* "+mark+" */%").Scan(&killed)
			return err == nil && killed
		}, 10*time.Second, 5*time.Millisecond)
	}

	for _, tc := range []struct {
		method, path string
		status       int
		runs         int32
	}{
		{http.MethodGet, "/slow-read", http.StatusOK, 2},
		{http.MethodPost, "/slow-write", http.StatusServiceUnavailable, 1},
	} {
		runs.Store(0)
		done := make(chan struct{})
		go func() { defer close(done); kill(tc.path[1:]) }()
		start := time.Now()
		w := do(e, tc.method, tc.path, "", nil)
		<-done
		require.Equal(t, tc.status, w.Code, "%s %s: %s", tc.method, tc.path, w.Body.String())
		require.Equal(t, tc.runs, runs.Load(), tc.path)
		require.Less(t, time.Since(start), 30*time.Second, "the killed query must not have run to its end")
		if tc.status == http.StatusOK {
			require.EqualValues(t, tc.runs, decode(t, w)["runs"])
		} else {
			require.Equal(t, "1", w.Header().Get("Retry-After"))
			require.Contains(t, decode(t, w)["message"], "retry")
		}
	}
}
