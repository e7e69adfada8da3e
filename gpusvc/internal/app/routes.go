package app

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/httpapi"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/paced"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/replicate"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/rdb"
	"github.com/nounsai/sdserver/shared/storage"
)

// backends builds every backend this host can run: the built-in nouns one
// always, a1111 when A1111_URL is set, replicate when a token or URL is.
func (a *App) backends() (map[string]inference.Backend, error) {
	ic := a.cfg.Inference
	nb, err := nouns.New(nouns.Options{FFmpegPath: ic.FFmpegPath})
	if err != nil {
		return nil, err
	}
	out := map[string]inference.Backend{nouns.Name: nb}
	if ic.A1111URL != "" {
		out[a1111.Name] = a1111.New(a1111.Config{BaseURL: ic.A1111URL, Timeout: ic.A1111Timeout, Log: a.log})
	}
	if ic.ReplicateToken != "" || ic.ReplicateURL != "" {
		out[replicate.Name] = replicate.New(replicate.Config{BaseURL: ic.ReplicateURL, Token: ic.ReplicateToken, Log: a.log})
	}
	if p := a.cfg.GPU.Pacing; p.BaseSeconds > 0 {
		// The paced fake backend (benchmarks, fault drills): each keeps
		// its name, so models and metrics are unchanged.
		p.ImageUnits, p.RouteUnits = generate.WorkUnits, generate.RouteUnits
		for name, b := range out {
			out[name] = paced.New(b, p)
		}
		a.log.Warn("GPU pacing is ON: the paced fake backend wraps every backend (GPU_BASE_SECONDS)",
			zap.Float64("base_seconds", p.BaseSeconds), zap.Float64("speed", p.Speed), zap.Float64("slowdown", p.Slowdown))
	}
	return out, nil
}

// routes builds the pipeline and registers every route.
func (a *App) routes() error {
	backends, err := a.backends()
	if err != nil {
		return err
	}
	defModels := map[string]string{a.cfg.Inference.Default: a.cfg.Inference.DefaultModel}
	registry, err := models.NewRegistry(models.NewStore(a.srv.DB), backends, a.cfg.Inference.Default, defModels)
	if err != nil {
		return err
	}
	store, err := storage.New(a.cfg.Storage)
	if err != nil {
		return err
	}
	// The slot queue is fair across users unless JOB_FAIRNESS=fifo: the
	// host queues sync requests and async jobs together.
	a.capacity = capacity.New(capacity.Options{Slots: a.cfg.GPU.Slots, Queue: a.cfg.GPU.Queue, MaxWait: a.cfg.GPU.QueueWait,
		Fair: a.cfg.Worker.Jobs.Fairness != jobs.FairnessFIFO})
	// One ledger charges both the synchronous routes and the jobs.
	ledger := credits.NewLedger(a.srv.DB, a.cfg.Credits.Options(nil))
	a.ledger = ledger
	holdOwner := a.cfg.PublicURL
	if holdOwner == "" {
		holdOwner = a.cfg.HTTPAddr
	}
	gen := generate.New(generate.Options{
		Registry:  registry,
		Capacity:  a.capacity,
		Charger:   ledger,
		Images:    library.NewImages(a.srv.DB, store, a.log),
		Parents:   generate.NewParents(a.srv.DB),
		Limits:    a.cfg.Limits,
		Timeout:   a.cfg.GPU.JobTimeout,
		HoldFor:   a.cfg.HoldFor(),
		HoldOwner: holdOwner,
		Metrics:   generate.NewMetrics(a.srv.Registry, a.capacity),
		Log:       a.log,
	})
	if err := a.newJobRunner(backends, store, gen, ledger); err != nil {
		return err
	}
	revocations := auth.NewRevocations(a.srv.DB, a.srv.Redis, a.cfg.RedisPrefix, a.cfg.LegacyTokenCutoff)
	// Every Redis use fails open (docs/operations.md, "Failure modes"),
	// counted in redis_fail_open_total and logged at most every 10 s.
	failOpen := rdb.NewFailOpen(a.srv.Registry, a.log)
	revocations.OnError = failOpen.Func("deny_list")
	limiter := ratelimit.New(a.srv.Redis, a.cfg.RedisPrefix+"ratelimit:", ratelimit.Options{
		Disabled: !a.cfg.RateLimits,
		OnError:  failOpen.Func("ratelimit"),
	})
	if !a.cfg.RateLimits {
		a.log.Warn("rate limits are OFF (RATE_LIMITS=off)")
	}
	httpapi.Register(a.srv.Echo, httpapi.Options{
		Generate:         gen,
		Registry:         registry,
		Capacity:         a.capacity,
		Verifier:         &auth.Verifier{Secrets: a.cfg.JWTSecrets, Revocation: revocations},
		Limiter:          limiter,
		ChallengeTokens:  a.cfg.ChallengeTokens,
		AnonymousUserID:  a.cfg.AnonymousUserID,
		AnonymousEnabled: a.cfg.AnonymousEnabled,
		TrustedProxies:   a.cfg.TrustedProxies,
		Ping:             a.ping,
		RedisStatus:      a.redisStatus,
		Jobs:             a.jobs,
		Log:              a.log,
	})
	a.log.Info("inference ready",
		zap.String("default_backend", a.cfg.Inference.Default),
		zap.Strings("backends", registry.Backends()),
		zap.Int("slots", a.cfg.GPU.Slots),
		zap.Int("queue", a.cfg.GPU.Queue))
	return nil
}

// ping checks the database, the one dependency /health requires. Redis is
// not one: without it every use fails open (docs/operations.md, "Failure
// modes"), so the proxy must not eject this host for it; redisStatus
// reports it in the body.
func (a *App) ping(ctx context.Context) error {
	if err := a.srv.DB.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

// redisStatus is rdb.Status of this host's Redis, for /health.
func (a *App) redisStatus(ctx context.Context) string { return rdb.Status(ctx, a.srv.Redis) }
