package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/rivertype"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// ClaimResult tells a worker what to do with the job it was handed.
type ClaimResult int

// The claim results.
const (
	// ClaimRun: the job is PROCESSING and the worker runs it.
	ClaimRun ClaimResult = iota
	// ClaimDone: the job is already terminal (a re-run after it finished,
	// or after a cancel); nothing to do.
	ClaimDone
	// ClaimCanceled: a cancel was requested before the work started; the
	// job has been moved to CANCELED.
	ClaimCanceled
	// ClaimBusy: the user already runs MaxRunningPerUser jobs; the worker
	// puts the job back (river.JobSnooze) without using an attempt.
	ClaimBusy
)

// Claim moves the job to PROCESSING for River attempt attempt, together
// with its legacy row. A job that is already PROCESSING (a re-run after a
// crash) is claimed again.
func (s *Store) Claim(ctx context.Context, id int64, attempt int) (Job, ClaimResult, error) {
	var j Job
	res := ClaimRun
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if j, err = lockJob(ctx, tx, id); err != nil {
			return err
		}
		switch {
		case j.State.Terminal():
			res = ClaimDone
			return nil
		case j.CancelRequested:
			res = ClaimCanceled
			j, err = finishTx(ctx, tx, j, Outcome{State: StateCanceled, Error: "canceled"}, s.clock())
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('jobs:user:' || $1::bigint, 0))`, j.UserID); err != nil {
			return fmt.Errorf("lock jobs of user %d: %w", j.UserID, err)
		}
		var running int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM jobs WHERE user_id = $1 AND state = 'PROCESSING' AND id <> $2`,
			j.UserID, j.ID).Scan(&running); err != nil {
			return fmt.Errorf("count running jobs of user %d: %w", j.UserID, err)
		}
		if j.State == StateQueued && running >= s.cfg.MaxRunningPerUser {
			res = ClaimBusy
			return nil
		}
		now := s.clock()
		j, err = scanJob(tx.QueryRow(ctx, `
UPDATE jobs SET state = 'PROCESSING', started_at = COALESCE(started_at, $2), attempt = $3, heartbeat_at = $2,
       stage = 'starting', seq = seq + 1
WHERE id = $1 RETURNING `+jobColumns, j.ID, now, attempt))
		if err != nil {
			return fmt.Errorf("start job %d: %w", id, err)
		}
		return setLegacyState(ctx, tx, j, StateProcessing)
	})
	if err != nil {
		return Job{}, 0, err
	}
	switch res {
	case ClaimRun:
		s.publish(ctx, j, EventState)
	case ClaimCanceled:
		s.afterTerminal(ctx, j)
	case ClaimDone:
		if j.State == StateError || j.State == StateCanceled {
			s.refund(ctx, j) // heals a refund lost to a crash; idempotent
		}
	}
	return j, res, nil
}

