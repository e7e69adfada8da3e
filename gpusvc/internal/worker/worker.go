// Package worker runs the durable jobs inside gpusvc: River workers for
// async image generation, audio jobs and video project renders (replacing
// the legacy cron + flock scripts, docs/legacy-contract.md §7, §8), plus the sweep
// that retries jobs whose worker died and adopts QUEUED legacy rows that
// have no job.
//
// Every step is idempotent, because River runs a job at least once: the
// charge is a debit keyed by the job, audio and video results go to the
// object key fixed by the row's cdn_id, images are deduplicated by hash,
// and the final state change happens once (jobs.Store.Finish).
//
// This package must never serve HTTP routes other than through the
// handlers it hands to the app, and never write the jobs table except
// through shared/jobs.
package worker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/notify"
	"github.com/nounsai/sdserver/shared/storage"
)

// Options are the dependencies of a Runner. All are required except
// Generate (async images are refused without it), Email (no emails),
// Discord (no webhook) and Now.
type Options struct {
	Pool        *pgxpool.Pool
	Redis       redis.UniversalClient
	RedisPrefix string
	Backend     inference.Backend
	Storage     storage.Store
	Ledger      *credits.Ledger
	Generate    *generate.Service
	Email       email.Sender
	Discord     *notify.Discord
	FFmpeg      media.FFmpeg
	// Slots, when set, is the host's GPU slot limiter: every backend call
	// of a job holds a slot, so jobs and synchronous requests share the
	// GPU and /health reports both to the balancer.
	Slots Slots
	// AppBaseURL is linked from the failure email.
	AppBaseURL string
	Config     Config
	Now        func() time.Time
	Log        *zap.Logger
}

// Slots hands out the host's GPU slots; *capacity.Limiter implements it.
type Slots interface {
	// AcquireWait waits for a slot until ctx ends, never refusing; c
	// places the wait in the host's queue, fair across users.
	AcquireWait(ctx context.Context, c capacity.Claim) (release func(), err error)
}

// onGPU runs fn holding a GPU slot (when the runner has a limiter), claimed
// for the job's user with work units. The job waits for the slot, however
// busy the host is: River handed it over in its fair turn (shared/jobs
// fair.go), and failing here would retry it behind every other waiting
// job.
func (x *run) onGPU(ctx context.Context, work float64, fn func() error) error {
	if x.r.opts.Slots == nil {
		return fn()
	}
	release, err := x.r.opts.Slots.AcquireWait(ctx, capacity.Claim{User: strconv.FormatInt(x.job.UserID, 10), Work: work})
	if err != nil {
		return fmt.Errorf("wait for a GPU slot: %w", err)
	}
	defer release()
	return fn()
}

