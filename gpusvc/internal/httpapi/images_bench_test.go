package httpapi_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/app"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/storage"
)

const (
	benchChallenge = "bench-challenge-token"
	benchSecret    = "bench-jwt-secret-0123456789abcdef"
)

// BenchmarkPostImages512 is POST /images (Text to Image, one 512×512
// sample, a new seed each time) through gpusvc's whole handler in process:
// auth, validation, charging, render, PNG, thumbnail, hash, database row
// and local storage, on a real database and Redis. It reports the
// backend's own render time (gpusvc_generation_duration_seconds) and the
// rest, the pipeline overhead, per request.
func BenchmarkPostImages512(b *testing.B) {
	ctx := context.Background()
	redisURL := dbtest.RedisURL()
	_, prefix := dbtest.Redis(b)
	cfg := app.Config{
		Common: config.Common{
			Environment: "local", HTTPAddr: "127.0.0.1:0", DatabaseURL: dbtest.NewURL(b),
			RedisURL: redisURL, RedisPrefix: prefix, LogFormat: "json", LogLevel: "error",
			JWTSecrets: [][]byte{[]byte(benchSecret)}, ChallengeTokens: []string{benchChallenge},
			BodyLimit: 5 << 20, ShutdownTimeout: 5 * time.Second,
		},
		Storage:   storage.Config{Backend: storage.BackendLocal, Dir: b.TempDir(), LocalURL: "http://127.0.0.1:1/media", Timeout: time.Minute},
		Credits:   credits.Config{RefundGrantDays: 30},
		Inference: app.InferenceConfig{Default: "nouns"},
		GPU:       app.GPUConfig{Slots: 2, Queue: 4, QueueWait: 30 * time.Second, JobTimeout: time.Minute},
		Limits:    generate.DefaultLimits,
		Email:     email.Config{Backend: "outbox", From: "admin@nounsai.wtf", OutboxDir: b.TempDir()},
	}
	a, err := app.New(ctx, cfg, zap.NewNop())
	require.NoError(b, err)
	b.Cleanup(a.Close)
	h := a.Handler()

	token := benchUser(b, cfg.DatabaseURL)

	post := func(seed int) {
		body := fmt.Sprintf(`{"inference_mode":"Text to Image","model_id":"alxdfy/noggles-v21-6400-best","prompt":"a frog wearing noggles","negative_prompt":"","samples":1,"steps":25,"seed":%d,"aspect_ratio":"512:512"}`, seed)
		req := httptest.NewRequest(http.MethodPost, "/images", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("challenge-token", benchChallenge)
		req.Header.Set("Authorization", token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("POST /images: %d %s", rec.Code, rec.Body.String())
		}
	}
	for i := range 3 {
		post(1_000_000 + i)
	}
	s0, c0 := renderTotals(b, h)
	cpu0 := cpuTime(b)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		post(i)
	}
	b.StopTimer()
	cpu := cpuTime(b) - cpu0
	s1, c1 := renderTotals(b, h)
	if c1 > c0 {
		render := (s1 - s0) / (c1 - c0) * 1e3
		perOp := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / 1e6
		b.ReportMetric(render, "render-ms/op")
		b.ReportMetric(perOp-render, "overhead-ms/op")
	}
	// This process's CPU (PostgreSQL and Redis not counted); it moves far
	// less than ns/op when other processes load the machine.
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/1e6, "cpu-ms/op")
}

// cpuTime returns the process's user + system CPU time so far.
func cpuTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	require.NoError(tb, syscall.Getrusage(syscall.RUSAGE_SELF, &ru))
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchUser creates a user with plenty of credits and returns its token.
func benchUser(tb testing.TB, databaseURL string) string {
	tb.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, databaseURL)
	require.NoError(tb, err)
	defer pool.Close()
	var id int64
	require.NoError(tb, pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("bench%d@example.com", time.Now().UnixNano())).Scan(&id))
	_, err = credits.NewLedger(pool, credits.Options{}).Grant(ctx, pool, credits.GrantInput{UserID: id, Amount: 1_000_000_000, Memo: "bench"})
	require.NoError(tb, err)
	tok, _, err := auth.Issue([]byte(benchSecret), id, 0, time.Hour, time.Now())
	require.NoError(tb, err)
	return tok
}

// renderTotals returns the sum (seconds) and count of
// gpusvc_generation_duration_seconds over every label set.
func renderTotals(tb testing.TB, h http.Handler) (float64, float64) {
	tb.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	require.Equal(tb, http.StatusOK, rec.Code)
	var sum, count float64
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch {
		case strings.HasPrefix(line, "gpusvc_generation_duration_seconds_sum"):
			sum += v
		case strings.HasPrefix(line, "gpusvc_generation_duration_seconds_count"):
			count += v
		}
	}
	return sum, count
}