func lockJob(ctx context.Context, tx pgx.Tx, id int64) (Job, error) {
	j, err := scanJob(tx.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs WHERE id = $1 FOR UPDATE`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Job{}, ErrJobNotFound
	}
	if err != nil {
		return Job{}, fmt.Errorf("lock job %d: %w", id, err)
	}
	return j, nil
}

// ErrCanceled is returned by Progress and Heartbeat when the job is no
// longer PROCESSING or a cancel was requested: the worker stops at once.
var ErrCanceled = errors.New("job canceled")

// Progress records progress (clamped to 0..1) and the stage name, beats the
// heartbeat and publishes a progress event. It returns ErrCanceled when a
// cancel was requested or the job is no longer PROCESSING.
func (s *Store) Progress(ctx context.Context, id int64, progress float64, stage string) error {
	if math.IsNaN(progress) {
		progress = 0
	}
	progress = min(max(progress, 0), 1)
	if len(stage) > 64 {
		stage = stage[:64]
	}
	j, err := scanJob(s.pool.QueryRow(ctx, `
UPDATE jobs SET progress = $2, stage = $3, heartbeat_at = $4, seq = seq + 1
WHERE id = $1 AND state = 'PROCESSING' RETURNING `+jobColumns, id, progress, stage, s.clock()))
	if errors.Is(err, pgx.ErrNoRows) {
		return ErrCanceled
	}
	if err != nil {
		return fmt.Errorf("record progress of job %d: %w", id, err)
	}
	s.publish(ctx, j, EventProgress)
	if j.CancelRequested {
		return ErrCanceled
	}
	return nil
}

// Heartbeat records that the job's worker is alive. It returns ErrCanceled
// like Progress.
func (s *Store) Heartbeat(ctx context.Context, id int64) error {
	var cancel bool
	err := s.pool.QueryRow(ctx, `UPDATE jobs SET heartbeat_at = $2 WHERE id = $1 AND state = 'PROCESSING' RETURNING cancel_requested`,
		id, s.clock()).Scan(&cancel)
	if errors.Is(err, pgx.ErrNoRows) || cancel {
		return ErrCanceled
	}
	if err != nil {
		return fmt.Errorf("heartbeat of job %d: %w", id, err)
	}
	return nil
}

// SetCost fixes the job's cost before it is charged (the worker learns the
// size of some work only when it reads the input). After the charge the
// cost never changes, so every re-run debits the same amount.
func (s *Store) SetCost(ctx context.Context, id, cost int64) (int64, error) {
	var out int64
	err := s.pool.QueryRow(ctx, `
UPDATE jobs SET cost = CASE WHEN charged THEN cost ELSE $2 END WHERE id = $1 RETURNING cost`, id, cost).Scan(&out)
	if err != nil {
		return 0, fmt.Errorf("set cost of job %d: %w", id, err)
	}
	return out, nil
}

// MarkCharged records that the job's debit was made.
func (s *Store) MarkCharged(ctx context.Context, id int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE jobs SET charged = true WHERE id = $1`, id); err != nil {
		return fmt.Errorf("mark job %d charged: %w", id, err)
	}
	return nil
}

// MarkNotified records that the job's notifications went out.
func (s *Store) MarkNotified(ctx context.Context, id int64) error {
	if _, err := s.pool.Exec(ctx, `UPDATE jobs SET notified_at = $2 WHERE id = $1`, id, s.clock()); err != nil {
		return fmt.Errorf("mark job %d notified: %w", id, err)
	}
	return nil
}

// Outcome is how a job ends.
type Outcome struct {
	// State is COMPLETED, ERROR or CANCELED.
	State State
	// Result is marshalled into Job.Result (COMPLETED).
	Result any
	// Error is the reason (ERROR, CANCELED).
	Error string
}

// Finish moves the job to its terminal state, with its legacy row, once:
// a job that is already terminal is returned unchanged with finished
// false. legacy, when non-nil, runs in the same transaction first (to
// write the legacy row's result columns); it is called only when the job
// is still active. ERROR and CANCELED refund the job's debit (if any)
// after the commit.
func (s *Store) Finish(ctx context.Context, id int64, o Outcome, legacy func(ctx context.Context, tx pgx.Tx, j Job) error) (Job, bool, error) {
	if !o.State.Terminal() {
		return Job{}, false, fmt.Errorf("finish job %d: %s is not a terminal state", id, o.State)
	}
	var j Job
	finished := false
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if j, err = lockJob(ctx, tx, id); err != nil {
			return err
		}
		if j.State.Terminal() {
			return nil
		}
		if legacy != nil {
			if err := legacy(ctx, tx, j); err != nil {
				return err
			}
		}
		j, err = finishTx(ctx, tx, j, o, s.clock())
		finished = err == nil
		return err
	})
	if err != nil {
		return Job{}, false, err
	}
	if finished {
		s.afterTerminal(ctx, j)
	}
	return j, finished, nil
}

func finishTx(ctx context.Context, tx pgx.Tx, j Job, o Outcome, now time.Time) (Job, error) {
	var result []byte
	if o.Result != nil {
		b, err := json.Marshal(o.Result)
		if err != nil {
			return Job{}, fmt.Errorf("encode result of job %d: %w", j.ID, err)
		}
		result = b
	}
	if len(o.Error) > 4000 {
		o.Error = o.Error[:4000]
	}
	out, err := scanJob(tx.QueryRow(ctx, `
UPDATE jobs SET state = $2::text, result = $3, error = NULLIF($4::text, ''), finished_at = $5,
       progress = CASE WHEN $2::text = 'COMPLETED' THEN 1 ELSE progress END, stage = lower($2::text), seq = seq + 1
WHERE id = $1 RETURNING `+jobColumns, j.ID, string(o.State), result, o.Error, now))
	if err != nil {
		return Job{}, fmt.Errorf("finish job %d as %s: %w", j.ID, o.State, err)
	}
	if err := setLegacyState(ctx, tx, out, o.State); err != nil {
		return Job{}, err
	}
	return out, nil
}

