package worker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"net/http/httptest"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/notify"
	"github.com/nounsai/sdserver/shared/storage"
)

type env struct {
	pool     *pgxpool.Pool
	runner   *worker.Runner
	store    *jobs.Store
	ledger   *credits.Ledger
	storage  *storage.Local
	outbox   string
	discord  *notify.Recorder
	images   *library.Images
	events   *jobs.Events
	cfgJobs  jobs.Config
	storeDir string
}

// newEnv starts a runner on a fresh database with the built-in backend
// (or backend when non-nil), local storage, an email outbox and a fake
// Discord webhook.
func newEnv(t *testing.T, backend inference.Backend, jc jobs.Config) *env {
	t.Helper()
	pool := dbtest.New(t)
	rc, prefix := dbtest.Redis(t)
	dir := t.TempDir()
	st, err := storage.NewLocal(filepath.Join(dir, "storage"), "http://127.0.0.1:8080/media")
	require.NoError(t, err)
	if backend == nil {
		nb, err := nouns.New(nouns.Options{})
		require.NoError(t, err)
		backend = nb
	}
	rec := notify.NewRecorder("")
	hook := httptest.NewServer(rec)
	t.Cleanup(hook.Close)
	outbox := filepath.Join(dir, "outbox")
	ledger := credits.NewLedger(pool, credits.Options{})
	registry, err := models.NewRegistry(models.NewStore(pool), map[string]inference.Backend{backend.Name(): backend}, backend.Name(), nil)
	require.NoError(t, err)
	gen := generate.New(generate.Options{
		Registry: registry, Capacity: capacity.New(capacity.Options{Slots: 2, Queue: 4}), Charger: ledger,
		Images: library.NewImages(pool, st, zap.NewNop()), Parents: generate.NewParents(pool), Limits: generate.DefaultLimits,
	})
	r, err := worker.New(worker.Options{
		Pool: pool, Redis: rc, RedisPrefix: prefix, Backend: backend, Storage: st, Ledger: ledger, Generate: gen,
		Email:   email.NewOutbox(outbox, mail.Address{Address: "admin@nounsai.wtf"}),
		Discord: notify.NewDiscord(hook.URL, nil), AppBaseURL: "http://127.0.0.1:8080",
		Config: worker.Config{Jobs: jc, Concurrency: 2}, Log: testLogger(t),
	})
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.Stop(ctx)
	})
	return &env{pool: pool, runner: r, store: r.Store(), ledger: ledger, storage: st, outbox: outbox, discord: rec,
		images: library.NewImages(pool, st, zap.NewNop()), events: jobs.NewEvents(rc, prefix), cfgJobs: jc.WithDefaults(),
		storeDir: filepath.Join(dir, "storage")}
}

