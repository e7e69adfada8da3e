package generate_test

import (
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io/fs"
	"path/filepath"
	"sync/atomic"
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
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/gpuroute"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// flakyCharger is the real ledger whose first refundFailures refunds fail
// as a dropped database connection would.
type flakyCharger struct {
	*credits.Ledger
	refundFailures atomic.Int32
	refundCalls    atomic.Int32
}

func (c *flakyCharger) Release(ctx context.Context, debitID int64) (credits.Refund, error) {
	c.refundCalls.Add(1)
	if c.refundFailures.Add(-1) >= 0 {
		return credits.Refund{}, errors.New("conn closed")
	}
	return c.Ledger.Release(ctx, debitID)
}

// failingImages is the real image store whose failAt-th CreateAll (counted
// from 1 over the fixture's life; 0 = never) fails at the end of its
// transaction, after its rows were inserted and the charge settled.
type failingImages struct {
	*library.Images
	failAt int32
	calls  atomic.Int32
}

func (f *failingImages) CreateAll(ctx context.Context, ns []library.NewImage, within func(context.Context, pgx.Tx) error) ([]library.Image, []bool, error) {
	if f.calls.Add(1) == f.failAt {
		return f.Images.CreateAll(ctx, ns, func(ctx context.Context, tx pgx.Tx) error {
			if err := within(ctx, tx); err != nil {
				return err
			}
			return errors.New("database connection lost")
		})
	}
	return f.Images.CreateAll(ctx, ns, within)
}

// clock is a settable clock safe for concurrent use (the ledger's).
type clock struct{ now atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.now.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.now.Add(int64(d)) }

// gatedBackend is the built-in backend whose Generate waits for gate
// after announcing it started.
type gatedBackend struct {
	inference.Backend
	started chan struct{}
	gate    chan struct{}
}

func (g gatedBackend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	close(g.started)
	<-g.gate
	return g.Backend.Generate(ctx, req)
}

// panickyBackend is the built-in backend whose image operations panic and
// whose Interrogate fails.
type panickyBackend struct{ inference.Backend }

func (panickyBackend) Generate(context.Context, inference.ImageRequest) (inference.ImageResult, error) {
	panic("backend bug")
}

func (panickyBackend) Upscale(context.Context, inference.UpscaleRequest) (image.Image, error) {
	panic("backend bug")
}

func (panickyBackend) Interrogate(context.Context, string, image.Image) (string, error) {
	return "", &inference.UpstreamError{Backend: "nouns", Status: 500, Message: "boom"}
}

type fixture struct {
	svc     *generate.Service
	pool    *pgxpool.Pool
	charger *flakyCharger
	images  *failingImages
	clock   *clock
	capa    *capacity.Limiter
	storage string
	user    int64
}

// holdFor is the fixture's charge hold.
const holdFor = 10 * time.Minute

// newFixture builds the pipeline on a fresh database with the built-in
// backend (wrapped by wrap when non-nil) and a user holding 100 credits.
func newFixture(t *testing.T, wrap func(inference.Backend) inference.Backend, failCreateAt int32) *fixture {
	t.Helper()
	pool := dbtest.New(t)
	st, err := storage.NewLocal(filepath.Join(t.TempDir(), "storage"), "http://127.0.0.1:1/media")
	require.NoError(t, err)
	var b inference.Backend
	b, err = nouns.New(nouns.Options{})
	require.NoError(t, err)
	if wrap != nil {
		b = wrap(b)
	}
	reg, err := models.NewRegistry(models.NewStore(pool), map[string]inference.Backend{b.Name(): b}, b.Name(), nil)
	require.NoError(t, err)
	c := &clock{}
	c.now.Store(time.Now().UnixNano())
	f := &fixture{pool: pool, charger: &flakyCharger{Ledger: credits.NewLedger(pool, credits.Options{Now: c.Now})},
		images: &failingImages{Images: library.NewImages(pool, st, zap.NewNop()), failAt: failCreateAt},
		clock:  c, storage: st.Dir(), capa: capacity.New(capacity.Options{Slots: 2, Queue: 4})}
	f.svc = generate.New(generate.Options{Registry: reg, Capacity: f.capa,
		Charger: f.charger, Images: f.images, Parents: generate.NewParents(pool), Limits: generate.DefaultLimits,
		Timeout: time.Minute, HoldFor: holdFor, HoldOwner: "test-host"})
	require.NoError(t, pool.QueryRow(context.Background(), `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("g%d@example.com", time.Now().UnixNano())).Scan(&f.user))
	_, err = f.charger.Grant(context.Background(), nil, credits.GrantInput{UserID: f.user, Amount: 100, Memo: "test"})
	require.NoError(t, err)
	return f
}

func (f *fixture) balance(t *testing.T) int64 {
	t.Helper()
	b, err := f.charger.Balance(context.Background(), f.user)
	require.NoError(t, err)
	return b
}

func (f *fixture) imageIDs(t *testing.T) []int64 {
	t.Helper()
	ids, err := f.images.ListIDs(context.Background(), library.ListOptions{UserID: f.user, Limit: 100})
	require.NoError(t, err)
	return ids
}

func txt2img(userID, seed int64, samples int, key string) generate.ImageJob {
	return generate.ImageJob{UserID: userID, Key: key, Mode: gpuroute.ModeTxt2Img, Op: inference.OpTxt2Img,
		Prompt: "a frog", Samples: samples, Steps: 10, Seed: seed, AspectRatio: "128:128", Width: 128, Height: 128}
}

func testPNG(t *testing.T, side int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, side, side))
	for y := range side {
		for x := range side {
			img.Set(x, y, color.RGBA{uint8(x * 3), uint8(y * 3), 90, 255})
		}
	}
	data, err := media.EncodePNG(img)
	require.NoError(t, err)
	return data
}

// A backend that panics in POST /images still gets the charge refunded,
// even when the first refunds fail.
func TestGenerateImagesPanicRefunds(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(b inference.Backend) inference.Backend { return panickyBackend{b} }, 0)
	f.charger.refundFailures.Store(2)
	require.Panics(t, func() {
		_, _ = f.svc.GenerateImages(context.Background(), txt2img(f.user, 1, 2, "req-panic"))
	})
	require.Equal(t, int64(100), f.balance(t))
	require.EqualValues(t, 3, f.charger.refundCalls.Load(), "two failed refunds, then one that worked")
}

// The charged model routes refund on a backend error through transient
// refund failures, and on a backend panic.
func TestModelRoutesRefundRetriedAndPanicSafe(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(b inference.Backend) inference.Backend { return panickyBackend{b} }, 0)
	caller := generate.Caller{UserID: f.user, Charged: true, Key: "req-interrogate"}
	f.charger.refundFailures.Store(2)
	_, err := f.svc.Interrogate(context.Background(), caller, "", testPNG(t, 96))
	require.True(t, apperr.Is(err, apperr.KindBadGateway), "got %v", err)
	require.Equal(t, int64(100), f.balance(t))

	caller.Key = "req-upscale"
	require.Panics(t, func() {
		_, _ = f.svc.Upscale(context.Background(), caller, "", testPNG(t, 96))
	})
	require.Equal(t, int64(100), f.balance(t))
}

// A refund that keeps failing is given up after a bounded number of tries.
func TestRefundGivesUp(t *testing.T) {
	t.Parallel()
	f := newFixture(t, func(b inference.Backend) inference.Backend { return panickyBackend{b} }, 0)
	f.charger.refundFailures.Store(1000)
	_, err := f.svc.Interrogate(context.Background(), generate.Caller{UserID: f.user, Charged: true, Key: "k"}, "", testPNG(t, 96))
	require.Error(t, err)
	require.EqualValues(t, 4, f.charger.refundCalls.Load())
	require.Less(t, f.balance(t), int64(100))
}

// When storing the samples fails after their rows were inserted, nothing
// of the request is left (rows rolled back, objects deleted) and the
// charge is refunded, but an older image that a sample deduplicated to
// stays.
func TestPartialStoreFailureIsAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	// CreateAll calls: 1 = the older image, 2 = the request's samples.
	f := newFixture(t, nil, 2)
	// Sample i of seed s is the Noun of seed s+i, so sample 1 of seed 20 is
	// this image.
	older, err := f.svc.GenerateImages(ctx, txt2img(f.user, 21, 1, "req-older"))
	require.NoError(t, err)
	require.Equal(t, int64(99), f.balance(t))

	_, err = f.svc.GenerateImages(ctx, txt2img(f.user, 20, 3, "req-partial"))
	require.Error(t, err)
	require.EqualValues(t, 2, f.images.calls.Load())
	require.Equal(t, []int64{older.Outputs[0].ID}, f.imageIDs(t), "only the older image is left")
	require.Equal(t, int64(99), f.balance(t), "the failed request was refunded")
	require.Equal(t, 2, countFiles(t, f.storage), "only the older image's objects are left")
}

// countFiles counts the regular files under dir.
func countFiles(t *testing.T, dir string) int {
	t.Helper()
	n := 0
	require.NoError(t, filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return err
	}))
	return n
}

// A request that finishes after the sweeper refunded its hold (its host
// was presumed dead) fails with 504 and stores nothing: it is neither
// delivered free nor refunded twice.
func TestSweptRequestDeliversNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := gatedBackend{started: make(chan struct{}), gate: make(chan struct{})}
	f := newFixture(t, func(b inference.Backend) inference.Backend { g.Backend = b; return g }, 0)
	errc := make(chan error, 1)
	go func() {
		_, err := f.svc.GenerateImages(ctx, txt2img(f.user, 1, 2, "req-late"))
		errc <- err
	}()
	<-g.started
	require.Equal(t, int64(98), f.balance(t))
	f.clock.Advance(holdFor)
	res, err := f.charger.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Len(t, res.Refunded, 1)
	close(g.gate)
	err = <-errc
	require.ErrorIs(t, err, credits.ErrHoldReleased)
	require.True(t, apperr.Is(err, apperr.KindTimeout))
	require.Empty(t, f.imageIDs(t), "a swept request stores nothing")
	require.Zero(t, countFiles(t, f.storage), "and leaves no object")
	require.Equal(t, int64(100), f.balance(t), "refunded once")
	var refunds int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'refund'`, f.user).Scan(&refunds))
	require.Equal(t, 1, refunds)
}

// A request that settles right at its bound keeps its images and its
// charge; the sweep that follows finds nothing to refund.
func TestSettledAtTheBoundIsNotSwept(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	g := gatedBackend{started: make(chan struct{}), gate: make(chan struct{})}
	f := newFixture(t, func(b inference.Backend) inference.Backend { g.Backend = b; return g }, 0)
	errc := make(chan error, 1)
	var out generate.ImagesResult
	go func() {
		var err error
		out, err = f.svc.GenerateImages(ctx, txt2img(f.user, 1, 2, "req-bound"))
		errc <- err
	}()
	<-g.started
	f.clock.Advance(holdFor) // the deadline is now; no sweeper ran yet
	close(g.gate)
	require.NoError(t, <-errc)
	require.Len(t, out.Outputs, 2)
	res, err := f.charger.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, res.Refunded)
	require.Len(t, f.imageIDs(t), 2)
	require.Equal(t, int64(98), f.balance(t))

	// Model routes settle the same way.
	_, err = f.svc.ExtendPrompt(ctx, generate.Caller{UserID: f.user, Charged: true, Key: "req-extend"}, "", "a frog")
	require.NoError(t, err)
	f.clock.Advance(2 * holdFor)
	res, err = f.charger.SweepHolds(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, res.Refunded)
}

