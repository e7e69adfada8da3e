package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
)

// builtinBackend is the name of the built-in backend, whose extensions
// keep the parent's key and tempo by reusing its tune prompt and seed.
const builtinBackend = "nouns"

// stemNamespace derives the cdn_ids of split stems from the job, so a
// re-run writes the same objects and finds the same rows.
var stemNamespace = uuid.MustParse("6f1c2b7e-36a1-4d0b-9a55-2b8d4f0c9e11")

type audioWorker struct {
	river.WorkerDefaults[jobs.AudioArgs]
	r *Runner
}

// Timeout is the job's own timeout, derived from its size at enqueue.
func (w *audioWorker) Timeout(job *river.Job[jobs.AudioArgs]) time.Duration {
	return job.Args.Timeout()
}

// Work runs one audio job.
func (w *audioWorker) Work(ctx context.Context, job *river.Job[jobs.AudioArgs]) error {
	return w.r.execute(ctx, job.JobRow, job.Args.Args, w.r.workAudio)
}

// audioRow is the part of an audio row a job reads.
type audioRow struct {
	ID       int64
	UserID   int64
	Name     string
	CDNID    string
	Metadata json.RawMessage
}

func (r *Runner) loadAudio(ctx context.Context, id int64) (audioRow, error) {
	a, err := library.LoadAudio(ctx, r.opts.Pool, id)
	if errors.Is(err, library.ErrAudioNotFound) {
		return audioRow{}, permanentf("audio %d not found", id)
	}
	if err != nil {
		return audioRow{}, err
	}
	return audioRow{ID: a.ID, UserID: a.UserID, Name: a.Name, CDNID: a.CDNID, Metadata: a.Metadata}, nil
}

// ownedAudio returns the user's audio row id and its bytes; another user's
// row is "not found" (legacy: the cron re-checked ownership).
func (r *Runner) ownedAudio(ctx context.Context, userID, id int64, what string) (audioRow, []byte, error) {
	a, err := r.loadAudio(ctx, id)
	if err != nil || a.UserID != userID {
		return audioRow{}, nil, permanentf("%s audio %d not found", what, id)
	}
	data, err := r.opts.Storage.Get(ctx, storage.KindAudio, storage.AudioKey(a.UserID, a.CDNID))
	if errors.Is(err, storage.ErrNotFound) {
		return audioRow{}, nil, permanentf("%s audio %d has no stored file", what, id)
	}
	if err != nil {
		return audioRow{}, nil, fmt.Errorf("download %s audio %d: %w", what, id, err)
	}
	return a, data, nil
}

func (r *Runner) workAudio(ctx context.Context, x *run) (jobs.Outcome, func(context.Context, pgx.Tx, jobs.Job) error, error) {
	row, err := r.loadAudio(ctx, x.job.AudioID)
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	var meta jobs.AudioMetadata
	if err := json.Unmarshal(row.Metadata, &meta); err != nil {
		return jobs.Outcome{}, nil, permanentf("the audio metadata is malformed")
	}
	op := inference.Op(meta.Op())
	if !r.opts.Backend.Supports(op) {
		return jobs.Outcome{}, nil, inference.Unsupported(r.opts.Backend.Name(), op)
	}
	secs := r.cfg.Jobs.AudioDuration
	req := inference.AudioRequest{Op: op, Prompt: meta.Prompt, DurationSec: float64(secs)}
	if meta.Seed != nil {
		req.Seed = *meta.Seed
	}
	tunePrompt := meta.Prompt
	update := map[string]any{}
	var parent audioRow
	switch op {
	case inference.OpAudioMelody:
		id, _ := meta.Melody()
		if _, req.Melody, err = r.ownedAudio(ctx, row.UserID, id, "melody"); err != nil {
			return jobs.Outcome{}, nil, err
		}
		// Legacy C18: these were set only in memory.
		update["mode"], update["parent_id"] = "melody to audio", id
	case inference.OpAudioExtend, inference.OpAudioSplit:
		id, ok := meta.Parent()
		if !ok {
			return jobs.Outcome{}, nil, permanentf("the audio has no parent_id")
		}
		if parent, req.Parent, err = r.ownedAudio(ctx, row.UserID, id, "parent"); err != nil {
			return jobs.Outcome{}, nil, err
		}
		var pm jobs.AudioMetadata
		_ = json.Unmarshal(parent.Metadata, &pm)
		if op == inference.OpAudioExtend && r.opts.Backend.Name() == builtinBackend {
			// The built-in synthesiser derives key and tempo from prompt
			// and seed: use the parent's, so the continuation matches.
			req.Prompt = pm.Prompt
			if pm.TunePrompt != "" {
				req.Prompt = pm.TunePrompt
			}
			req.Seed = 0
			if pm.Seed != nil {
				req.Seed = *pm.Seed
			}
			tunePrompt = req.Prompt
		}
	}
	if err := x.charge(ctx, credits.OpAudio, secs); err != nil {
		return jobs.Outcome{}, nil, err
	}
	if err := x.progress(ctx, 0.1, "generating"); err != nil {
		return jobs.Outcome{}, nil, err
	}
	var res inference.AudioResult
	err = x.onGPU(ctx, float64(secs), func() (err error) {
		res, err = r.opts.Backend.Audio(ctx, req)
		return err
	})
	if err != nil {
		return jobs.Outcome{}, nil, err
	}
	if len(res.Tracks) == 0 || len(res.Tracks[0]) == 0 {
		return jobs.Outcome{}, nil, errors.New("the backend returned no audio")
	}
	if err := x.progress(ctx, 0.8, "uploading"); err != nil {
		return jobs.Outcome{}, nil, err
	}

	if op != inference.OpAudioSplit {
		key := storage.AudioKey(row.UserID, row.CDNID)
		if err := r.opts.Storage.Put(ctx, storage.KindAudio, key, res.Tracks[0]); err != nil {
			return jobs.Outcome{}, nil, err
		}
		update["seed"], update["tune_prompt"] = req.Seed, tunePrompt
		size := len(res.Tracks[0])
		legacy := func(ctx context.Context, tx pgx.Tx, _ jobs.Job) error {
			return updateAudioRow(ctx, tx, row.ID, nil, size, update)
		}
		return jobs.Outcome{State: jobs.StateCompleted, Result: jobs.Result{AudioIDs: []int64{row.ID},
			URL: r.opts.Storage.URL(storage.KindAudio, key)}}, legacy, nil
	}
	return r.finishSplit(ctx, x, row, parent, res)
}

