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
// This package must never generate media or run jobs: rows it creates in
// state QUEUED are handed to the job queue through the OnQueued hooks.
package libraryapi

import (
	"context"
	"net/netip"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/storage"
)

// QueuedFunc is called inside the transaction that puts a row into state
// QUEUED (an audio row or a video project), after the state change and
// before the commit; returning an error rolls the change back and fails
// the request. The jobs area enqueues its job here, so that a row is QUEUED
// if and only if its job exists.
type QueuedFunc func(ctx context.Context, tx pgx.Tx, id int64) error

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
	// OnAudioQueued and OnProjectQueued are the job-queue hooks; nil
	// means no hook (the rows are left QUEUED for a poller).
	OnAudioQueued, OnProjectQueued QueuedFunc
	// JobOf, when set, returns the public id of the active job of a queued
	// row (kind "audio" or "video_project"), so that the answers that queue
	// work also name the job (GET /v1/jobs/<job_id>); "" when there is none.
	JobOf func(ctx context.Context, kind string, id int64) (string, error)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// jobOf returns the public id of the active job of a queued row, or "" (no
// lookup configured, none found, or the lookup failed: the id is a
// convenience, the legacy state fields stay the contract).
func (a *API) jobOf(ctx context.Context, kind string, id int64) string {
	if a.opts.JobOf == nil {
		return ""
	}
	jid, err := a.opts.JobOf(ctx, kind, id)
	if err != nil {
		a.log.Warn("job id lookup failed", zap.String("kind", kind), zap.Int64("id", id), zap.Error(err))
		return ""
	}
	return jid
}

// API holds the handlers. Build it with New and register it with Register.
type API struct {
	opts     Options
	log      *zap.Logger
	audio    *audioStore
	links    *linkStore
	videos   *videoStore
	projects *projectStore
	cleanup  *cleaner
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
		opts:     opts,
		log:      log,
		audio:    &audioStore{pool: opts.Pool, now: opts.Now, onQueued: opts.OnAudioQueued},
		links:    &linkStore{pool: opts.Pool, now: opts.Now},
		videos:   &videoStore{pool: opts.Pool, now: opts.Now},
		projects: &projectStore{pool: opts.Pool, now: opts.Now, onQueued: opts.OnProjectQueued},
		cleanup:  cl,
	}
}

// Wait blocks until background object deletions started by requests have
// finished (call it at shutdown, after the HTTP server has drained).
func (a *API) Wait() { a.cleanup.wg.Wait() }