// Mask mode ignores model_id (legacy §11): the SDXL id, which does not
// offer inpainting, still runs on the default model.
func TestMaskIgnoresModelID(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	const side = 96
	bits := make([]bool, side*side)
	for i := range bits {
		bits[i] = i%side < side/2
	}
	job := generate.ImageJob{UserID: f.user, Key: "req-mask", Mode: gpuroute.ModeMask, Op: inference.OpInpaint,
		ModelID: "alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef",
		Prompt:  "a frog", Samples: 1, Steps: 25, Seed: 5, Input: testPNG(t, side), Mask: generate.PackMask(bits)}
	res, err := f.svc.GenerateImages(context.Background(), job)
	require.NoError(t, err)
	require.Len(t, res.Outputs, 1)
}

// An async job's samples are uploaded by RenderImages but enter the
// library only in the transaction that completes the job: a job that ends
// in failure (Close without a commit) leaves neither rows nor objects.
func TestRenderImagesStoresNothingUntilTheJobCompletes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, nil, 0)
	st, err := f.svc.RenderImages(ctx, txt2img(f.user, 7, 2, ""))
	require.NoError(t, err)
	require.Empty(t, f.imageIDs(t), "rendered, not yet in the library")
	require.Equal(t, 4, countFiles(t, f.storage), "two images and two thumbnails uploaded")
	st.Close(ctx, false) // the job failed
	require.Empty(t, f.imageIDs(t))
	require.Zero(t, countFiles(t, f.storage), "a failed job leaves no object")

	st, err = f.svc.RenderImages(ctx, txt2img(f.user, 7, 2, ""))
	require.NoError(t, err)
	tx, err := f.pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, st.Insert(ctx, tx))
	require.NoError(t, tx.Commit(ctx))
	st.Close(ctx, true)
	require.Len(t, st.Outputs, 2)
	require.ElementsMatch(t, []int64{st.Outputs[0].ID, st.Outputs[1].ID}, f.imageIDs(t))
	require.Equal(t, 4, countFiles(t, f.storage))
	require.Equal(t, int64(100), f.balance(t), "RenderImages never charges")
}

