package jobs

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// Fair sharing of the workers (JOB_FAIRNESS=fair) is start-time fair
// queueing by user on top of River's own fetch order. River hands out
// available jobs by (priority, scheduled_at, id); every job gets, when it
// is enqueued, a tag
//
//	start  = max(V, the user's last finish tag)
//	finish = start + work
//
// where work is the job's work units (one image sample, one second of
// audio or of video; a 4-sample job counts 4) and V is the virtual time:
// the smallest tag of an active (QUEUED or PROCESSING) job, or, when none
// is active, the largest finish tag given so far. The tag goes into the
// River job's scheduled_at, mapped into the past (FairOrigin + start
// seconds), so the job is available at once and River's scheduled_at order
// is the fair order. A user with 200 queued jobs therefore holds tags V,
// V+1, …, V+199, and a second user's single job gets tag V: it is the
// next job any free worker fetches.
//
// The tags are stored with the job (jobs.fair_at, jobs.fair_work), so V
// and every user's last finish tag are read back from PostgreSQL: they
// survive restarts and are the same on every host, without a lock beyond
// the per-user advisory lock Enqueue already takes.
//
// A job that River retries or snoozes (the user already runs
// MaxRunningPerUser jobs) gets a scheduled_at near the present, behind
// every tagged job: it yields to the other users' waiting jobs, which is
// the point of the cap.

// FairOrigin is the scheduled_at of tag 0; a tag of t work units maps to
// FairOrigin + t seconds, which stays in the past for 8·10⁸ units.
var FairOrigin = time.Date(2000, time.January, 1, 0, 0, 0, 0, time.UTC)

// FairScheduledAt maps a fair tag (in work units) to River's scheduled_at.
func FairScheduledAt(tag float64) time.Time {
	return FairOrigin.Add(time.Duration(math.Round(tag * float64(time.Second))))
}

// fairWork is the weight of a new job: n.Work, else its units, at least 1.
func fairWork(n NewJob) float64 {
	if n.Work > 0 {
		return n.Work
	}
	return float64(max(n.Units, 1))
}

// fairTag returns the start tag of a new job of the user in tx, which
// must hold the user's advisory lock (so two jobs of one user never get
// the same tag).
func fairTag(ctx context.Context, tx pgx.Tx, userID int64) (float64, error) {
	var v, last float64
	err := tx.QueryRow(ctx, `
SELECT COALESCE(
         (SELECT min(fair_at) FROM jobs WHERE fair_at IS NOT NULL AND state IN ('QUEUED', 'PROCESSING')),
         (SELECT fair_at + fair_work FROM jobs WHERE fair_at IS NOT NULL ORDER BY fair_at DESC LIMIT 1),
         0),
       COALESCE((SELECT max(fair_at + fair_work) FROM jobs WHERE user_id = $1 AND fair_at IS NOT NULL), 0)`,
		userID).Scan(&v, &last)
	if err != nil {
		return 0, fmt.Errorf("read fair tags for user %d: %w", userID, err)
	}
	return max(v, last), nil
}

// setFairTag records the job's tag and moves its River job to the tag's
// place in River's fetch order.
func setFairTag(ctx context.Context, tx pgx.Tx, jobID, riverJobID int64, tag, work float64) error {
	if _, err := tx.Exec(ctx, `UPDATE jobs SET fair_at = $2, fair_work = $3 WHERE id = $1`, jobID, tag, work); err != nil {
		return fmt.Errorf("record fair tag of job %d: %w", jobID, err)
	}
	if _, err := tx.Exec(ctx, `UPDATE river_job SET scheduled_at = $2 WHERE id = $1 AND state = 'available'`,
		riverJobID, FairScheduledAt(tag)); err != nil {
		return fmt.Errorf("order river job %d by its fair tag: %w", riverJobID, err)
	}
	return nil
}
