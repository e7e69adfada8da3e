package worker_test

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// freeAddr returns a loopback address nothing listens on (listen, close).
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

// TestKill9DuringSyncGenerationRefundsOnce kills the gpusvc serving a
// synchronous POST /images between its charge and its result (issue 14):
// another live gpusvc's sweeper gives the held credits back, exactly once,
// once the hold's deadline has passed, and nothing is left in the library.
func TestKill9DuringSyncGenerationRefundsOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const jwtSecret = "kill-test-jwt-secret-0123456789abcdef"
	const challenge = "kill-test-challenge"
	dbURL := dbtest.NewURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, prefix := dbtest.Redis(t)
	redisURL := dbtest.RedisURL()
	dir := t.TempDir()
	common := []string{
		"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix,
		"STORAGE_DIR=" + filepath.Join(dir, "storage"), "OUTBOX_DIR=" + filepath.Join(dir, "outbox"),
		"JWT_SECRET=" + jwtSecret, "CHALLENGE_TOKEN=" + challenge, "WORKER_CONCURRENCY=0",
		"RATE_LIMITS=off", "LOG_FORMAT=json", "REGISTER_HOST=false",
		// The charge hold outlives the request's own bound by a short
		// margin here, so that the test does not wait minutes.
		"GENERATION_TIMEOUT=2s", "GPU_QUEUE_WAIT=1s", "CHARGE_HOLD_MARGIN=1s", "CHARGE_SWEEP_INTERVAL=200ms",
	}
	ledger := credits.NewLedger(pool, credits.Options{})
	var u int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ('killsync@example.com', 'x', '{}') RETURNING id`).Scan(&u))
	_, err = ledger.Grant(ctx, nil, credits.GrantInput{UserID: u, Amount: 100, Memo: "test"})
	require.NoError(t, err)
	tok, _, err := auth.Issue([]byte(jwtSecret), u, 0, time.Hour, time.Now())
	require.NoError(t, err)

	// The first host renders slowly (60 s per image), so the request is
	// still in flight when it is killed.
	addr := freeAddr(t)
	var log1 syncBuffer
	first := startGPUSvc(t, append(common, "HTTP_ADDR="+addr, "GPU_BASE_SECONDS=60"), &log1)
	waitHealthy(t, "http://"+addr)

	body := `{"inference_mode":"Text to Image","model_id":"","prompt":"a frog","negative_prompt":"","samples":1,"steps":20,"seed":1,"aspect_ratio":"256:256"}`
	go func() {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/images", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("challenge-token", challenge)
		req.Header.Set("Authorization", tok)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	// Wait for the charge, then kill -9.
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := ledger.Balance(ctx, u)
		require.NoError(t, err)
		if b < 100 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the request was never charged\n%s", log1.String())
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()

	// Another live gpusvc (the fast backend) sweeps the abandoned hold.
	addr2 := freeAddr(t)
	var log2 syncBuffer
	startGPUSvc(t, append(common, "HTTP_ADDR="+addr2), &log2)
	deadline = time.Now().Add(30 * time.Second)
	for {
		b, err := ledger.Balance(ctx, u)
		require.NoError(t, err)
		if b == 100 {
			break
		}
		require.True(t, time.Now().Before(deadline), "the killed request's credits were never given back (balance %d)\n%s", b, log2.String())
		time.Sleep(100 * time.Millisecond)
	}
	// Exactly one debit and one refund, and no image.
	var debits, refunds, images int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE type = 'debit'), count(*) FILTER (WHERE type = 'refund') FROM transactions WHERE user_id = $1`, u).
		Scan(&debits, &refunds))
	require.Equal(t, 1, debits)
	require.Equal(t, 1, refunds)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM images WHERE user_id = $1`, u).Scan(&images))
	require.Zero(t, images)
	// A later sweep changes nothing.
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'refund'`, u).Scan(&refunds))
	require.Equal(t, 1, refunds)
}

// waitHealthy waits until the gpusvc at url answers /health.
func waitHealthy(t *testing.T, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(url + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		require.True(t, time.Now().Before(deadline), "gpusvc at %s never became healthy: %v", url, err)
		time.Sleep(100 * time.Millisecond)
	}
}
