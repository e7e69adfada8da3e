// Package generate is gpusvc's image pipeline: for POST /images it resolves
// the model, checks the operation is offered (501 otherwise), decodes and
// bounds the inputs, takes a place in this host's capacity (slots + bounded
// queue; a full host refuses before anything is charged), charges the
// credits, runs the backend in its slot, and stores every sample (PNG,
// thumbnail, SHA-256, per-user dedup; objects first, then the rows). A
// request is all or nothing, even when its process dies (issue 14):
//
//   - the charge is a hold on the credits (credits.DebitInput.HoldFor),
//     bound to the request by its debit row, with a deadline of
//     Options.HoldFor;
//   - the samples' rows are inserted in one transaction together with the
//     settlement of the hold (credits.Ledger.Settle), so the images appear
//     exactly when the charge becomes final;
//   - any failure before that releases the hold (deferred, so a panicking
//     backend releases too);
//   - a request whose process died before either is refunded by the
//     sweeper (credits.Ledger.SweepHolds) once the deadline has passed; a
//     request that finishes after the sweeper refunded it fails with 504
//     and stores nothing (its objects are deleted).
//
// Async jobs (RenderImages) are charged by the job system instead; their
// rows are inserted in the job's final transaction, so that a job that
// ends in failure (and is refunded) leaves no image in the library.
//
// It also runs the model routes (/extend_prompt, /interrogate, /upscale,
// /mask) within the same capacity, with the same hold: settled when the
// answer is ready, released on failure.
//
// Errors leave this package already mapped to apperr kinds: unsupported
// operation 501, upstream failure 502, busy host 503 with Retry-After,
// job deadline 504.
//
// This package must never read HTTP requests or write responses, and never
// log prompts or image bytes.
package generate

import (
	"context"
	"errors"
	"fmt"
	"image"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
)

// Charger charges credits as a hold and settles or releases it;
// *credits.Ledger implements it.
type Charger interface {
	Charge(ctx context.Context, in credits.ChargeInput) (credits.Debit, error)
	// Settle makes the hold final, in q (the transaction that stores the
	// result) or, when q is nil, on its own.
	Settle(ctx context.Context, q db.Querier, debitID int64) error
	// Release refunds a hold that was not settled.
	Release(ctx context.Context, debitID int64) (credits.Refund, error)
}

// ImageCreator stores generated images (objects, then rows, with per-user
// dedup); *library.Images implements it.
type ImageCreator interface {
	// CreateAll stores the images and runs within in the transaction
	// that inserts their rows.
	CreateAll(ctx context.Context, ns []library.NewImage, within func(ctx context.Context, tx pgx.Tx) error) ([]library.Image, []bool, error)
	// Stage uploads the images' objects; the rows are inserted later in
	// the caller's transaction.
	Stage(ctx context.Context, ns []library.NewImage) (*library.Batch, error)
}

// Options configure a Service. Every field but Log is required.
type Options struct {
	Registry *models.Registry
	Capacity *capacity.Limiter
	Charger  Charger
	Images   ImageCreator
	Parents  *Parents
	Limits   Limits
	// Timeout bounds one job's inference (0 means 5 minutes); the wait
	// for a slot is bounded by the capacity's MaxWait.
	Timeout time.Duration
	// HoldFor is the deadline of a request's charge hold, after which the
	// sweeper refunds it (0 means Timeout + 5 minutes). It must exceed
	// the longest a request can run: the wait for a slot, Timeout and
	// the storage of the samples.
	HoldFor time.Duration
	// HoldOwner names this host in the holds it makes (its public URL).
	HoldOwner string
	Metrics   *Metrics
	Log       *zap.Logger
}

// Service runs generation jobs. It is safe for concurrent use.
type Service struct {
	opts Options
	log  *zap.Logger
}

