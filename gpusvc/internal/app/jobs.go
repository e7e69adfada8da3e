package app

import (
	"fmt"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/notify"
	"github.com/nounsai/sdserver/shared/storage"
)

// newJobRunner builds the durable-job workers on the default backend
// (audio, video projects) and the generation service (async images).
func (a *App) newJobRunner(backends map[string]inference.Backend, st storage.Store, gen *generate.Service, ledger *credits.Ledger) error {
	backend, ok := backends[a.cfg.Inference.Default]
	if !ok {
		return fmt.Errorf("jobs: backend %q is not configured", a.cfg.Inference.Default)
	}
	sender, err := email.New(a.cfg.Email)
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	r, err := worker.New(worker.Options{
		Pool:        a.srv.DB,
		Redis:       a.srv.Redis,
		RedisPrefix: a.cfg.RedisPrefix,
		Backend:     backend,
		Storage:     st,
		Ledger:      ledger,
		Generate:    gen,
		Email:       sender,
		Discord:     notify.NewDiscord(a.cfg.Worker.VideoWebhookURL, nil),
		FFmpeg:      media.FFmpeg{FFmpeg: a.cfg.Inference.FFmpegPath},
		Slots:       a.capacity,
		AppBaseURL:  a.cfg.AppBaseURL,
		Config:      a.cfg.Worker,
		Log:         a.log,
	})
	if err != nil {
		return fmt.Errorf("jobs: %w", err)
	}
	if !a.cfg.Worker.Enabled() {
		a.log.Info("job workers disabled (WORKER_CONCURRENCY=0)")
	}
	a.jobs = r
	return nil
}