// Runner owns the River client that works the job queue on this host.
type Runner struct {
	opts   Options
	cfg    Config
	store  *jobs.Store
	river  *river.Client[pgx.Tx]
	reg    *jobs.Registry
	id     string
	log    *zap.Logger
	now    func() time.Time
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New builds the runner and its River client (not started).
func New(o Options) (*Runner, error) {
	cfg := o.Config.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Discord == nil {
		o.Discord = notify.NewDiscord("", nil)
	}
	r := &Runner{opts: o, cfg: cfg, log: o.Log.Named("worker"), now: o.Now,
		reg: jobs.NewRegistry(o.Redis, o.RedisPrefix), id: randomID()}

	workers := river.NewWorkers()
	river.AddWorker(workers, &imageWorker{r: r})
	river.AddWorker(workers, &audioWorker{r: r})
	river.AddWorker(workers, &videoWorker{r: r})
	rc := &river.Config{
		ID:                   "gpusvc-" + r.id,
		Workers:              workers,
		MaxAttempts:          cfg.Jobs.MaxAttempts,
		JobTimeout:           cfg.Jobs.TimeoutBase,
		RescueStuckJobsAfter: cfg.RescueAfter,
		RetryPolicy:          &backoff{base: cfg.Jobs.RetryBase, max: cfg.Jobs.RetryMax},
		// Finished jobs stay visible in river_job as long as the jobs rows
		// need them for the sweep's cross-check.
		CompletedJobRetentionPeriod: 24 * time.Hour,
		Logger:                      slog.New(&zapHandler{log: r.log.Named("river")}),
	}
	if cfg.Concurrency > 0 {
		rc.Queues = map[string]river.QueueConfig{jobs.Queue: {MaxWorkers: cfg.Concurrency}}
	}
	client, err := river.NewClient(riverpgxv5.New(o.Pool), rc)
	if err != nil {
		return nil, fmt.Errorf("create river client: %w", err)
	}
	r.river = client
	r.store = jobs.NewStore(jobs.Options{Pool: o.Pool, River: client, Events: jobs.NewEvents(o.Redis, o.RedisPrefix),
		Ledger: o.Ledger, Registry: r.reg, Config: cfg.Jobs, Now: o.Now, Log: o.Log})
	return r, nil
}

// Store returns the jobs store (for the async image handler).
func (r *Runner) Store() *jobs.Store { return r.store }

// River returns the River client.
func (r *Runner) River() *river.Client[pgx.Tx] { return r.river }

// Start starts working the queue (when Concurrency > 0), the sweep and the
// capability announcements. It returns at once; Stop ends everything.
func (r *Runner) Start(ctx context.Context) error {
	if r.cfg.Concurrency == 0 {
		return nil
	}
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.announce(ctx)
	if err := r.river.Start(ctx); err != nil {
		r.cancel()
		return fmt.Errorf("start river: %w", err)
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.loop(ctx)
	}()
	r.log.Info("workers started", zap.Int("concurrency", r.cfg.Concurrency), zap.String("worker_id", r.id),
		zap.String("backend", r.opts.Backend.Name()))
	return nil
}

// Stop stops taking jobs and waits for running ones (soft stop) until ctx
// ends, then cancels them; they are retried elsewhere.
func (r *Runner) Stop(ctx context.Context) error {
	if r.cancel == nil {
		return nil
	}
	err := r.river.Stop(ctx)
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		err = r.river.StopAndCancel(cctx)
		cancel()
	}
	r.cancel()
	r.wg.Wait()
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	_ = r.reg.Withdraw(wctx, r.id)
	return err
}

// loop runs the periodic sweep and announcements until ctx ends.
func (r *Runner) loop(ctx context.Context) {
	r.sweep(ctx)
	clock.Every(ctx, r.cfg.SweepInterval, func(ctx context.Context) {
		r.announce(ctx)
		r.sweep(ctx)
	})
}

// announce records this host's audio operations in the registry, so that
// the API refuses operations no live worker supports.
func (r *Runner) announce(ctx context.Context) {
	var ops []string
	for _, op := range []inference.Op{inference.OpTextToAudio, inference.OpAudioMelody, inference.OpAudioExtend,
		inference.OpAudioSplit, inference.OpInterpolate} {
		if r.opts.Backend.Supports(op) {
			ops = append(ops, string(op))
		}
	}
	if err := r.reg.Announce(ctx, r.id, ops, 3*r.cfg.SweepInterval+5*time.Second); err != nil && ctx.Err() == nil {
		r.log.Warn("announce worker failed", zap.Error(err))
	}
}

// sweep retries or fails jobs of dead workers and adopts orphaned rows.
func (r *Runner) sweep(ctx context.Context) {
	res, err := r.store.RescueStale(ctx)
	if err != nil && ctx.Err() == nil {
		r.log.Warn("stale job sweep failed", zap.Error(err))
	}
	for _, j := range res.Failed {
		r.notifyFinished(ctx, j)
	}
	if n, err := r.store.AdoptOrphans(ctx); err != nil && ctx.Err() == nil {
		r.log.Warn("adopting queued rows failed", zap.Error(err))
	} else if n > 0 {
		r.log.Info("adopted queued rows without a job", zap.Int("rows", n))
	}
}