// An async job (RenderImages) on a full host (slots busy, bounded queue
// full) waits for a slot instead of failing with 503: River handed it
// over in its fair turn, and a failure would retry it behind every other
// waiting job (issue 17). A synchronous request is still refused at once.
func TestRenderImagesWaitsForAFullHost(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil, 0)
	ctx := context.Background()
	var holds []func()
	for range 2 {
		r, err := f.capa.Acquire(ctx, capacity.Claim{})
		require.NoError(t, err)
		holds = append(holds, r)
	}
	qctx, cancelQueue := context.WithCancel(ctx)
	defer cancelQueue()
	for range 4 {
		go func() { _, _ = f.capa.Acquire(qctx, capacity.Claim{}) }()
	}
	require.Eventually(t, func() bool { return f.capa.Queued() == 4 }, 5*time.Second, time.Millisecond)
	_, err := f.svc.GenerateImages(ctx, txt2img(f.user, 3, 1, "req-full"))
	require.Equal(t, apperr.KindUnavailable, apperr.KindOf(err), "a synchronous request is refused at once")

	done := make(chan error, 1)
	go func() {
		st, err := f.svc.RenderImages(ctx, txt2img(f.user, 9, 1, ""))
		if err == nil {
			st.Close(ctx, false)
		}
		done <- err
	}()
	require.Eventually(t, func() bool { return f.capa.Queued() == 5 }, 5*time.Second, time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("the async render did not wait for a slot: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	cancelQueue()
	for _, r := range holds {
		r()
	}
	require.NoError(t, <-done)
}
