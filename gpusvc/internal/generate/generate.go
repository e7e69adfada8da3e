// Package generate is gpusvc's image pipeline: for POST /images it resolves
// the model, checks the operation is offered (501 otherwise), decodes and
// bounds the inputs, charges the credits, runs the backend inside this
// host's capacity (slots + bounded queue), and stores every sample (PNG,
// thumbnail, SHA-256, per-user dedup; objects first, then the row). Any
// failure after the charge refunds it (deferred, so a panicking backend
// refunds too) and deletes the samples this request already stored, so a
// request is all or nothing. It also runs the model routes
// (/extend_prompt, /interrogate, /upscale, /mask) within the same capacity.
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
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
)

// Charger charges and refunds credits; *credits.Ledger implements it.
type Charger interface {
	Charge(ctx context.Context, in credits.ChargeInput) (credits.Debit, error)
	Refund(ctx context.Context, debitID int64) (credits.Refund, error)
}

// ImageCreator stores a generated image (objects, then row, with per-user
// dedup) and deletes one again; *library.Images implements it.
type ImageCreator interface {
	Create(ctx context.Context, n library.NewImage) (library.Image, bool, error)
	Delete(ctx context.Context, userID, id int64) error
}

// Pacing simulates GPU speed for the proxy's scheduling benchmarks: each job
// holds its slot for an extra Units × BaseSeconds × Slowdown / Speed
// seconds before the backend runs. The zero value adds nothing.
type Pacing struct {
	// BaseSeconds is the simulated time of one work unit (GPU_BASE_SECONDS;
	// 0 turns pacing off). A unit is one 512×512, 25-step, 1-sample Text
	// to Image (the proxy's balancer.Estimate uses the same scale).
	BaseSeconds float64
	// Speed is the simulated GPU's relative speed (GPU_SPEED, default 1):
	// 0.5 makes every job take twice as long.
	Speed float64
	// Slowdown multiplies the simulated time (GPU_SLOWDOWN, default 1).
	Slowdown float64
}

// delay returns the simulated time of a job of units work units.
func (p Pacing) delay(units float64) time.Duration {
	if p.BaseSeconds <= 0 || units <= 0 {
		return 0
	}
	speed, slow := p.Speed, p.Slowdown
	if speed <= 0 {
		speed = 1
	}
	if slow <= 0 {
		slow = 1
	}
	return time.Duration(units * p.BaseSeconds * slow / speed * float64(time.Second))
}

// Options configure a Service. Every field but Pacing and Log is required.
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
	Pacing  Pacing
	Metrics *Metrics
	Log     *zap.Logger
}

// Service runs generation jobs. It is safe for concurrent use.
type Service struct {
	opts Options
	log  *zap.Logger
}

