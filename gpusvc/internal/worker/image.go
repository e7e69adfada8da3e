package worker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/storage"
)

type imageWorker struct {
	river.WorkerDefaults[jobs.ImageArgs]
	r *Runner
}

// Timeout is the job's own timeout, derived from its sample count.
func (w *imageWorker) Timeout(job *river.Job[jobs.ImageArgs]) time.Duration {
	return job.Args.Timeout()
}

// Work runs one async image generation.
func (w *imageWorker) Work(ctx context.Context, job *river.Job[jobs.ImageArgs]) error {
	return w.r.execute(ctx, job.JobRow, job.Args.Args, w.r.workImage)
}

// EnqueueImage queues an async image generation of a parsed and validated
// POST /images request for the user (POST /v1/images/generations). The
// request is stored with the job; its range checks run again when the job
// runs, in the same code as POST /images. A balance below the price is a
// 402 here; the debit itself happens when the job starts.
func (r *Runner) EnqueueImage(ctx context.Context, userID int64, job generate.ImageJob) (jobs.Job, error) {
	if r.opts.Generate == nil {
		return jobs.Job{}, apperr.New(apperr.KindUnsupported, "Async image generation is not available on this host")
	}
	job.UserID, job.Anonymous, job.Key = userID, false, ""
	samples := max(job.Samples, 1)
	var out jobs.Job
	err := db.InTx(ctx, r.opts.Pool, func(tx pgx.Tx) error {
		var err error
		out, err = r.store.Enqueue(ctx, tx, jobs.NewJob{UserID: userID, Kind: jobs.KindImage, Params: job,
			Op: generate.ChargeOp(job.Op), Units: samples, Timeout: r.cfg.Jobs.ImageTimeout(samples)})
		return err
	})
	return out, err
}

func (r *Runner) workImage(ctx context.Context, x *run) (jobs.Outcome, func(context.Context, pgx.Tx, jobs.Job) error, error) {
	if r.opts.Generate == nil {
		return jobs.Outcome{}, nil, apperr.New(apperr.KindUnsupported, "async image generation is not available")
	}
	var job generate.ImageJob
	if err := json.Unmarshal(x.job.Params, &job); err != nil {
		return jobs.Outcome{}, nil, permanentf("the stored request is malformed")
	}
	// The job charges (keyed by the job, so a retry or a re-run after a
	// crash replays the one debit) and the job system refunds an ERROR or
	// CANCELED job. RenderImages only renders and uploads the objects; the
	// rows are inserted in the transaction that completes the job, so the
	// images are in the library exactly when the job is COMPLETED (and
	// kept its charge): an attempt that dies, or a job that ends in
	// failure, leaves no image behind (issue 14).
	job.UserID, job.Anonymous, job.Key = x.job.UserID, false, ""
	if err := job.Validate(r.opts.Generate.Limits()); err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := x.charge(ctx, generate.ChargeOp(job.Op), job.Samples); err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := x.progress(ctx, 0.1, "generating"); err != nil {
		return jobs.Outcome{}, nil, err
	}
	staged, err := r.opts.Generate.RenderImages(ctx, job)
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	// inserted is set once the rows are in the final transaction; when
	// that transaction did not get so far, Close deletes the objects.
	inserted := false
	x.cleanup = func(ctx context.Context) { staged.Close(ctx, inserted) }
	// finishTx marshals the result after this function ran, so the ids
	// filled in here are the ones recorded.
	result := &jobs.Result{}
	store := func(ctx context.Context, tx pgx.Tx, _ jobs.Job) error {
		if err := staged.Insert(ctx, tx); err != nil {
			return err
		}
		inserted = true
		result.ImageIDs = make([]int64, len(staged.Outputs))
		for i, o := range staged.Outputs {
			result.ImageIDs[i] = o.ID
		}
		if len(staged.Outputs) > 0 {
			result.URL = r.opts.Storage.URL(storage.KindImage, storage.ImageKey(x.job.UserID, staged.Outputs[0].CDNID))
		}
		return nil
	}
	return jobs.Outcome{State: jobs.StateCompleted, Result: result}, store, nil
}