// finishSplit stores the stems (legacy §7): the first rewrites the queued
// row, each other one becomes a COMPLETED row of its own, and the main row
// lists them all in metadata.result.
func (r *Runner) finishSplit(ctx context.Context, x *run, row, parent audioRow, res inference.AudioResult) (jobs.Outcome, func(context.Context, pgx.Tx, jobs.Job) error, error) {
	type stem struct {
		name, cdnID string
		size        int
	}
	stems := make([]stem, len(res.Tracks))
	for i, data := range res.Tracks {
		name := fmt.Sprintf("stem%d", i)
		if i < len(res.Names) && res.Names[i] != "" {
			name = res.Names[i]
		}
		cdnID := row.CDNID
		if i > 0 {
			cdnID = uuid.NewSHA1(stemNamespace, []byte(x.job.PublicID+"/"+name)).String()
		}
		if err := r.opts.Storage.Put(ctx, storage.KindAudio, storage.AudioKey(row.UserID, cdnID), data); err != nil {
			return jobs.Outcome{}, nil, err
		}
		stems[i] = stem{name: name, cdnID: cdnID, size: len(data)}
	}
	ids := []int64{row.ID}
	legacy := func(ctx context.Context, tx pgx.Tx, _ jobs.Job) error {
		type entry struct {
			ID    int64  `json:"id"`
			CDNID string `json:"cdn_id"`
			Type  string `json:"type"`
		}
		list := []entry{{row.ID, row.CDNID, stems[0].name}}
		for _, s := range stems[1:] {
			meta, _ := json.Marshal(map[string]any{"parent_id": parent.ID, "mode": "audio split", "split_main_id": row.ID})
			id, err := library.EnsureAudioStem(ctx, tx, row.UserID, s.cdnID, truncate(s.name+":::"+parent.Name, 256), s.size, meta)
			if err != nil {
				return fmt.Errorf("store stem %s of audio %d: %w", s.name, row.ID, err)
			}
			ids = append(ids, id)
			list = append(list, entry{id, s.cdnID, s.name})
		}
		name := truncate(stems[0].name+":::"+parent.Name, 256)
		return updateAudioRow(ctx, tx, row.ID, &name, stems[0].size,
			map[string]any{"parent_id": parent.ID, "mode": "audio split", "result": list})
	}
	return jobs.Outcome{State: jobs.StateCompleted, Result: &splitResult{ids: &ids,
		url: r.opts.Storage.URL(storage.KindAudio, storage.AudioKey(row.UserID, row.CDNID))}}, legacy, nil
}

// splitResult marshals the ids the legacy transaction collected (the
// stem rows get their ids inside it, before the result is written).
type splitResult struct {
	ids *[]int64
	url string
}

// MarshalJSON implements json.Marshaler.
func (s *splitResult) MarshalJSON() ([]byte, error) {
	return json.Marshal(jobs.Result{AudioIDs: *s.ids, URL: s.url})
}

// updateAudioRow writes a finished audio row's size, optional name and
// metadata changes (merged into the legacy JSON object).
func updateAudioRow(ctx context.Context, tx pgx.Tx, id int64, name *string, size int, changes map[string]any) error {
	return library.FinishAudio(ctx, tx, id, name, size, changes)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
