package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
)

// ErrJobNotFound is the not-found error of the job routes.
var ErrJobNotFound = apperr.NotFound("Job not found")

// Options are the dependencies of a Store. Pool, River and Log are required.
type Options struct {
	Pool *pgxpool.Pool
	// River inserts and cancels River jobs. An insert-only client (no
	// Workers) is enough for accountsvc.
	River *river.Client[pgx.Tx]
	// Events publishes progress and state changes; nil publishes nothing.
	Events *Events
	// Ledger refunds canceled and failed jobs and checks the balance at
	// enqueue; nil skips both (tests of the state machine only).
	Ledger *credits.Ledger
	// Registry tells which operations the running workers support; nil
	// accepts every operation.
	Registry *Registry
	Config   Config
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	Log *zap.Logger
}

// Store is the jobs table. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	river    *river.Client[pgx.Tx]
	events   *Events
	ledger   *credits.Ledger
	registry *Registry
	cfg      Config
	now      func() time.Time
	log      *zap.Logger
}

// NewStore returns a store.
func NewStore(o Options) *Store {
	s := &Store{pool: o.Pool, river: o.River, events: o.Events, ledger: o.Ledger, registry: o.Registry,
		cfg: o.Config.WithDefaults(), now: o.Now, log: o.Log.Named("jobs")}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Config returns the store's settings (defaults applied).
func (s *Store) Config() Config { return s.cfg }

// Pool returns the database pool.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

func (s *Store) clock() time.Time { return s.now().UTC().Truncate(time.Microsecond) }

const jobColumns = `id, public_id::text, user_id, kind, state, progress, stage, params, result, COALESCE(error, ''),
	COALESCE(river_job_id, 0), debit_key, cost, charged, COALESCE(audio_id, 0), COALESCE(video_project_id, 0),
	cancel_requested, attempt, fair_at, COALESCE(fair_work, 0), seq, notified_at, heartbeat_at, queued_at, created_at, started_at, finished_at`

func scanJob(row pgx.Row) (Job, error) {
	var j Job
	var kind, state string
	var params, result []byte
	err := row.Scan(&j.ID, &j.PublicID, &j.UserID, &kind, &state, &j.Progress, &j.Stage, &params, &result, &j.Error,
		&j.RiverJobID, &j.DebitKey, &j.Cost, &j.Charged, &j.AudioID, &j.VideoProjectID,
		&j.CancelRequested, &j.Attempt, &j.FairAt, &j.FairWork, &j.Seq, &j.NotifiedAt, &j.HeartbeatAt, &j.QueuedAt, &j.CreatedAt, &j.StartedAt, &j.FinishedAt)
	if err != nil {
		return Job{}, err
	}
	j.Kind, j.State = Kind(kind), State(state)
	j.Params = json.RawMessage(params)
	if len(result) > 0 {
		j.Result = json.RawMessage(result)
	}
	j.QueuedAt, j.CreatedAt = j.QueuedAt.UTC(), j.CreatedAt.UTC()
	for _, t := range []*time.Time{j.NotifiedAt, j.HeartbeatAt, j.StartedAt, j.FinishedAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return j, nil
}

// Get returns the job with the internal id.
func (s *Store) Get(ctx context.Context, id int64) (Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrJobNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("read job %d: %w", id, err)
	}
	return j, nil
}

// GetForUser returns the user's job with the public id. Another user's job
// and a malformed id are NotFound alike, so ids cannot be probed.
func (s *Store) GetForUser(ctx context.Context, userID int64, publicID string) (Job, error) {
	if _, err := uuid.Parse(publicID); err != nil || len(publicID) != 36 {
		return Job{}, ErrJobNotFound
	}
	j, err := scanJob(s.pool.QueryRow(ctx,
		`SELECT `+jobColumns+` FROM jobs WHERE public_id = $1::uuid AND user_id = $2`, publicID, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrJobNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("read job %s: %w", publicID, err)
	}
	return j, nil
}

// ForAudio returns the newest job of the audio row; NotFound when none.
func (s *Store) ForAudio(ctx context.Context, audioID int64) (Job, error) {
	return s.forRef(ctx, "audio_id", audioID)
}

// ForVideoProject returns the newest job of the video project; NotFound
// when none.
func (s *Store) ForVideoProject(ctx context.Context, projectID int64) (Job, error) {
	return s.forRef(ctx, "video_project_id", projectID)
}

func (s *Store) forRef(ctx context.Context, column string, id int64) (Job, error) {
	j, err := scanJob(s.pool.QueryRow(ctx,
		`SELECT `+jobColumns+` FROM jobs WHERE `+column+` = $1 ORDER BY id DESC LIMIT 1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrJobNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("read job of %s %d: %w", column, id, err)
	}
	return j, nil
}

// QueuePosition returns the legacy queue field of a job: its 1-based rank
// among all QUEUED jobs by queue time when QUEUED, 0 when PROCESSING, and
// nil when it is in a terminal state.
func (s *Store) QueuePosition(ctx context.Context, j Job) (*int, error) {
	switch j.State {
	case StateProcessing:
		z := 0
		return &z, nil
	case StateQueued:
		var n int
		err := s.pool.QueryRow(ctx, `
SELECT count(*) FROM jobs WHERE state = 'QUEUED' AND (queued_at, id) <= ($1, $2)`, j.QueuedAt, j.ID).Scan(&n)
		if err != nil {
			return nil, fmt.Errorf("queue position of job %d: %w", j.ID, err)
		}
		return &n, nil
	}
	return nil, nil
}

// AudioQueuePosition is the legacy `queue` field of GET
// /users/<id>/audios/<id>: the 1-based rank of the audio row's QUEUED job
// among all users' QUEUED audio jobs, 0 while it is PROCESSING, nil (JSON
// null) when COMPLETED. ok is false when the key must be absent (no job,
// ERROR or CANCELED).
func (s *Store) AudioQueuePosition(ctx context.Context, q db.Querier, audioID int64) (pos *int, ok bool, err error) {
	var state string
	var n int
	err = q.QueryRow(ctx, `
SELECT j.state,
       CASE WHEN j.state = 'QUEUED' THEN (SELECT count(*) FROM jobs o
            WHERE o.kind = 'audio' AND o.state = 'QUEUED' AND (o.queued_at, o.id) <= (j.queued_at, j.id)) ELSE 0 END
FROM jobs j WHERE j.audio_id = $1 ORDER BY j.id DESC LIMIT 1`, audioID).Scan(&state, &n)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("queue position of audio %d: %w", audioID, err)
	}
	switch State(state) {
	case StateQueued, StateProcessing:
		return &n, true, nil
	case StateCompleted:
		return nil, true, nil
	}
	return nil, false, nil
}

// EventOf returns the event of type typ describing j as it is now.
func EventOf(j Job, typ string) Event {
	return Event{Type: typ, JobID: j.PublicID, Seq: j.Seq, State: j.State, Progress: j.Progress, Stage: j.Stage,
		Error: j.Error, Result: j.Result}
}

// publish sends ev, logging (not returning) failures: events are best
// effort and PostgreSQL has the truth.
func (s *Store) publish(ctx context.Context, j Job, typ string) {
	if s.events == nil {
		return
	}
	ev := EventOf(j, typ)
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := s.events.Publish(pctx, ev); err != nil {
		s.log.Warn("publish job event failed", zap.Int64("job_id", j.ID), zap.Error(err))
	}
}

// setLegacyState mirrors a job state into the legacy row it works on.
func setLegacyState(ctx context.Context, q db.Querier, j Job, st State) error {
	if j.AudioID != 0 {
		if err := library.SetAudioState(ctx, q, j.AudioID, string(st)); err != nil {
			return err
		}
	}
	if j.VideoProjectID != 0 {
		if err := library.SetProjectState(ctx, q, j.VideoProjectID, string(st)); err != nil {
			return err
		}
	}
	return nil
}
