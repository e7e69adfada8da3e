package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/config"
)

// TestAsyncImageGeneration covers POST /v1/images/generations: 202 with a
// job id at once, the images in the library once the worker is done, one
// charge; a bad request is refused before anything is queued.
func TestAsyncImageGeneration(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Worker = worker.LoadConfig(config.FromMap(map[string]string{"WORKER_CONCURRENCY": "1"}))
	s := start(t, cfg)
	id, tok := s.user(t, 10)

	bad := txt2img(1, 99)
	r := s.post(t, "/v1/images/generations", tok, bad)
	require.Equal(t, 400, r.status, string(r.body))
	var queued int
	require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT count(*) FROM jobs WHERE user_id = $1`, id).Scan(&queued))
	require.Zero(t, queued, "a refused request queued a job")

	r = s.post(t, "/v1/images/generations", "", txt2img(7, 2))
	require.Equal(t, 401, r.status, "async generation needs a token")

	r = s.post(t, "/v1/images/generations", tok, txt2img(7, 2))
	require.Equal(t, 202, r.status, string(r.body))
	jobID, _ := r.json(t)["job_id"].(string)
	require.NotEmpty(t, jobID)
	require.Equal(t, "/v1/jobs/"+jobID, r.header.Get("Location"))

	var state string
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		require.NoError(t, s.pool.QueryRow(context.Background(),
			`SELECT state FROM jobs WHERE public_id = $1 AND user_id = $2`, jobID, id).Scan(&state))
		if state == "COMPLETED" || state == "ERROR" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	require.Equal(t, "COMPLETED", state)
	var images int
	require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT count(*) FROM images WHERE user_id = $1`, id).Scan(&images))
	require.Equal(t, 2, images, "both samples land in the library")
	require.Equal(t, int64(8), s.balance(t, id), "two images cost two credits, charged once")
}
