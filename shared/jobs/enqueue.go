package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
)

// The audio operations (the inference.Op values of gpusvc).
const (
	AudioOpText   = "text_to_audio"
	AudioOpMelody = "audio_melody"
	AudioOpExtend = "audio_extend"
	AudioOpSplit  = "audio_split"
)

// AudioMetadata is what an audio job reads from its row's metadata (legacy
// §3.3, §7).
type AudioMetadata struct {
	Prompt   string          `json:"prompt"`
	Mode     string          `json:"mode"`
	MelodyID json.RawMessage `json:"melody_id"`
	ParentID json.RawMessage `json:"parent_id"`
	// Seed and TunePrompt are written by the built-in backend's jobs so
	// that an extension keeps the parent's key and tempo.
	Seed       *int64 `json:"seed,omitempty"`
	TunePrompt string `json:"tune_prompt,omitempty"`
}

// Op returns the audio operation the metadata asks for: split, extend,
// melody (a melody_id is set) or text to audio.
func (m AudioMetadata) Op() string {
	switch m.Mode {
	case "audio split":
		return AudioOpSplit
	case "audio extend":
		return AudioOpExtend
	}
	if id, ok := refID(m.MelodyID); ok && id > 0 {
		return AudioOpMelody
	}
	return AudioOpText
}

// Melody returns the melody audio id; ok is false when none is set.
func (m AudioMetadata) Melody() (int64, bool) { return refID(m.MelodyID) }

// Parent returns the parent audio id; ok is false when none is set.
func (m AudioMetadata) Parent() (int64, bool) { return refID(m.ParentID) }

// refID reads an id sent as a number or a numeric string (legacy clients
// send both); null and absent are not ids.
func refID(raw json.RawMessage) (int64, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	f, err := number(raw)
	if err != nil || f < 1 || f > 1<<31 || f != float64(int64(f)) {
		return 0, false
	}
	return int64(f), true
}

// NewJob describes a job to enqueue.
type NewJob struct {
	UserID int64
	Kind   Kind
	// Params is the work's input (marshalled to JSON); nil means {}.
	Params any
	// AudioID or VideoProjectID names the legacy row worked on.
	AudioID, VideoProjectID int64
	// Op and Units price the work (credits.Pricing.Cost); Op "" is free.
	Op    string
	Units int
	// Work weighs the job in the fair order (JOB_FAIRNESS=fair), in work
	// units: one image sample, one second of audio or video. 0 means
	// Units, at least 1.
	Work float64
	// Timeout bounds one attempt; 0 means the River client default.
	Timeout time.Duration
	// SkipUserCap enqueues even beyond the per-user queued cap (used when
	// adopting legacy rows that are QUEUED already).
	SkipUserCap bool
}