func (e *env) user(t *testing.T, credit int64) int64 {
	t.Helper()
	var id int64
	require.NoError(t, e.pool.QueryRow(context.Background(), `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("u%d@example.com", time.Now().UnixNano())).Scan(&id))
	if credit > 0 {
		_, err := e.ledger.Grant(context.Background(), nil, credits.GrantInput{UserID: id, Amount: credit, Memo: "test"})
		require.NoError(t, err)
	}
	return id
}

// requireBalance waits for the balance to become want: refunds commit just
// after the terminal state.
func (e *env) requireBalance(t *testing.T, userID, want int64) {
	t.Helper()
	require.Eventually(t, func() bool {
		b, err := e.ledger.Balance(context.Background(), userID)
		return err == nil && b == want
	}, 10*time.Second, 20*time.Millisecond, "balance %d, want %d", e.balance(t, userID), want)
}

func (e *env) balance(t *testing.T, userID int64) int64 {
	t.Helper()
	b, err := e.ledger.Balance(context.Background(), userID)
	require.NoError(t, err)
	return b
}

// queueAudio inserts a QUEUED audio row and its job in one transaction, as
// the library API does.
func (e *env) queueAudio(t *testing.T, userID int64, meta string) int64 {
	t.Helper()
	id, err := e.tryQueueAudio(userID, meta)
	require.NoError(t, err)
	return id
}

func (e *env) tryQueueAudio(userID int64, meta string) (int64, error) {
	var id int64
	return id, db.InTx(context.Background(), e.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(context.Background(), `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state, queued_at)
VALUES ($1, 'generated.mp3' || gen_random_uuid()::text, gen_random_uuid()::text, 0, $2::json, 'QUEUED', now()) RETURNING id`,
			userID, meta).Scan(&id); err != nil {
			return err
		}
		return e.store.OnAudioQueued(context.Background(), tx, id)
	})
}

// queueProject creates a video project and queues it (state QUEUED, new
// cdn_id, job), as POST /video-projects/<id>/queue does.
func (e *env) queueProject(t *testing.T, userID, audioID int64, meta string) int64 {
	t.Helper()
	var id int64
	require.NoError(t, db.InTx(context.Background(), e.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(context.Background(), `
INSERT INTO video_projects (user_id, audio_id, metadata, state, cdn_id, queued_at)
VALUES ($1, $2, $3::json, 'QUEUED', gen_random_uuid()::text, now()) RETURNING id`, userID, audioID, meta).Scan(&id); err != nil {
			return err
		}
		return e.store.OnProjectQueued(context.Background(), tx, id)
	}))
	return id
}

// keyframe stores a distinct test image for the user.
func (e *env) keyframe(t *testing.T, userID int64, shade uint8) int64 {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, 96, 96))
	for y := 0; y < 96; y++ {
		for x := 0; x < 96; x++ {
			img.Set(x, y, color.RGBA{shade, uint8(x * 2), uint8(y * 2), 255})
		}
	}
	data, err := media.EncodePNG(img)
	require.NoError(t, err)
	im, _, err := e.images.Create(context.Background(), library.NewImage{UserID: userID, Data: data, Decoded: img})
	require.NoError(t, err)
	return im.ID
}

func waitJob(t *testing.T, ctx context.Context, get func() (jobs.Job, error), done func(jobs.Job) bool) jobs.Job {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		j, err := get()
		if err == nil && done(j) {
			return j
		}
		if time.Now().After(deadline) {
			require.FailNow(t, "job did not reach the expected state", "last: %+v err %v", j, err)
		}
		select {
		case <-ctx.Done():
			require.FailNow(t, "context ended")
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func terminal(j jobs.Job) bool { return j.State.Terminal() }

func legacyState(t *testing.T, pool *pgxpool.Pool, table string, id int64) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT state FROM `+table+` WHERE id = $1`, id).Scan(&s))
	return s
}

type probe struct {
	Streams []struct {
		CodecType string `json:"codec_type"`
		CodecName string `json:"codec_name"`
		Duration  string `json:"duration"`
	} `json:"streams"`
}

func ffprobe(t *testing.T, path string) probe {
	t.Helper()
	out, err := exec.Command("ffprobe", "-v", "error", "-print_format", "json", "-show_streams", path).Output()
	require.NoError(t, err)
	var p probe
	require.NoError(t, json.Unmarshal(out, &p))
	return p
}

func outboxSubjects(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var out []string
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		m, err := mail.ReadMessage(strings.NewReader(string(b)))
		require.NoError(t, err)
		out = append(out, m.Header.Get("Subject"))
	}
	return out
}

