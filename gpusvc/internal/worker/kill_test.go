package worker_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gpusvcBinary builds cmd/gpusvc once per test process.
func gpusvcBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gpusvc-bin-*")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gpusvc")
		out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/gpusvc").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	require.NoError(t, buildErr)
	return binPath
}

// syncBuffer is a bytes.Buffer safe for the process's output goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startGPUSvc runs the real gpusvc binary with env; its output goes to
// log.
func startGPUSvc(t *testing.T, env []string, log *syncBuffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(gpusvcBinary(t))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { _ = cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				_ = cmd.Process.Kill()
			}
		}
	})
	return cmd
}

// TestKill9ThenRestartCompletesOnce kills the gpusvc running a video job
// with SIGKILL, starts a new one, and checks the job completes with one
// result and one charge.
func TestKill9ThenRestartCompletesOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.NewURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	rc, prefix := dbtest.Redis(t)
	dir := t.TempDir()
	stDir := filepath.Join(dir, "storage")
	st, err := storage.NewLocal(stDir, "http://127.0.0.1:8080/media")
	require.NoError(t, err)
	redisURL := dbtest.RedisURL()
	vars := []string{
		"DATABASE_URL=" + dbURL, "REDIS_URL=" + redisURL, "REDIS_PREFIX=" + prefix, "HTTP_ADDR=127.0.0.1:0",
		"STORAGE_DIR=" + stDir, "OUTBOX_DIR=" + filepath.Join(dir, "outbox"), "INFERENCE_BACKEND=nouns",
		"WORKER_CONCURRENCY=1", "JOB_HEARTBEAT_TIMEOUT=2s", "JOB_SWEEP_INTERVAL=500ms", "AUDIO_DURATION=2",
		"RATE_LIMITS=off", "LOG_FORMAT=json", "VIDEO_WEBHOOK_URL=", "REGISTER_HOST=false",
	}

	client, err := jobs.NewInsertClient(pool)
	require.NoError(t, err)
	ledger := credits.NewLedger(pool, credits.Options{})
	store := jobs.NewStore(jobs.Options{Pool: pool, River: client, Events: jobs.NewEvents(rc, prefix), Ledger: ledger,
		Config: jobs.Config{AudioDuration: 2}, Log: zap.NewNop()})
	var u int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ('kill@example.com', 'x', '{}') RETURNING id`).Scan(&u))
	_, err = ledger.Grant(ctx, nil, credits.GrantInput{UserID: u, Amount: 1000, Memo: "test"})
	require.NoError(t, err)

	var log1 syncBuffer
	first := startGPUSvc(t, vars, &log1)

	var audioID int64
	require.NoError(t, db.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'a.mp3', 'kill-audio', 0, '{"prompt":"x"}', 'QUEUED') RETURNING id`,
			u).Scan(&audioID); err != nil {
			return err
		}
		return store.OnAudioQueued(ctx, tx, audioID)
	}))
	aj := waitJob(t, ctx, func() (jobs.Job, error) { return store.ForAudio(ctx, audioID) }, terminal)
	require.Equal(t, jobs.StateCompleted, aj.State, "%s\n%s", aj.Error, log1.String())

	images := library.NewImages(pool, st, zap.NewNop())
	e := &env{images: images}
	ids := []int64{e.keyframe(t, u, 1), e.keyframe(t, u, 250)}
	var projectID int64
	require.NoError(t, db.InTx(ctx, pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, `
INSERT INTO video_projects (user_id, audio_id, metadata, state, cdn_id) VALUES ($1, $2, $3::json, 'QUEUED', 'kill-video') RETURNING id`,
			u, audioID, fmt.Sprintf(`{"timestamps":[0,59],"imageIds":[%d,%d]}`, ids[0], ids[1])).Scan(&projectID); err != nil {
			return err
		}
		return store.OnProjectQueued(ctx, tx, projectID)
	}))
	vj, err := store.ForVideoProject(ctx, projectID)
	require.NoError(t, err)
	before, err := ledger.Balance(ctx, u)
	require.NoError(t, err)

	// Kill -9 mid-render.
	waitJob(t, ctx, func() (jobs.Job, error) { return store.Get(ctx, vj.ID) }, func(j jobs.Job) bool {
		return j.State == jobs.StateProcessing && j.Stage == "frames" && j.Progress > 0.1
	})
	require.NoError(t, first.Process.Signal(syscall.SIGKILL))
	_ = first.Wait()
	mid, err := store.Get(ctx, vj.ID)
	require.NoError(t, err)
	require.Equal(t, jobs.StateProcessing, mid.State, "the kill left the job PROCESSING")

	var log2 syncBuffer
	startGPUSvc(t, vars, &log2)
	done := waitJob(t, ctx, func() (jobs.Job, error) { return store.Get(ctx, vj.ID) }, terminal)
	require.Equal(t, jobs.StateCompleted, done.State, "%s\n%s", done.Error, log2.String())
	require.GreaterOrEqual(t, done.Attempt, 2)

	// Exactly one charge for the job and one rendered object.
	var debits int
	require.NoError(t, pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND idempotency_key = $2 AND type = 'debit'`,
		u, done.DebitKey).Scan(&debits))
	require.Equal(t, 1, debits)
	after, err := ledger.Balance(ctx, u)
	require.NoError(t, err)
	require.Equal(t, before-done.Cost, after)
	require.Equal(t, int64(2*59), done.Cost)
	var mp4s []string
	require.NoError(t, filepath.WalkDir(stDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(p, ".mp4") {
			mp4s = append(mp4s, p)
		}
		return err
	}))
	require.Equal(t, []string{filepath.Join(stDir, storage.VideoKey(u, "kill-video"))}, mp4s)
	require.Equal(t, "COMPLETED", legacyState(t, pool, "video_projects", projectID))
}