// afterTerminal publishes the terminal event and refunds failed and
// canceled jobs.
func (s *Store) afterTerminal(ctx context.Context, j Job) {
	s.publish(ctx, j, EventState)
	if j.State == StateError || j.State == StateCanceled {
		s.refund(ctx, j)
	}
	s.log.Info("job finished", zap.Int64("job_id", j.ID), zap.String("kind", string(j.Kind)),
		zap.String("state", string(j.State)), zap.String("reason", j.Error))
}

// refund gives back the job's debit, if one was made (the debit is keyed
// by DebitKey, so an uncharged job has nothing to refund). Failures are
// logged; Claim retries them on a re-run.
func (s *Store) refund(ctx context.Context, j Job) {
	if s.ledger == nil {
		return
	}
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	r, err := s.ledger.RefundByKey(rctx, j.UserID, j.DebitKey)
	switch {
	case apperr.Is(err, apperr.KindNotFound):
	case err != nil:
		s.log.Error("refund of job failed", zap.Int64("job_id", j.ID), zap.Error(err))
	case !r.Replayed:
		s.log.Info("job refunded", zap.Int64("job_id", j.ID), zap.Int64("credits", r.Amount))
	}
}

// Cancel cancels the user's job: a QUEUED job becomes CANCELED at once
// (and its River job is cancelled); a PROCESSING job is flagged, and its
// worker stops at the next step and then ends it CANCELED. Either way the
// credits of work not done are refunded. A job that has finished is a 409.
func (s *Store) Cancel(ctx context.Context, userID int64, publicID string) (Job, error) {
	j, err := s.GetForUser(ctx, userID, publicID)
	if err != nil {
		return Job{}, err
	}
	terminal := false
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if j, err = lockJob(ctx, tx, j.ID); err != nil {
			return err
		}
		switch j.State {
		case StateQueued:
			if j, err = finishTx(ctx, tx, j, Outcome{State: StateCanceled, Error: "canceled"}, s.clock()); err != nil {
				return err
			}
			terminal = true
		case StateProcessing:
			if j.CancelRequested {
				return nil
			}
			j, err = scanJob(tx.QueryRow(ctx, `
UPDATE jobs SET cancel_requested = true, stage = 'canceling', seq = seq + 1 WHERE id = $1 RETURNING `+jobColumns, j.ID))
			if err != nil {
				return fmt.Errorf("request cancel of job %d: %w", j.ID, err)
			}
		default:
			return apperr.Conflict("Job already finished").WithField("state", string(j.State))
		}
		if j.RiverJobID != 0 && s.river != nil {
			// For a running job River also cancels the worker's context.
			if _, err := s.river.JobCancelTx(ctx, tx, j.RiverJobID); err != nil && !errors.Is(err, river.ErrNotFound) {
				return fmt.Errorf("cancel river job %d: %w", j.RiverJobID, err)
			}
		}
		return nil
	})
	if err != nil {
		return Job{}, err
	}
	if terminal {
		s.afterTerminal(ctx, j)
	} else {
		s.publish(ctx, j, EventState)
	}
	return j, nil
}

// Rescued lists what RescueStale did.
type Rescued struct {
	// Retried are jobs whose worker died; River runs them again.
	Retried []Job
	// Failed are jobs that ended ERROR or CANCELED because their worker
	// died on the last attempt or River gave them up; the caller sends
	// their failure notifications.
	Failed []Job
}