func TestAudioAndVideoProjectEndToEnd(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil, jobs.Config{AudioDuration: 4})
	u := e.user(t, 100)

	// Text to audio on the built-in backend.
	audioID := e.queueAudio(t, u, `{"prompt":"a happy noun","mode":"text to audio","melody_id":null}`)
	j := waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForAudio(ctx, audioID) }, terminal)
	require.Equal(t, jobs.StateCompleted, j.State, j.Error)
	require.Equal(t, "COMPLETED", legacyState(t, e.pool, "audio", audioID))
	require.Equal(t, int64(100-4), e.balance(t, u))
	var cdnID string
	var size int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cdn_id, size FROM audio WHERE id = $1`, audioID).Scan(&cdnID, &size))
	mp3, err := e.storage.Get(ctx, storage.KindAudio, storage.AudioKey(u, cdnID))
	require.NoError(t, err)
	require.Equal(t, len(mp3), size)
	pos, ok, err := e.store.AudioQueuePosition(ctx, e.pool, audioID)
	require.NoError(t, err)
	require.True(t, ok)
	require.Nil(t, pos)

	// Extend: the continuation is appended.
	extID := e.queueAudio(t, u, fmt.Sprintf(`{"prompt":"a happy noun","parent_id":"%d","mode":"audio extend"}`, audioID))
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForAudio(ctx, extID) }, terminal)
	require.Equal(t, jobs.StateCompleted, j.State, j.Error)
	var extSize int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT size FROM audio WHERE id = $1`, extID).Scan(&extSize))
	require.Greater(t, extSize, size)

	// Split on the built-in backend: the API refuses it up front (501)...
	_, err = e.tryQueueAudio(u, fmt.Sprintf(`{"parent_id":%d,"mode":"audio split"}`, audioID))
	require.Equal(t, apperr.KindUnsupported, apperr.KindOf(err))
	require.ErrorContains(t, err, "not supported by this backend")
	// ...and a split row queued anyway (legacy rows, adopted by the sweep)
	// ends ERROR with the reason, refunded.
	before := e.balance(t, u)
	var splitID int64
	require.NoError(t, e.pool.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'queuedSplit.mp3', 'split-cdn', 0, $2::json, 'QUEUED') RETURNING id`,
		u, fmt.Sprintf(`{"parent_id":%d,"mode":"audio split"}`, audioID)).Scan(&splitID))
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForAudio(ctx, splitID) }, terminal)
	require.Equal(t, jobs.StateError, j.State)
	require.Contains(t, j.Error, "not supported by this backend")
	require.Equal(t, "ERROR", legacyState(t, e.pool, "audio", splitID))
	e.requireBalance(t, u, before)

	// A video project from three keyframes and the generated audio.
	ids := []int64{e.keyframe(t, u, 10), e.keyframe(t, u, 120), e.keyframe(t, u, 240)}
	meta := fmt.Sprintf(`{"timestamps":[0.5,1.5,"3"],"imageIds":[%d,%d,%d],"prompts":["a","",null]}`, ids[0], ids[1], ids[2])
	projectID := e.queueProject(t, u, audioID, meta)
	pj, err := e.store.ForVideoProject(ctx, projectID)
	require.NoError(t, err)
	qpos, err := e.store.QueuePosition(ctx, pj)
	require.NoError(t, err)
	require.NotNil(t, qpos)
	before = e.balance(t, u)
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForVideoProject(ctx, projectID) }, terminal)
	require.Equal(t, jobs.StateCompleted, j.State, j.Error)
	require.Equal(t, "COMPLETED", legacyState(t, e.pool, "video_projects", projectID))
	require.Equal(t, before-2*3, e.balance(t, u)) // 2.5 s → 3 s at 2 credits/s

	var projCDN string
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT cdn_id FROM video_projects WHERE id = $1`, projectID).Scan(&projCDN))
	path := filepath.Join(e.storeDir, storage.VideoKey(u, projCDN))
	p := ffprobe(t, path)
	var video, audio bool
	for _, s := range p.Streams {
		switch s.CodecType {
		case "video":
			video = s.CodecName == "h264"
		case "audio":
			audio = true
			d, err := strconv.ParseFloat(s.Duration, 64)
			require.NoError(t, err)
			require.InDelta(t, 2.5, d, 0.1)
		}
	}
	require.True(t, video, "an H.264 video stream")
	require.True(t, audio, "an audio stream")

	var res jobs.Result
	require.NoError(t, json.Unmarshal(j.Result, &res))
	require.Equal(t, projectID, res.VideoProjectID)
	require.Contains(t, res.URL, projCDN+"-full.mp4")

	// Notifications: the success email and the embed, exactly once.
	// The split failure posted an "Audio ERROR" embed; the video one follows.
	videoEmbeds := func() []notify.Message {
		var out []notify.Message
		for _, m := range e.discord.Messages() {
			if strings.HasPrefix(m.Embeds[0].Title, "Video") {
				out = append(out, m)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(videoEmbeds()) == 1 }, 10*time.Second, 20*time.Millisecond)
	require.Equal(t, "Audio ERROR", e.discord.Messages()[0].Embeds[0].Title)
	msg := videoEmbeds()[0]
	require.False(t, msg.TTS)
	require.Equal(t, "Video COMPLETED", msg.Embeds[0].Title)
	require.Equal(t, res.URL, msg.Embeds[0].Description)
	names := []string{}
	for _, f := range msg.Embeds[0].Fields {
		names = append(names, f.Name)
	}
	require.Equal(t, []string{"Time to process", "Video Length", "User id", "Project id"}, names)
	require.Equal(t, "0:00:02", msg.Embeds[0].Fields[1].Value)
	require.Equal(t, []string{email.SubjectVideoSuccess}, outboxSubjects(t, e.outbox))
}