// backoff is the retry policy: base·2^(attempt-1), at most max.
type backoff struct{ base, max time.Duration }

// NextRetry implements river.ClientRetryPolicy.
func (b *backoff) NextRetry(job *rivertype.JobRow) time.Time {
	d := float64(b.base) * math.Pow(2, float64(max(job.Attempt-1, 0)))
	return time.Now().Add(time.Duration(min(d, float64(b.max))))
}

// run is one execution of a job.
type run struct {
	job jobs.Job
	row *rivertype.JobRow
	r   *Runner
	// cleanup, when set by the work, runs after the job's final
	// transaction has ended (or was never attempted).
	cleanup func(ctx context.Context)
}

// progress records progress; it returns jobs.ErrCanceled when the job
// must stop.
func (x *run) progress(ctx context.Context, p float64, stage string) error {
	return x.r.store.Progress(ctx, x.job.ID, p, stage)
}

// charge debits the job's cost once (keyed by the job), before the work.
func (x *run) charge(ctx context.Context, op string, units int) error {
	cost, err := x.r.store.SetCost(ctx, x.job.ID, x.r.opts.Ledger.Pricing().Cost(op, units))
	if err != nil {
		return err
	}
	x.job.Cost = cost
	if cost == 0 {
		return nil
	}
	if _, err := x.r.opts.Ledger.Debit(ctx, credits.DebitInput{UserID: x.job.UserID, Amount: cost,
		IdempotencyKey: x.job.DebitKey, Reason: op}); err != nil {
		return err
	}
	return x.r.store.MarkCharged(ctx, x.job.ID)
}

// workFunc does a job's work and returns how it ended; legacy runs in the
// final transaction (see jobs.Store.Finish).
type workFunc func(ctx context.Context, x *run) (jobs.Outcome, func(ctx context.Context, tx pgx.Tx, j jobs.Job) error, error)

// execute is the common life of every job: claim, heartbeat, work, then
// finish, retry or fail.
func (r *Runner) execute(ctx context.Context, row *rivertype.JobRow, args jobs.Args, work workFunc) error {
	log := r.log.With(zap.Int64("job_id", args.JobID), zap.Int("attempt", row.Attempt))
	j, res, err := r.store.Claim(ctx, args.JobID, row.Attempt)
	if err != nil {
		if apperr.Is(err, apperr.KindNotFound) {
			return river.JobCancel(err) // the row is gone (user deleted)
		}
		return err
	}
	switch res {
	case jobs.ClaimBusy:
		return river.JobSnooze(3 * time.Second)
	case jobs.ClaimDone, jobs.ClaimCanceled:
		if j.NotifiedAt == nil {
			r.notifyFinished(ctx, j)
		}
		return nil
	}

	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	hbDone := make(chan struct{})
	go func() {
		defer close(hbDone)
		// A cancelled job ends wctx, which ends the loop.
		clock.Every(wctx, max(r.cfg.Jobs.HeartbeatTimeout/4, 100*time.Millisecond), func(ctx context.Context) {
			if err := r.store.Heartbeat(ctx, j.ID); errors.Is(err, jobs.ErrCanceled) {
				cancel(jobs.ErrCanceled)
			}
		})
	}()
	x := &run{job: j, row: row, r: r}
	defer func() {
		if x.cleanup != nil {
			x.cleanup(context.WithoutCancel(ctx))
		}
	}()
	out, legacy, werr := work(wctx, x)
	cancel(nil)
	<-hbDone

	if werr == nil {
		fj, finished, err := r.store.Finish(ctx, j.ID, out, legacy)
		if err != nil {
			log.Warn("recording the job's result failed; will retry", zap.Error(err))
			return err
		}
		if finished {
			r.notifyFinished(ctx, fj)
		}
		return nil
	}

	// A cancel requested by the user wins over whatever error the stop
	// caused.
	if cur, err := r.store.Get(context.WithoutCancel(ctx), j.ID); err == nil && (cur.CancelRequested || cur.State == jobs.StateCanceled) {
		if _, _, err := r.store.Finish(context.WithoutCancel(ctx), j.ID, jobs.Outcome{State: jobs.StateCanceled, Error: "canceled"}, nil); err != nil {
			return err
		}
		log.Info("job canceled while running")
		return nil
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The client is shutting down: put the job back without using an
		// attempt; another host (or this one after a restart) resumes it.
		return river.JobSnooze(0)
	}
	reason, permanent := classify(werr)
	if errors.Is(werr, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		reason, permanent = "the job timed out", false
	}
	if !permanent && row.Attempt < row.MaxAttempts {
		log.Warn("job attempt failed; will retry", zap.String("reason", reason), zap.Error(werr))
		_ = r.store.Progress(context.WithoutCancel(ctx), j.ID, x.job.Progress, "retrying")
		return werr
	}
	log.Warn("job failed", zap.String("reason", reason), zap.Bool("permanent", permanent), zap.Error(werr))
	fj, finished, err := r.store.Finish(context.WithoutCancel(ctx), j.ID, jobs.Outcome{State: jobs.StateError, Error: reason}, nil)
	if err != nil {
		return err
	}
	if finished {
		fj.Error = reason
		r.notifyFailureDetail(context.WithoutCancel(ctx), fj, werr)
	}
	return river.JobCancel(werr)
}