// New returns a Service.
func New(opts Options) *Service {
	opts.Timeout = config.OrDefault(opts.Timeout, 5*time.Minute)
	opts.HoldFor = config.OrDefault(opts.HoldFor, opts.Timeout+5*time.Minute)
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil, opts.Capacity)
	}
	return &Service{opts: opts, log: opts.Log.Named("generate")}
}

// Limits returns the request limits.
func (s *Service) Limits() Limits { return s.opts.Limits }

// Output is one stored sample.
type Output struct {
	// ID and CDNID name the images row (an older row when deduplicated).
	ID    int64
	CDNID string
	// PNG is the stored object's bytes; Hash their SHA-256.
	PNG  []byte
	Hash string
	// Image is the decoded sample.
	Image image.Image
	// Created is false when the user already had this image.
	Created bool
}

// ImagesResult is what GenerateImages produced, samples in order.
type ImagesResult struct {
	Outputs []Output
	// Charged is the credits debited (0 when free or prepaid).
	Charged int64
}

// ChargeOp maps an operation to its price in the credits table (the op
// of credits.Pricing.Cost); async jobs charge with it.
func ChargeOp(op inference.Op) string {
	switch op {
	case inference.OpTxt2Img:
		return credits.OpTxt2Img
	case inference.OpImg2Img, inference.OpPix2Pix:
		return credits.OpImg2Img
	case inference.OpInpaint:
		return credits.OpInpaint
	case inference.OpControlNetOutlines, inference.OpControlNetDepth, inference.OpControlNetSegment:
		return credits.OpControlNet
	case inference.OpUpscale:
		return credits.OpUpscale
	case inference.OpInterrogate:
		return credits.OpInterrogate
	case inference.OpExtendPrompt:
		return credits.OpExtendPrompt
	case inference.OpSegment:
		return credits.OpMask
	}
	return string(op)
}

// GenerateImages runs one POST /images job end to end (see the package
// comment): charge (a hold), render, then store every sample and settle
// the hold in one transaction. The result lists the samples in order.
func (s *Service) GenerateImages(ctx context.Context, job ImageJob) (ImagesResult, error) {
	p, err := s.prepare(ctx, &job)
	if err != nil {
		return ImagesResult{}, err
	}
	// The place in this host's capacity comes before the charge: a host
	// too full to take the request refuses it having changed nothing, so
	// the proxy may send it, X-Request-ID and all, to another host.
	ticket, err := s.reserve(ctx, userClaim(job.UserID, WorkUnits(job.Op, p.req)))
	if err != nil {
		return ImagesResult{}, err
	}
	defer ticket.Cancel() // a no-op once the render waited for the slot
	debit, err := s.charge(ctx, job.UserID, job.Anonymous, job.Op, job.Samples, job.Key)
	if err != nil {
		return ImagesResult{}, err
	}
	settled := false
	defer func() {
		// Deferred, so that a panic below releases the hold too.
		if !settled {
			s.release(ctx, debit)
		}
	}()
	samples, err := s.render(ctx, job, p, ticket.Wait)
	if err != nil {
		return ImagesResult{}, err
	}
	news := make([]library.NewImage, len(samples))
	for i, smp := range samples {
		news[i] = smp.new
	}
	ims, created, err := s.opts.Images.CreateAll(ctx, news, func(ctx context.Context, tx pgx.Tx) error {
		return s.opts.Charger.Settle(ctx, tx, debit.ID)
	})
	if errors.Is(err, credits.ErrHoldReleased) {
		// The sweeper refunded this request before it finished: nothing
		// was stored, and there is nothing left to release.
		settled = true
		s.opts.Metrics.holdsLost.Inc()
		return ImagesResult{}, err
	}
	if err != nil {
		return ImagesResult{}, fmt.Errorf("store samples: %w", err)
	}
	settled = true
	return ImagesResult{Outputs: outputs(samples, ims, created), Charged: debit.Amount}, nil
}