// failingBackend fails every interpolation with a transient error.
type failingBackend struct{ inference.Backend }

func (failingBackend) Interpolate(context.Context, inference.InterpolateRequest) ([]image.Image, error) {
	return nil, errors.New("gpu fell over")
}

func TestFailingBackendEndsErrorRefundsAndNotifies(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	nb, err := nouns.New(nouns.Options{})
	require.NoError(t, err)
	e := newEnv(t, failingBackend{nb}, jobs.Config{AudioDuration: 2, MaxAttempts: 3, RetryBase: 20 * time.Millisecond})
	u := e.user(t, 100)
	audioID := e.queueAudio(t, u, `{"prompt":"x"}`)
	waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForAudio(ctx, audioID) }, terminal)
	ids := []int64{e.keyframe(t, u, 1), e.keyframe(t, u, 200)}
	before := e.balance(t, u)
	projectID := e.queueProject(t, u, audioID, fmt.Sprintf(`{"timestamps":[0,1],"imageIds":[%d,%d]}`, ids[0], ids[1]))
	j := waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForVideoProject(ctx, projectID) }, terminal)
	require.Equal(t, jobs.StateError, j.State)
	require.Equal(t, "internal error", j.Error)
	require.Equal(t, 3, j.Attempt)
	require.Equal(t, "ERROR", legacyState(t, e.pool, "video_projects", projectID))
	e.requireBalance(t, u, before) // refunded
	require.Eventually(t, func() bool { return len(e.discord.Messages()) == 1 }, 10*time.Second, 20*time.Millisecond)
	emb := e.discord.Messages()[0].Embeds[0]
	require.Equal(t, "Video ERROR", emb.Title)
	require.Contains(t, emb.Description, "gpu fell over")
	require.Equal(t, []string{email.SubjectVideoFailure}, outboxSubjects(t, e.outbox))
}

func TestCancelRunningVideoStreamsOrderedEvents(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil, jobs.Config{AudioDuration: 2})
	u := e.user(t, 1000)
	audioID := e.queueAudio(t, u, `{"prompt":"x"}`)
	waitJob(t, ctx, func() (jobs.Job, error) { return e.store.ForAudio(ctx, audioID) }, terminal)
	ids := []int64{e.keyframe(t, u, 1), e.keyframe(t, u, 200)}
	before := e.balance(t, u)
	projectID := e.queueProject(t, u, audioID, fmt.Sprintf(`{"timestamps":[0,59],"imageIds":[%d,%d]}`, ids[0], ids[1]))
	j, err := e.store.ForVideoProject(ctx, projectID)
	require.NoError(t, err)
	sub, err := e.events.Subscribe(ctx, j.PublicID)
	require.NoError(t, err)
	defer sub.Close()

	// Wait until it renders frames, then cancel.
	waitJob(t, ctx, func() (jobs.Job, error) { return e.store.Get(ctx, j.ID) }, func(j jobs.Job) bool {
		return j.State == jobs.StateProcessing && j.Stage == "frames" && j.Progress > 0.05
	})
	require.Less(t, e.balance(t, u), before, "charged while running")
	c, err := e.store.Cancel(ctx, u, j.PublicID)
	require.NoError(t, err)
	require.True(t, c.CancelRequested)
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.Get(ctx, j.ID) }, terminal)
	require.Equal(t, jobs.StateCanceled, j.State)
	require.Less(t, j.Progress, 1.0)
	require.Equal(t, "CANCELED", legacyState(t, e.pool, "video_projects", projectID))
	e.requireBalance(t, u, before) // refunded

	var last int64
	sawProgress := false
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		ev, err := sub.Next(rctx)
		require.NoError(t, err)
		// Publishers race on Redis; consumers (the SSE handler) drop
		// events not newer than what they have, which orders the stream.
		if ev.Seq <= last {
			continue
		}
		last = ev.Seq
		if ev.Type == jobs.EventProgress {
			sawProgress = true
		}
		if ev.State.Terminal() {
			require.Equal(t, jobs.StateCanceled, ev.State)
			break
		}
	}
	require.True(t, sawProgress)
	// No notification is sent for a cancel.
	require.Empty(t, e.discord.Messages())
}

func testLogger(t *testing.T) *zap.Logger {
	if os.Getenv("WORKER_TEST_LOG") == "" {
		return zap.NewNop()
	}
	l, _ := zap.NewDevelopment()
	return l
}