// classify turns a work error into the reason shown to the owner and
// whether retrying can help.
func classify(err error) (string, bool) {
	var ue *inference.UnsupportedError
	if errors.As(err, &ue) {
		return string(ue.Op) + " is not supported by this backend (" + ue.Backend + ")", true
	}
	var up *inference.UpstreamError
	if errors.As(err, &up) {
		perm := up.Status >= 400 && up.Status < 500 && up.Status != 408 && up.Status != 429
		return "the inference backend failed: " + up.Message, perm
	}
	if ae, ok := apperr.As(err); ok {
		switch ae.Kind {
		case apperr.KindInvalid, apperr.KindNotFound, apperr.KindForbidden, apperr.KindUnsupported,
			apperr.KindInsufficientCredits, apperr.KindTooLarge, apperr.KindConflict:
			return ae.Message, true
		case apperr.KindInternal:
			return "internal error", false
		}
		return ae.Message, false
	}
	return "internal error", false
}

// permanentf is a permanent failure with a reason for the owner.
func permanentf(format string, args ...any) error {
	return apperr.Invalid(fmt.Sprintf(format, args...))
}

func randomID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// zapHandler forwards River's slog records at warn level and above to zap.
type zapHandler struct {
	log   *zap.Logger
	attrs []zap.Field
}

func (h *zapHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h *zapHandler) Handle(_ context.Context, rec slog.Record) error {
	fields := append([]zap.Field(nil), h.attrs...)
	rec.Attrs(func(a slog.Attr) bool {
		fields = append(fields, zap.Any(a.Key, a.Value.Any()))
		return true
	})
	if rec.Level >= slog.LevelError {
		h.log.Error("river error", append(fields, zap.String("river_message", rec.Message))...)
	} else {
		h.log.Warn("river warning", append(fields, zap.String("river_message", rec.Message))...)
	}
	return nil
}

func (h *zapHandler) WithAttrs(as []slog.Attr) slog.Handler {
	n := &zapHandler{log: h.log, attrs: append([]zap.Field(nil), h.attrs...)}
	for _, a := range as {
		n.attrs = append(n.attrs, zap.Any(a.Key, a.Value.Any()))
	}
	return n
}

func (h *zapHandler) WithGroup(string) slog.Handler { return h }