// Staged is an async job's samples, rendered and uploaded but not yet in
// the library: Insert adds their rows in the job's final transaction, and
// Close must follow once that transaction has ended.
type Staged struct {
	samples []sample
	batch   *library.Batch
	// Outputs are the stored samples, in order; set by Insert.
	Outputs []Output
}

// Insert inserts the samples' rows in tx (the transaction that completes
// the job) and fills Outputs.
func (st *Staged) Insert(ctx context.Context, tx pgx.Tx) error {
	ims, created, err := st.batch.Insert(ctx, tx)
	if err != nil {
		return fmt.Errorf("store samples: %w", err)
	}
	st.Outputs = outputs(st.samples, ims, created)
	return nil
}

// Close ends the staging after Insert's transaction has ended (committed
// reports whether it committed): objects without a committed row are
// deleted.
func (st *Staged) Close(ctx context.Context, committed bool) { st.batch.Close(ctx, committed) }

// RenderImages runs an async job's generation without charging (the job
// system charged it) and uploads the samples' objects; the rows are
// inserted by Staged.Insert in the job's final transaction, so that a job
// that fails after rendering leaves nothing in the library.
func (s *Service) RenderImages(ctx context.Context, job ImageJob) (*Staged, error) {
	p, err := s.prepare(ctx, &job)
	if err != nil {
		return nil, err
	}
	// River handed this job to this host in its fair turn (shared/jobs):
	// it waits for a slot rather than failing and losing that turn.
	claim := userClaim(job.UserID, WorkUnits(job.Op, p.req))
	samples, err := s.render(ctx, job, p, func(ctx context.Context) (func(), error) {
		return s.opts.Capacity.AcquireWait(ctx, claim)
	})
	if err != nil {
		return nil, err
	}
	news := make([]library.NewImage, len(samples))
	for i, smp := range samples {
		news[i] = smp.new
	}
	b, err := s.opts.Images.Stage(ctx, news)
	if err != nil {
		return nil, fmt.Errorf("upload samples: %w", err)
	}
	return &Staged{samples: samples, batch: b}, nil
}

// prepared is a validated job's route, backend request and parent.
type prepared struct {
	route    models.Route
	req      inference.ImageRequest
	parentID int64
}

// prepare validates the job, resolves its model, decodes its inputs and
// resolves its parent image.
func (s *Service) prepare(ctx context.Context, job *ImageJob) (prepared, error) {
	if err := job.Validate(s.opts.Limits); err != nil {
		return prepared{}, err
	}
	route, err := s.opts.Registry.Resolve(ctx, job.ModelID)
	if err != nil {
		return prepared{}, err
	}
	if err := route.Check(job.Op); err != nil {
		return prepared{}, err
	}
	req := inference.ImageRequest{
		Op: job.Op, Model: route.BackendModel, Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
		Samples: job.Samples, Steps: job.Steps, Seed: job.Seed, Strength: job.Strength,
	}
	var inputHash string
	if job.Op == inference.OpTxt2Img {
		req.Width, req.Height = job.Width, job.Height
	} else {
		// Only the headers here; the pixels are decoded in the slot.
		if err := s.checkInputs(*job); err != nil {
			return prepared{}, err
		}
		inputHash = media.Hash(job.Input)
	}
	parentID, err := s.opts.Parents.Resolve(ctx, job.UserID, job.ParentID, inputHash)
	if err != nil {
		return prepared{}, err
	}
	return prepared{route: route, req: req, parentID: parentID}, nil
}

// sample is one rendered and encoded sample, ready to store.
type sample struct {
	new  library.NewImage
	img  image.Image
	data []byte
	hash string
}

