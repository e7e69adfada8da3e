// Package libraryapi serves the user's library over HTTP with the legacy
// wire contract: the non-generating image routes (gallery, templates,
// uploads, the user's images), audio, share links, uploaded videos and
// video projects (docs/legacy-contract.md §3.2–§3.6). Handlers parse and check the
// request, call the stores in this package or shared/library, and map rows
// to the legacy JSON shapes (epoch-millisecond times, sorted keys, minus
// secrets).
//
// Every /users/<user_id>/... route compares the path id with the token's
// (400 "Wrong user!" as legacy) and every query is scoped by the caller's
// id, so another user's objects are simply not found (404).
//
// The rows live in shared/library, which holds all their SQL. This package
// must never generate media or run jobs: rows it creates in state QUEUED
// are handed to the job queue (Options.Jobs) in the same transaction.
package libraryapi

import (
	"context"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/storage"
)

// Queue is the job queue of the rows this API puts into state QUEUED (an
// audio row or a video project); *jobs.Store implements it. The On…Queued
// methods run inside the transaction that set the row QUEUED, after the
// state change and before the commit, so that a row is QUEUED if and only
// if its job exists; an error rolls the change back and fails the request.
type Queue interface {
	OnAudioQueued(ctx context.Context, tx pgx.Tx, audioID int64) error
	OnProjectQueued(ctx context.Context, tx pgx.Tx, projectID int64) error
	// ForAudio and ForVideoProject return the newest job of a row, so
	// that the answers that queue work also name the job (GET
	// /v1/jobs/<job_id>).
	ForAudio(ctx context.Context, audioID int64) (jobs.Job, error)
	ForVideoProject(ctx context.Context, projectID int64) (jobs.Job, error)
}

// Options are the dependencies of the API. Pool, Storage, Images, Verifier,
// Limiter and Log are required.
type Options struct {
	Pool    *pgxpool.Pool
	Storage storage.Store
	Images  *library.Images
	// Verifier checks JWTs on the user routes.
	Verifier *auth.Verifier
	// ChallengeTokens are accepted by the public routes (gallery,
	// templates, GET /links/<id>).
	ChallengeTokens []string
	// Limiter applies the legacy per-route limits; ByUser for JWT routes,
	// ByIP (with TrustedProxies) for challenge-token routes.
	Limiter        *ratelimit.Limiter
	TrustedProxies []netip.Prefix
	// FFmpeg reads uploaded videos.
	FFmpeg media.FFmpeg
	// ImageLimits bound uploaded images; zero means media.DefaultLimits.
	ImageLimits media.Limits
	// Jobs enqueues the jobs of queued rows; nil enqueues nothing (the
	// rows are left QUEUED for jobs.Store.AdoptOrphans) and names no job.
	Jobs Queue
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// jobOf returns the public id of the active job of a queued row, or "" (no
// lookup configured, none found, or the lookup failed: the id is a
// convenience, the legacy state fields stay the contract).
func (a *API) jobOf(ctx context.Context, kind string, id int64) string {
	if a.opts.Jobs == nil {
		return ""
	}
	var (
		j   jobs.Job
		err error
	)
	if kind == "audio" {
		j, err = a.opts.Jobs.ForAudio(ctx, id)
	} else {
		j, err = a.opts.Jobs.ForVideoProject(ctx, id)
	}
	if err != nil {
		a.log.Warn("job id lookup failed", zap.String("kind", kind), zap.Int64("id", id), zap.Error(err))
		return ""
	}
	return j.PublicID
}

// API holds the handlers. Build it with New and register it with Register.
type API struct {
	opts    Options
	log     *zap.Logger
	cleanup *cleaner
}

// New returns the API over opts.
func New(opts Options) *API {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.ImageLimits == (media.Limits{}) {
		opts.ImageLimits = media.DefaultLimits
	}
	log := opts.Log.Named("library")
	cl := &cleaner{storage: opts.Storage, log: log}
	return &API{
		opts:    opts,
		log:     log,
		cleanup: cl,
	}
}

// Wait blocks until background object deletions started by requests have
// finished (call it at shutdown, after the HTTP server has drained).
func (a *API) Wait() { a.cleanup.wg.Wait() }

// listOn binds a library list function to q, for listUserRows.
func listOn[T any](q db.Querier, f func(ctx context.Context, q db.Querier, userID int64, offset, limit int) ([]T, error)) listFunc[T] {
	return func(ctx context.Context, userID int64, offset, limit int) ([]T, error) {
		return f(ctx, q, userID, offset, limit)
	}
}