// New returns a Service.
func New(opts Options) *Service {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
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
// comment). Every sample is stored; the result lists them in order. A
// Prepaid job is neither charged nor refunded here: its caller (the job
// system) owns the charge.
func (s *Service) GenerateImages(ctx context.Context, job ImageJob) (ImagesResult, error) {
	if err := job.Validate(s.opts.Limits); err != nil {
		return ImagesResult{}, err
	}
	route, err := s.opts.Registry.Resolve(ctx, job.ModelID)
	if err != nil {
		return ImagesResult{}, err
	}
	if err := route.Check(job.Op); err != nil {
		return ImagesResult{}, err
	}
	req := inference.ImageRequest{
		Op: job.Op, Model: route.BackendModel, Prompt: job.Prompt, NegativePrompt: job.NegativePrompt,
		Samples: job.Samples, Steps: job.Steps, Seed: job.Seed, Strength: job.Strength,
	}
	var inputHash string
	if job.Op == inference.OpTxt2Img {
		req.Width, req.Height = job.Width, job.Height
	} else {
		if req.Init, req.Mask, err = s.decodeInputs(job); err != nil {
			return ImagesResult{}, err
		}
		inputHash = media.Hash(job.Input)
	}
	parentID, err := s.opts.Parents.Resolve(ctx, job.UserID, job.ParentID, inputHash)
	if err != nil {
		return ImagesResult{}, err
	}

	var debit credits.Debit
	if !job.Prepaid {
		if debit, err = s.charge(ctx, job.UserID, job.Anonymous, job.Op, job.Samples, job.Key); err != nil {
			return ImagesResult{}, err
		}
	}
	done := false
	defer func() {
		// Deferred, so that a panic below refunds too.
		if !done {
			s.refund(ctx, debit)
		}
	}()
	out, err := s.generateAndStore(ctx, job, route, req, parentID)
	if err != nil {
		return ImagesResult{}, err
	}
	done = true
	return ImagesResult{Outputs: out, Charged: debit.Amount}, nil
}

func (s *Service) generateAndStore(ctx context.Context, job ImageJob, route models.Route, req inference.ImageRequest, parentID int64) ([]Output, error) {
	var res inference.ImageResult
	units := workUnits(job.Op, req)
	err := s.run(ctx, job.Op, route.Backend.Name(), units, func(ctx context.Context) error {
		var err error
		res, err = route.Backend.Generate(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(res.Images) == 0 {
		return nil, apperr.BadGateway(fmt.Sprintf("The %s backend returned no image", route.Backend.Name()))
	}
	if len(res.Images) > job.Samples {
		res.Images = res.Images[:job.Samples]
	}
	outs := make([]Output, 0, len(res.Images))
	done := false
	defer func() {
		if !done {
			s.discard(ctx, job.UserID, outs)
		}
	}()
	for i, img := range res.Images {
		if img == nil || img.Bounds().Empty() {
			return nil, apperr.BadGateway(fmt.Sprintf("The %s backend returned an empty image", route.Backend.Name()))
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
		meta := imageMetadata(job, route, res.Info, i, len(res.Images))
		im, created, err := s.opts.Images.Create(ctx, library.NewImage{
			UserID: job.UserID, Data: data, Thumbnail: thumb, Decoded: img, Hash: hash,
			Metadata: meta, ParentID: &parentID,
		})
		if err != nil {
			return nil, fmt.Errorf("store sample %d: %w", i, err)
		}
		outs = append(outs, Output{ID: im.ID, CDNID: im.CDNID, PNG: data, Hash: hash, Image: img, Created: created})
	}
	done = true
	return outs, nil
}

// discard deletes the images a failed request stored, so that it leaves
// nothing behind; dedup hits (Created false) are older images of the user
// and stay. It runs even when ctx was cancelled; a failure is logged.
func (s *Service) discard(ctx context.Context, userID int64, outs []Output) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	for _, o := range outs {
		if !o.Created {
			continue
		}
		if err := s.opts.Images.Delete(ctx, userID, o.ID); err != nil && !errors.Is(err, library.ErrImageNotFound) {
			s.log.Error("delete image of failed request failed", zap.Int64("image_id", o.ID), zap.Int64("user_id", userID), zap.Error(err))
		}
	}
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

// refund gives a failed job's credits back (a zero or free debit is a
// no-op). It runs even when ctx was cancelled (the client left), retrying
// transient failures a few times; a refund that still fails is logged at
// error level, since the job's own error is what the client must see.
func (s *Service) refund(ctx context.Context, d credits.Debit) {
	if d.Free || d.ID == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), refundTimeout)
	defer cancel()
	wait := refundBackoff
	attempt := 1
	for {
		_, err := s.opts.Charger.Refund(ctx, d.ID)
		if err == nil {
			s.opts.Metrics.refunds.Inc()
			return
		}
		// NotFound, Conflict (nothing to give back) and Invalid never heal.
		permanent := apperr.Is(err, apperr.KindNotFound) || apperr.Is(err, apperr.KindConflict) || apperr.Is(err, apperr.KindInvalid)
		if !permanent && attempt < refundAttempts && sleep(ctx, wait) {
			attempt++
			wait *= 2
			continue
		}
		s.log.Error("refund failed, user remains charged", zap.Int64("debit_id", d.ID), zap.Int64("user_id", d.UserID),
			zap.Int64("credits", d.Amount), zap.Int("attempts", attempt), zap.Error(err))
		return
	}
}

// sleep waits d, or until ctx ends; it reports whether the wait completed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// run executes fn for op on backend inside a capacity slot, with the job
// timeout and the simulated pacing, records its latency and maps its error.
func (s *Service) run(ctx context.Context, op inference.Op, backend string, units float64, fn func(ctx context.Context) error) error {
	release, err := s.opts.Capacity.Acquire(ctx)
	if err != nil {
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
	defer release()

	jobCtx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	start := time.Now()
	err = s.pace(jobCtx, units)
	if err == nil {
		err = fn(jobCtx)
	}
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

// pace sleeps the simulated GPU time, or until ctx ends.
func (s *Service) pace(ctx context.Context, units float64) error {
	d := s.opts.Pacing.delay(units)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
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