// render runs the backend in the capacity slot that acquire gets and
// encodes every sample.
func (s *Service) render(ctx context.Context, job ImageJob, p prepared, acquire func(context.Context) (func(), error)) ([]sample, error) {
	var res inference.ImageResult
	backend := p.route.Backend.Name()
	err := s.runIn(ctx, acquire, job.Op, backend, func(ctx context.Context) error {
		req := p.req
		if job.Op != inference.OpTxt2Img {
			var err error
			if req.Init, req.Mask, err = s.decodeInputs(job); err != nil {
				return err
			}
		}
		var err error
		res, err = p.route.Backend.Generate(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(res.Images) == 0 {
		return nil, apperr.BadGateway(fmt.Sprintf("The %s backend returned no image", backend))
	}
	if len(res.Images) > job.Samples {
		res.Images = res.Images[:job.Samples]
	}
	out := make([]sample, 0, len(res.Images))
	for i, img := range res.Images {
		if img == nil || img.Bounds().Empty() {
			return nil, apperr.BadGateway(fmt.Sprintf("The %s backend returned an empty image", backend))
		}
		data, err := media.EncodePNG(img)
		if err != nil {
			return nil, err
		}
		thumb, err := media.ThumbnailPNG(img)
		if err != nil {
			return nil, err
		}
		hash := media.Hash(data)
		parentID := p.parentID
		out = append(out, sample{img: img, data: data, hash: hash, new: library.NewImage{
			UserID: job.UserID, Data: data, Thumbnail: thumb, Decoded: img, Hash: hash,
			Metadata: imageMetadata(job, p.route, res.Info, i, len(res.Images)), ParentID: &parentID,
		}})
	}
	return out, nil
}

// outputs pairs the samples with their stored rows.
func outputs(samples []sample, ims []library.Image, created []bool) []Output {
	outs := make([]Output, len(samples))
	for i, smp := range samples {
		outs[i] = Output{ID: ims[i].ID, CDNID: ims[i].CDNID, PNG: smp.data, Hash: smp.hash, Image: smp.img, Created: created[i]}
	}
	return outs
}

// charge debits the price of units of op, idempotently per key. A replayed
// key means this request was already charged once (a retried request ID):
// it is refused rather than run for free or charged twice.
func (s *Service) charge(ctx context.Context, userID int64, anonymous bool, op inference.Op, units int, key string) (credits.Debit, error) {
	if key != "" {
		key = string(op) + ":" + key
	}
	d, err := s.opts.Charger.Charge(ctx, credits.ChargeInput{
		UserID: userID, Anonymous: anonymous, Op: ChargeOp(op), Units: units, IdempotencyKey: key,
		HoldFor: s.opts.HoldFor, HoldOwner: s.opts.HoldOwner,
	})
	if err != nil {
		return credits.Debit{}, err
	}
	if d.Replayed {
		return credits.Debit{}, apperr.Conflict("This request was already processed (X-Request-ID reused)")
	}
	return d, nil
}

// Refund retries: refundAttempts tries, waiting refundBackoff, then twice
// that, and so on, all within refundTimeout.
const (
	refundAttempts = 4
	refundBackoff  = 100 * time.Millisecond
	refundTimeout  = 15 * time.Second
)

// release gives a failed request's held credits back (a zero or free
// debit is a no-op). It runs even when ctx was cancelled (the client
// left), retrying transient failures a few times; a release that still
// fails is logged at error level, since the request's own error is what
// the client must see, and the sweeper refunds the hold at its deadline.
func (s *Service) release(ctx context.Context, d credits.Debit) {
	if d.Free || d.ID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundTimeout)
	defer cancel()
	wait := refundBackoff
	attempt := 1
	for {
		_, err := s.opts.Charger.Release(ctx, d.ID)
		if err == nil {
			s.opts.Metrics.refunds.Inc()
			return
		}
		// NotFound, Conflict (nothing to give back) and Invalid never heal.
		permanent := apperr.Is(err, apperr.KindNotFound) || apperr.Is(err, apperr.KindConflict) || apperr.Is(err, apperr.KindInvalid)
		if !permanent && attempt < refundAttempts && clock.Sleep(ctx, wait) == nil {
			attempt++
			wait *= 2
			continue
		}
		s.log.Error("release of the charge failed; the sweeper refunds it at its deadline", zap.Int64("debit_id", d.ID), zap.Int64("user_id", d.UserID),
			zap.Int64("credits", d.Amount), zap.Int("attempts", attempt), zap.Error(err))
		return
	}
}

// userClaim is the capacity claim of work units for userID: the host's
// queue is fair across users (the anonymous account is one user).
func userClaim(userID int64, units float64) capacity.Claim {
	return capacity.Claim{User: strconv.FormatInt(userID, 10), Work: units}
}

// reserve takes a slot or a queue place for c without waiting (see
// capacity.Limiter.Reserve); a full host refuses at once with 503 and
// Retry-After, so the proxy can try another.
func (s *Service) reserve(ctx context.Context, c capacity.Claim) (*capacity.Ticket, error) {
	t, err := s.opts.Capacity.Reserve(ctx, c)
	if err != nil {
		return nil, s.capacityError(err)
	}
	return t, nil
}

// capacityError maps the capacity package's refusals to 503 with
// Retry-After, counting them; other errors (ctx's) pass through.
func (s *Service) capacityError(err error) error {
	var full *capacity.FullError
	switch {
	case errors.As(err, &full):
		s.opts.Metrics.rejected.WithLabelValues("full").Inc()
		return apperr.Wrap(apperr.KindUnavailable, "The GPU host is busy, try again later", err).WithRetryAfter(full.RetryAfter)
	case errors.Is(err, capacity.ErrQueueTimeout):
		s.opts.Metrics.rejected.WithLabelValues("queue_timeout").Inc()
		return apperr.Wrap(apperr.KindUnavailable, "The GPU host is busy, try again later", err).WithRetryAfter(5 * time.Second)
	}
	return err
}

// runIn executes fn for op on backend in the capacity slot that acquire
// gets (a reserved ticket's Wait, or AcquireWait for an async job), with
// the job timeout, records its latency and maps its error.
func (s *Service) runIn(ctx context.Context, acquire func(context.Context) (func(), error), op inference.Op, backend string, fn func(ctx context.Context) error) error {
	release, err := acquire(ctx)
	if err != nil {
		return s.capacityError(err)
	}
	defer release()

	jobCtx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	start := time.Now()
	err = fn(jobCtx)
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	s.opts.Metrics.latency.WithLabelValues(string(op), backend, outcome).Observe(time.Since(start).Seconds())
	if err == nil {
		return nil
	}
	return s.mapError(ctx, jobCtx, op, backend, err)
}

// mapError turns a backend error into an apperr kind: unsupported 501,
// upstream failure 502, job deadline 504; the caller going away stays
// context.Canceled; errors that already carry a kind keep it.
func (s *Service) mapError(ctx, jobCtx context.Context, op inference.Op, backend string, err error) error {
	if ctx.Err() != nil {
		// The client left (or the server is shutting down).
		return fmt.Errorf("%s on %s: %w", op, backend, ctx.Err())
	}
	var unsup *inference.UnsupportedError
	if errors.As(err, &unsup) {
		return apperr.Wrap(apperr.KindUnsupported, unsup.Error(), err).
			WithField("operation", string(unsup.Op)).WithField("backend", unsup.Backend)
	}
	if jobCtx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
		return apperr.Wrap(apperr.KindTimeout, fmt.Sprintf("The %s backend timed out", backend), err)
	}
	var up *inference.UpstreamError
	if errors.As(err, &up) {
		msg := fmt.Sprintf("The %s backend failed", backend)
		if up.Message != "" {
			msg += ": " + up.Message
		}
		return apperr.Wrap(apperr.KindBadGateway, msg, err).WithField("backend", backend)
	}
	if _, ok := apperr.As(err); ok {
		return err
	}
	return apperr.Wrap(apperr.KindBadGateway, fmt.Sprintf("The %s backend failed", backend), err).WithField("backend", backend)
}