// Enqueue inserts the job and its River job in tx, which must also hold
// the state change that put the work in the queue: either both commit or
// neither. Beyond the user's queued cap it is a 429; with a ledger, a
// balance below the work's cost is a 402 (the debit itself happens when a
// worker starts the job, keyed by DebitKey, so a re-run never charges
// twice).
func (s *Store) Enqueue(ctx context.Context, tx pgx.Tx, n NewJob) (Job, error) {
	if n.UserID <= 0 || !n.Kind.Valid() {
		return Job{}, fmt.Errorf("enqueue job: user and kind are required")
	}
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('jobs:user:' || $1::bigint, 0))`, n.UserID); err != nil {
		return Job{}, fmt.Errorf("lock jobs of user %d: %w", n.UserID, err)
	}
	if !n.SkipUserCap {
		var queued int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE user_id = $1 AND state = 'QUEUED'`, n.UserID).Scan(&queued); err != nil {
			return Job{}, fmt.Errorf("count queued jobs of user %d: %w", n.UserID, err)
		}
		if queued >= s.cfg.MaxQueuedPerUser {
			return Job{}, apperr.TooManyRequests(fmt.Sprintf("Too many queued jobs (at most %d); wait for some to finish", s.cfg.MaxQueuedPerUser)).
				WithField("max_queued", s.cfg.MaxQueuedPerUser).WithRetryAfter(30 * time.Second)
		}
	}
	var cost int64
	if n.Op != "" && s.ledger != nil {
		cost = s.ledger.Pricing().Cost(n.Op, n.Units)
		if !n.SkipUserCap {
			// In tx: waiting for a second connection while holding this one
			// and the user's lock deadlocks a small pool under a burst.
			bal, err := s.ledger.BalanceWith(ctx, tx, n.UserID)
			if err != nil {
				return Job{}, err
			}
			if bal < cost {
				return Job{}, apperr.InsufficientCredits(bal, cost)
			}
		}
	}
	params := []byte("{}")
	if n.Params != nil {
		b, err := json.Marshal(n.Params)
		if err != nil {
			return Job{}, fmt.Errorf("encode job params: %w", err)
		}
		params = b
	}
	publicID := uuid.NewString()
	now := s.clock()
	j, err := scanJob(tx.QueryRow(ctx, `
INSERT INTO jobs (public_id, user_id, kind, params, debit_key, cost, audio_id, video_project_id, queued_at, created_at)
VALUES ($1::uuid, $2, $3, $4, $5, $6, NULLIF($7, 0), NULLIF($8, 0), $9, $9)
RETURNING `+jobColumns,
		publicID, n.UserID, string(n.Kind), params, "job:"+publicID, cost, n.AudioID, n.VideoProjectID, now))
	if err != nil {
		if db.IsUniqueViolation(err, "") {
			return Job{}, apperr.Wrap(apperr.KindConflict, "This item is already queued", err)
		}
		return Job{}, fmt.Errorf("insert job for user %d: %w", n.UserID, err)
	}
	args := Args{JobID: j.ID, TimeoutSeconds: int(n.Timeout.Round(time.Second) / time.Second)}
	res, err := s.river.InsertTx(ctx, tx, argsFor(n.Kind, args), &river.InsertOpts{Queue: Queue, MaxAttempts: s.cfg.MaxAttempts})
	if err != nil {
		return Job{}, fmt.Errorf("insert river job for job %d: %w", j.ID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE jobs SET river_job_id = $2 WHERE id = $1`, j.ID, res.Job.ID); err != nil {
		return Job{}, fmt.Errorf("link job %d to river job: %w", j.ID, err)
	}
	j.RiverJobID = res.Job.ID
	if s.cfg.Fairness == FairnessFair {
		// The user's advisory lock is held: this user's tags are assigned
		// one at a time (see fair.go).
		tag, err := fairTag(ctx, tx, n.UserID)
		if err != nil {
			return Job{}, err
		}
		work := fairWork(n)
		if err := setFairTag(ctx, tx, j.ID, j.RiverJobID, tag, work); err != nil {
			return Job{}, err
		}
		j.FairAt, j.FairWork = &tag, work
	}
	s.log.Info("job queued", zap.Int64("job_id", j.ID), zap.String("kind", string(j.Kind)),
		zap.Int64("user_id", j.UserID), zap.Int64("river_job_id", j.RiverJobID))
	return j, nil
}

// OnAudioQueued enqueues the job of the audio row audioID, which the
// caller has just set QUEUED in tx (libraryapi's QueuedFunc hook). The
// operation comes from the row's metadata; an operation no live worker
// supports is a 501 "not supported by this backend".
func (s *Store) OnAudioQueued(ctx context.Context, tx pgx.Tx, audioID int64) error {
	userID, raw, err := library.LockAudioForJob(ctx, tx, audioID)
	if err != nil {
		return fmt.Errorf("read audio %d to enqueue: %w", audioID, err)
	}
	_, err = s.enqueueAudio(ctx, tx, userID, audioID, raw, false)
	return err
}

func (s *Store) enqueueAudio(ctx context.Context, tx pgx.Tx, userID, audioID int64, raw []byte, adopt bool) (Job, error) {
	var meta AudioMetadata
	_ = json.Unmarshal(raw, &meta) // a malformed row fails in the worker, with a reason
	op := meta.Op()
	if s.registry != nil && !adopt {
		ok, known, err := s.registry.Supports(ctx, op)
		if err != nil {
			s.log.Warn("worker registry unavailable", zap.Error(err))
		} else if known && !ok {
			return Job{}, apperr.New(apperr.KindUnsupported, op+" is not supported by this backend")
		}
	}
	secs := s.cfg.AudioDuration
	timeout := s.cfg.AudioTimeout(secs)
	if op == AudioOpExtend || op == AudioOpSplit {
		// The parent may be up to MaxAudioDuration long.
		timeout = s.cfg.AudioTimeout(secs + MaxAudioDuration)
	}
	return s.Enqueue(ctx, tx, NewJob{UserID: userID, Kind: KindAudio, AudioID: audioID,
		Op: credits.OpAudio, Units: secs, Timeout: timeout, SkipUserCap: adopt})
}

// OnProjectQueued enqueues the render of the video project projectID,
// which the caller has just set QUEUED in tx (libraryapi's QueuedFunc
// hook). Metadata the job cannot render is accepted here and fails in the
// worker with its reason (legacy behaviour: queueing always succeeds).
func (s *Store) OnProjectQueued(ctx context.Context, tx pgx.Tx, projectID int64) error {
	userID, raw, err := library.LockProjectForJob(ctx, tx, projectID)
	if err != nil {
		return fmt.Errorf("read video project %d to enqueue: %w", projectID, err)
	}
	_, err = s.enqueueVideo(ctx, tx, userID, projectID, raw, false)
	return err
}

func (s *Store) enqueueVideo(ctx context.Context, tx pgx.Tx, userID, projectID int64, raw []byte, adopt bool) (Job, error) {
	n := NewJob{UserID: userID, Kind: KindVideo, VideoProjectID: projectID, SkipUserCap: adopt,
		Timeout: s.cfg.VideoTimeout(s.cfg.VideoMaxDuration * s.cfg.VideoFPS)}
	if plan, err := PlanVideo(raw, s.cfg.VideoFPS, s.cfg.VideoMaxDuration); err == nil {
		n.Op, n.Units = credits.OpVideo, plan.Seconds()
		n.Timeout = s.cfg.VideoTimeout(plan.TotalFrames())
	}
	return s.Enqueue(ctx, tx, n)
}

// AdoptOrphans enqueues jobs for legacy rows that are QUEUED without an
// active job (rows queued by the legacy system before the switch, or by a
// path that bypassed the hooks), so that no queued row is ever left
// without its job. It returns how many it adopted. Safe to run
// concurrently from every gpusvc: the active-job unique indexes make a
// second adoption of the same row fail and roll back.
func (s *Store) AdoptOrphans(ctx context.Context) (int, error) {
	list, err := s.orphans(ctx, adoptBatch)
	if err != nil {
		return 0, err
	}
	adopted := 0
	for _, o := range list {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			lock, enqueue := library.LockAudioState, s.enqueueAudio
			if o.kind == KindVideo {
				lock, enqueue = library.LockProjectState, s.enqueueVideo
			}
			state, err := lock(ctx, tx, o.ID)
			if err != nil || state == nil || *state != string(StateQueued) {
				return errSkip
			}
			_, err = enqueue(ctx, tx, o.UserID, o.ID, o.Metadata, true)
			return err
		})
		switch {
		case err == nil:
			adopted++
		case errors.Is(err, errSkip), apperr.KindOf(err) == apperr.KindConflict:
		default:
			return adopted, fmt.Errorf("adopt %s %d: %w", o.kind, o.ID, err)
		}
	}
	return adopted, nil
}

// adoptBatch bounds the rows one AdoptOrphans call adopts; orphanPage is
// how many queued rows it reads at a time while looking for them.
const (
	adoptBatch = 100
	orphanPage = 500
)

// orphan is a QUEUED library row without an active job.
type orphan struct {
	kind Kind
	library.QueuedRow
}

// orphans returns up to limit QUEUED audio rows, then video projects, that
// have no QUEUED or PROCESSING job. The rows come from shared/library (the
// owner of those tables), the active jobs from the jobs table.
func (s *Store) orphans(ctx context.Context, limit int) ([]orphan, error) {
	var out []orphan
	for _, src := range []struct {
		kind   Kind
		column string
		list   func(context.Context, db.Querier, int64, int) ([]library.QueuedRow, error)
	}{
		{KindAudio, "audio_id", library.QueuedAudio},
		{KindVideo, "video_project_id", library.QueuedProjects},
	} {
		for after := int64(0); len(out) < limit; {
			rows, err := src.list(ctx, s.pool, after, orphanPage)
			if err != nil {
				return nil, fmt.Errorf("find orphaned queued rows: %w", err)
			}
			if len(rows) == 0 {
				break
			}
			ids := make([]int64, len(rows))
			for i, r := range rows {
				ids[i] = r.ID
			}
			active, err := s.activeFor(ctx, src.column, ids)
			if err != nil {
				return nil, err
			}
			for _, r := range rows {
				if !active[r.ID] && len(out) < limit {
					out = append(out, orphan{kind: src.kind, QueuedRow: r})
				}
			}
			if len(rows) < orphanPage {
				break
			}
			after = rows[len(rows)-1].ID
		}
	}
	return out, nil
}

// activeFor returns which of ids have a QUEUED or PROCESSING job, by the
// jobs column (audio_id or video_project_id) that names them.
func (s *Store) activeFor(ctx context.Context, column string, ids []int64) (map[int64]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+column+` FROM jobs
		WHERE `+column+` = ANY($1::bigint[]) AND state IN ('QUEUED', 'PROCESSING')`, ids)
	if err != nil {
		return nil, fmt.Errorf("find active jobs by %s: %w", column, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("find active jobs by %s: %w", column, err)
	}
	out := make(map[int64]bool, len(found))
	for _, id := range found {
		out[id] = true
	}
	return out, nil
}

var errSkip = errors.New("skip")
