package worker_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/gpuroute"
	"github.com/nounsai/sdserver/shared/jobs"
)

// scriptedBackend is the built-in backend whose Generate follows a script,
// one step per call: "panic" (the worker dies mid-job, after the charge),
// "transient" (a 502 from the server), "permanent" (a 400), "ok" (render).
// Past the end of the script the last step repeats.
type scriptedBackend struct {
	inference.Backend
	script []string
	calls  atomic.Int32
}

func (b *scriptedBackend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	n := int(b.calls.Add(1)) - 1
	switch b.script[min(n, len(b.script)-1)] {
	case "panic":
		panic("gpu process died")
	case "transient":
		return inference.ImageResult{}, &inference.UpstreamError{Backend: "nouns", Status: 502, Message: "bad gateway"}
	case "permanent":
		return inference.ImageResult{}, &inference.UpstreamError{Backend: "nouns", Status: 400, Message: "model rejected the request"}
	}
	return b.Backend.Generate(ctx, req)
}

func newScripted(t *testing.T, script ...string) *scriptedBackend {
	t.Helper()
	nb, err := nouns.New(nouns.Options{})
	require.NoError(t, err)
	return &scriptedBackend{Backend: nb, script: script}
}

// imageJob is a validated two-sample Text to Image request.
func imageJob(t *testing.T, seed int64) generate.ImageJob {
	t.Helper()
	j := generate.ImageJob{Mode: gpuroute.ModeTxt2Img, Op: inference.OpTxt2Img, Prompt: "a frog", Samples: 2, Steps: 10,
		Seed: seed, AspectRatio: "128:128", Width: 128, Height: 128}
	require.NoError(t, j.Validate(generate.DefaultLimits))
	return j
}

func (e *env) debits(t *testing.T, userID int64) int {
	t.Helper()
	var n int
	require.NoError(t, e.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM transactions WHERE user_id = $1 AND type = 'debit'`, userID).Scan(&n))
	return n
}

// An async image job whose backend fails once with a transient error is
// retried and completes, charged exactly once.
func TestImageJobRetriesTransientFailureChargedOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newScripted(t, "transient", "ok")
	e := newEnv(t, b, jobs.Config{MaxAttempts: 3, RetryBase: 20 * time.Millisecond})
	u := e.user(t, 10)
	j, err := e.runner.EnqueueImage(ctx, u, imageJob(t, 11))
	require.NoError(t, err)
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.Get(ctx, j.ID) }, terminal)
	require.Equal(t, jobs.StateCompleted, j.State, j.Error)
	require.Equal(t, 2, j.Attempt)
	require.EqualValues(t, 2, b.calls.Load())
	require.Equal(t, 1, e.debits(t, u), "exactly one debit")
	require.Equal(t, int64(8), e.balance(t, u), "two images cost two credits")
	var images int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM images WHERE user_id = $1`, u).Scan(&images))
	require.Equal(t, 2, images)
}

// An async image job that dies after its charge (a crash: no refund ran)
// and then keeps failing ends ERROR with the backend's reason, after all
// its attempts, and the one debit is refunded.
func TestImageJobFailingPermanentlyEndsErrorRefunded(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := newScripted(t, "panic", "transient", "permanent")
	e := newEnv(t, b, jobs.Config{MaxAttempts: 4, RetryBase: 20 * time.Millisecond})
	u := e.user(t, 10)
	j, err := e.runner.EnqueueImage(ctx, u, imageJob(t, 12))
	require.NoError(t, err)
	j = waitJob(t, ctx, func() (jobs.Job, error) { return e.store.Get(ctx, j.ID) }, terminal)
	require.Equal(t, jobs.StateError, j.State)
	require.Contains(t, j.Error, "model rejected the request")
	require.Equal(t, 3, j.Attempt)
	require.Equal(t, 1, e.debits(t, u), "exactly one debit")
	e.requireBalance(t, u, 10) // refunded
	var images int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM images WHERE user_id = $1`, u).Scan(&images))
	require.Zero(t, images)
}

// Queueing an image job the user cannot pay for is a 402 up front, and
// queues nothing.
func TestEnqueueImageShortBalanceIs402(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	e := newEnv(t, nil, jobs.Config{})
	u := e.user(t, 1)
	_, err := e.runner.EnqueueImage(ctx, u, imageJob(t, 13))
	require.True(t, apperr.Is(err, apperr.KindInsufficientCredits), "got %v", err)
	var queued int
	require.NoError(t, e.pool.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE user_id = $1`, u).Scan(&queued))
	require.Zero(t, queued)
}
