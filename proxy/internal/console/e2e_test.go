package console_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/app"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/browsertest"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// newGPUBackend is a gpusvc-like host answering /health with its capacity.
func newGPUBackend(tb testing.TB, queued int) *httptest.Server {
	tb.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"message": "API is up and running!", "slots": 2, "in_flight": 1, "queued": queued,
			"backend": "fake", "models": []string{},
		})
	}))
	tb.Cleanup(srv.Close)
	return srv
}

// startProxy runs the real proxy (app.New + Run) on a :0 port against db
// until the test ends and returns its base URL.
func startProxy(tb testing.TB, db *pgxpool.Pool, account string) (string, *app.App) {
	tb.Helper()
	cfg := app.Config{Common: config.LoadCommon(config.FromMap(map[string]string{
		"CHALLENGE_TOKEN": "e2e-challenge", "ADMIN_TOKEN": adminToken,
	}), "127.0.0.1:0")}
	cfg.RateLimits = false
	cfg.AccountURLs = []string{account}
	cfg.Policy = balancer.PolicyEEFT
	cfg.HealthInterval = 300 * time.Millisecond
	cfg.HealthTimeout = time.Second
	cfg.HealthRise, cfg.HealthFall = 1, 2
	cfg.GPUTimeout = 10 * time.Second
	cfg.UpstreamTimeout = 5 * time.Second
	cfg.HostsReloadInterval = time.Minute
	cfg.ShutdownTimeout = 5 * time.Second
	cfg.MaxConns = 100
	require.Equal(tb, adminToken, cfg.AdminToken)

	a, err := app.New(cfg, zaptest.NewLogger(tb), app.Deps{DB: db})
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
	})
	// Serving starts with the first host load; a test that ends at once
	// (the browser test skipping) must not cancel it halfway.
	base := "http://" + ln.Addr().String()
	require.Eventually(tb, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		_ = resp.Body.Close()
		return true
	}, 10*time.Second, 10*time.Millisecond)
	return base, a
}

func TestConsoleInBrowser(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	account := newGPUBackend(t, 0)
	a, b := newGPUBackend(t, 3), newGPUBackend(t, 0)
	var idA, idB int64
	require.NoError(t, db.QueryRow(ctx, `INSERT INTO api_hosts (address) VALUES ($1) RETURNING id`, a.URL).Scan(&idA))
	require.NoError(t, db.QueryRow(ctx, `INSERT INTO api_hosts (address, weight) VALUES ($1, 2) RETURNING id`, b.URL).Scan(&idB))
	_, err := db.Exec(ctx, `
		INSERT INTO river_job (kind, args, max_attempts, state, queue, priority)
		VALUES ('image_generate', '{}', 5, 'available', 'default', 1),
		       ('image_generate', '{}', 5, 'running', 'default', 1),
		       ('video_render', '{}', 5, 'scheduled', 'default', 1)`)
	require.NoError(t, err)
	base, proxy := startProxy(t, db, account.URL)

	bctx := browsertest.New(t, 90*time.Second)
	rowA := `#gpu-hosts tr[data-host-id="` + itoa(idA) + `"]`
	rowB := `#gpu-hosts tr[data-host-id="` + itoa(idB) + `"]`

	// Sign in: the wrong token is refused, the right one opens the page.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Navigate(base+"/admin"),
		chromedp.WaitVisible(chromedp.CSS(`#token`)),
		chromedp.SendKeys(chromedp.CSS(`#token`), "not-the-token"),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#login-error`)),
	))
	loginErr, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#login-error`)))
	require.NoError(t, err)
	require.Equal(t, "Invalid admin token.", loginErr)
	require.NoError(t, chromedp.Do(bctx,
		chromedp.SendKeys(chromedp.CSS(`#token`), adminToken),
		chromedp.Click(chromedp.CSS(`#login`)),
		chromedp.WaitVisible(chromedp.CSS(`#gpu-hosts`)),
		// Both hosts, up, and River's job counts.
		chromedp.WaitVisible(chromedp.CSS(rowA+`[data-state="up"]`)),
		chromedp.WaitVisible(chromedp.CSS(rowB+`[data-state="up"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#jobs tr[data-kind="image_generate"]`)),
	))

	// The live update replaces the table without a reload: wait until a
	// refresh shows the queue a reports in /health.
	_, err = chromedp.Run(bctx, chromedp.Poll[bool](
		`(() => { const r = document.querySelector('`+rowA+`'); return !!r && r.cells[8].textContent === "3"; })()`,
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err)
	queued, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(rowA+` td:nth-child(9)`)))
	require.NoError(t, err)
	require.Equal(t, "3", queued)

	// Drain a with its button: the table shows it draining, the row in the
	// database is draining, and the proxy sends a nothing new.
	clicked := time.Now()
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(rowA+` button.drain`)),
		chromedp.WaitVisible(chromedp.CSS(rowA+`[data-state="draining"] button.undrain`)),
		chromedp.WaitVisible(chromedp.CSS(rowB+`[data-state="up"] button.drain`)),
	))
	t.Logf("drain click → table shows draining: %s", time.Since(clicked))
	var draining bool
	require.NoError(t, db.QueryRow(ctx, `SELECT draining FROM api_hosts WHERE id = $1`, idA).Scan(&draining))
	require.True(t, draining)
	require.NoError(t, db.QueryRow(ctx, `SELECT draining FROM api_hosts WHERE id = $1`, idB).Scan(&draining))
	require.False(t, draining)
	gpu, _ := proxy.Pools()
	for _, u := range gpu.Hosts() {
		require.Equal(t, u.ID == idA, u.Draining(), u.Address)
	}

	// A screenshot of the drained state.
	browsertest.Screenshot(t, bctx, "console.png", "CONSOLE_SCREENSHOT_DIR")

	// Undrain it again.
	require.NoError(t, chromedp.Do(bctx,
		chromedp.Click(chromedp.CSS(rowA+` button.undrain`)),
		chromedp.WaitVisible(chromedp.CSS(rowA+`[data-state="up"] button.drain`)),
	))
	require.NoError(t, db.QueryRow(ctx, `SELECT draining FROM api_hosts WHERE id = $1`, idA).Scan(&draining))
	require.False(t, draining)
}