// RescueStale finds jobs left behind by dead workers and either retries
// or fails them, so that no job stays PROCESSING (or QUEUED) forever:
//
//   - PROCESSING jobs whose heartbeat is older than HeartbeatTimeout and
//     whose River job is still running: the River job is rescued (made
//     available again, or discarded when its attempts are used up);
//   - active jobs whose River job was discarded, cancelled or deleted
//     (River's own rescuer, an operator): ended ERROR (or CANCELED when a
//     cancel was requested) and refunded.
//
// Every gpusvc may run it concurrently: each change is guarded.
func (s *Store) RescueStale(ctx context.Context) (Rescued, error) {
	var out Rescued
	now := s.clock()
	horizon := now.Add(-s.cfg.HeartbeatTimeout)
	rows, err := s.pool.Query(ctx, `
SELECT j.id, r.attempt, r.max_attempts FROM jobs j JOIN river_job r ON r.id = j.river_job_id
WHERE j.state = 'PROCESSING' AND j.heartbeat_at < $1 AND r.state = 'running' AND r.attempted_at < $1
LIMIT 100`, horizon)
	if err != nil {
		return out, fmt.Errorf("find stale jobs: %w", err)
	}
	type stale struct {
		id                  int64
		attempt, maxAttempt int
	}
	var list []stale
	for rows.Next() {
		var st stale
		if err := rows.Scan(&st.id, &st.attempt, &st.maxAttempt); err != nil {
			rows.Close()
			return out, fmt.Errorf("find stale jobs: %w", err)
		}
		list = append(list, st)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("find stale jobs: %w", err)
	}
	for _, st := range list {
		j, err := s.Get(ctx, st.id)
		if err != nil {
			return out, err
		}
		state := rivertype.JobStateAvailable
		var finalized *time.Time
		if st.attempt >= st.maxAttempt {
			state, finalized = rivertype.JobStateDiscarded, &now
		}
		errData, _ := json.Marshal(rivertype.AttemptError{At: now, Attempt: st.attempt,
			Error: "worker stopped heartbeating; job rescued"})
		_, err = s.river.Driver().GetExecutor().JobRescueMany(ctx, &riverdriver.JobRescueManyParams{
			ID: []int64{j.RiverJobID}, Error: [][]byte{errData}, FinalizedAt: []*time.Time{finalized},
			ScheduledAt: []time.Time{now}, State: []string{string(state)}, StuckHorizon: horizon,
			Schema: s.river.Schema(),
		})
		if err != nil {
			return out, fmt.Errorf("rescue river job %d: %w", j.RiverJobID, err)
		}
		if state == rivertype.JobStateDiscarded {
			continue // ended below, with the other given-up jobs
		}
		j, err = scanJob(s.pool.QueryRow(ctx, `
UPDATE jobs SET heartbeat_at = $2, stage = 'retrying', seq = seq + 1 WHERE id = $1 AND state = 'PROCESSING' RETURNING `+jobColumns,
			j.ID, now))
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("mark job %d retrying: %w", st.id, err)
		}
		s.publish(ctx, j, EventState)
		out.Retried = append(out.Retried, j)
		s.log.Warn("job rescued from a dead worker", zap.Int64("job_id", j.ID), zap.Int("attempt", st.attempt))
	}

	rows, err = s.pool.Query(ctx, `
SELECT j.id, COALESCE(r.state::text, 'missing'), COALESCE(r.errors[array_length(r.errors, 1)]->>'error', '')
FROM jobs j LEFT JOIN river_job r ON r.id = j.river_job_id
WHERE j.state IN ('QUEUED', 'PROCESSING') AND j.river_job_id IS NOT NULL
  AND (r.id IS NULL OR r.state IN ('discarded', 'cancelled', 'completed'))
LIMIT 100`)
	if err != nil {
		return out, fmt.Errorf("find abandoned jobs: %w", err)
	}
	type abandoned struct {
		id           int64
		state, cause string
	}
	var gone []abandoned
	for rows.Next() {
		var a abandoned
		if err := rows.Scan(&a.id, &a.state, &a.cause); err != nil {
			rows.Close()
			return out, fmt.Errorf("find abandoned jobs: %w", err)
		}
		gone = append(gone, a)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return out, fmt.Errorf("find abandoned jobs: %w", err)
	}
	for _, a := range gone {
		j, err := s.Get(ctx, a.id)
		if err != nil {
			return out, err
		}
		o := Outcome{State: StateError, Error: "the job was abandoned by its worker"}
		if a.cause != "" {
			o.Error += ": " + a.cause
		}
		if j.CancelRequested || a.state == "cancelled" {
			o = Outcome{State: StateCanceled, Error: "canceled"}
		}
		j, finished, err := s.Finish(ctx, j.ID, o, nil)
		if err != nil {
			return out, err
		}
		if finished {
			out.Failed = append(out.Failed, j)
		}
	}
	return out, nil
}
