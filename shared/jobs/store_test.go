package jobs_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/jobs"
)

type fixture struct {
	pool   *pgxpool.Pool
	store  *jobs.Store
	events *jobs.Events
	ledger *credits.Ledger
	reg    *jobs.Registry
}

func newFixture(t *testing.T, cfg jobs.Config) fixture {
	t.Helper()
	pool := dbtest.New(t)
	rc, prefix := dbtest.Redis(t)
	client, err := jobs.NewInsertClient(pool)
	require.NoError(t, err)
	ev := jobs.NewEvents(rc, prefix)
	ledger := credits.NewLedger(pool, credits.Options{})
	reg := jobs.NewRegistry(rc, prefix)
	st := jobs.NewStore(jobs.Options{Pool: pool, River: client, Events: ev, Ledger: ledger,
		Registry: reg, Config: cfg, Log: zap.NewNop()})
	return fixture{pool: pool, store: st, events: ev, ledger: ledger, reg: reg}
}

func (f fixture) user(t *testing.T, credit int64) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	require.NoError(t, f.pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`,
		fmt.Sprintf("u%d@example.com", time.Now().UnixNano())).Scan(&id))
	if credit > 0 {
		_, err := f.ledger.Grant(ctx, nil, credits.GrantInput{UserID: id, Amount: credit, Memo: "test"})
		require.NoError(t, err)
	}
	return id
}

// queueAudio creates a QUEUED audio row and enqueues its job in one
// transaction, as libraryapi does.
func (f fixture) queueAudio(t *testing.T, userID int64, meta string) (int64, error) {
	t.Helper()
	var id int64
	err := db.InTx(context.Background(), f.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(context.Background(), `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'generated.mp3', gen_random_uuid()::text, 0, $2::json, 'QUEUED')
RETURNING id`, userID, meta).Scan(&id); err != nil {
			return err
		}
		return f.store.OnAudioQueued(context.Background(), tx, id)
	})
	return id, err
}

func legacyState(t *testing.T, pool *pgxpool.Pool, audioID int64) string {
	t.Helper()
	var s string
	require.NoError(t, pool.QueryRow(context.Background(), `SELECT state FROM audio WHERE id = $1`, audioID).Scan(&s))
	return s
}

func TestEnqueueQueuePositionAndCap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{MaxQueuedPerUser: 2})
	u1, u2 := f.user(t, 100), f.user(t, 100)

	a1, err := f.queueAudio(t, u1, `{"prompt":"a","mode":"text to audio"}`)
	require.NoError(t, err)
	a2, err := f.queueAudio(t, u2, `{"prompt":"b","mode":"text to audio"}`)
	require.NoError(t, err)
	_, err = f.queueAudio(t, u1, `{"prompt":"c","mode":"text to audio"}`)
	require.NoError(t, err)

	// The cap: the third queued job of u1 is refused, and its row rolled back.
	var before int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM audio WHERE user_id = $1`, u1).Scan(&before))
	_, err = f.queueAudio(t, u1, `{"prompt":"d","mode":"text to audio"}`)
	require.Equal(t, apperr.KindTooManyRequests, apperr.KindOf(err))
	var after int
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT count(*) FROM audio WHERE user_id = $1`, u1).Scan(&after))
	require.Equal(t, before, after)

	j1, err := f.store.ForAudio(ctx, a1)
	require.NoError(t, err)
	require.Equal(t, jobs.StateQueued, j1.State)
	require.NotZero(t, j1.RiverJobID)
	require.Equal(t, int64(15), j1.Cost) // 15 s of audio at 1 credit/s

	pos, ok, err := f.store.AudioQueuePosition(ctx, f.pool, a2)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 2, *pos)

	// Owner check: another user's id is not found.
	_, err = f.store.GetForUser(ctx, u2, j1.PublicID)
	require.Equal(t, apperr.KindNotFound, apperr.KindOf(err))
	_, err = f.store.GetForUser(ctx, u1, "not-a-uuid")
	require.Equal(t, apperr.KindNotFound, apperr.KindOf(err))

	// Claim: PROCESSING, position 0, legacy row follows.
	j, res, err := f.store.Claim(ctx, j1.ID, 1)
	require.NoError(t, err)
	require.Equal(t, jobs.ClaimRun, res)
	require.Equal(t, jobs.StateProcessing, j.State)
	require.Equal(t, "PROCESSING", legacyState(t, f.pool, a1))
	pos, ok, err = f.store.AudioQueuePosition(ctx, f.pool, a1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 0, *pos)
	pos, _, err = f.store.AudioQueuePosition(ctx, f.pool, a2)
	require.NoError(t, err)
	require.Equal(t, 1, *pos)

	// Finish once; a second finish changes nothing.
	j, finished, err := f.store.Finish(ctx, j1.ID, jobs.Outcome{State: jobs.StateCompleted, Result: jobs.Result{AudioIDs: []int64{a1}}}, nil)
	require.NoError(t, err)
	require.True(t, finished)
	require.Equal(t, 1.0, j.Progress)
	_, finished, err = f.store.Finish(ctx, j1.ID, jobs.Outcome{State: jobs.StateError, Error: "late"}, nil)
	require.NoError(t, err)
	require.False(t, finished)
	require.Equal(t, "COMPLETED", legacyState(t, f.pool, a1))
	pos, ok, err = f.store.AudioQueuePosition(ctx, f.pool, a1)
	require.NoError(t, err)
	require.True(t, ok)
	require.Nil(t, pos)
}

func TestRunningCapMakesClaimBusy(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{MaxRunningPerUser: 1})
	u := f.user(t, 100)
	a1, err := f.queueAudio(t, u, `{"prompt":"a"}`)
	require.NoError(t, err)
	a2, err := f.queueAudio(t, u, `{"prompt":"b"}`)
	require.NoError(t, err)
	j1, _ := f.store.ForAudio(ctx, a1)
	j2, _ := f.store.ForAudio(ctx, a2)
	_, res, err := f.store.Claim(ctx, j1.ID, 1)
	require.NoError(t, err)
	require.Equal(t, jobs.ClaimRun, res)
	_, res, err = f.store.Claim(ctx, j2.ID, 1)
	require.NoError(t, err)
	require.Equal(t, jobs.ClaimBusy, res)
	// A re-run of the running job is claimed again.
	_, res, err = f.store.Claim(ctx, j1.ID, 2)
	require.NoError(t, err)
	require.Equal(t, jobs.ClaimRun, res)
}

func TestCancelQueuedAndRunningRefunds(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{})
	u := f.user(t, 100)
	a1, err := f.queueAudio(t, u, `{"prompt":"a"}`)
	require.NoError(t, err)
	a2, err := f.queueAudio(t, u, `{"prompt":"b"}`)
	require.NoError(t, err)
	j1, _ := f.store.ForAudio(ctx, a1)
	j2, _ := f.store.ForAudio(ctx, a2)

	sub, err := f.events.Subscribe(ctx, j1.PublicID)
	require.NoError(t, err)
	defer sub.Close()

	// Queued → CANCELED at once, River job cancelled too.
	c, err := f.store.Cancel(ctx, u, j1.PublicID)
	require.NoError(t, err)
	require.Equal(t, jobs.StateCanceled, c.State)
	require.Equal(t, "CANCELED", legacyState(t, f.pool, a1))
	var riverState string
	require.NoError(t, f.pool.QueryRow(ctx, `SELECT state FROM river_job WHERE id = $1`, c.RiverJobID).Scan(&riverState))
	require.Equal(t, "cancelled", riverState)
	ev, err := sub.Next(ctx)
	require.NoError(t, err)
	require.Equal(t, jobs.StateCanceled, ev.State)
	_, err = f.store.Cancel(ctx, u, j1.PublicID)
	require.Equal(t, apperr.KindConflict, apperr.KindOf(err))

	// Running and charged → flagged; the worker's next step sees it; the
	// finish refunds.
	_, _, err = f.store.Claim(ctx, j2.ID, 1)
	require.NoError(t, err)
	_, err = f.ledger.Debit(ctx, credits.DebitInput{UserID: u, Amount: j2.Cost, IdempotencyKey: j2.DebitKey, Reason: "audio"})
	require.NoError(t, err)
	bal, _ := f.ledger.Balance(ctx, u)
	require.Equal(t, int64(85), bal)
	c, err = f.store.Cancel(ctx, u, j2.PublicID)
	require.NoError(t, err)
	require.Equal(t, jobs.StateProcessing, c.State)
	require.True(t, c.CancelRequested)
	require.ErrorIs(t, f.store.Progress(ctx, j2.ID, 0.5, "generating"), jobs.ErrCanceled)
	_, finished, err := f.store.Finish(ctx, j2.ID, jobs.Outcome{State: jobs.StateCanceled, Error: "canceled"}, nil)
	require.NoError(t, err)
	require.True(t, finished)
	bal, _ = f.ledger.Balance(ctx, u)
	require.Equal(t, int64(100), bal)
}

func TestRescueStaleFailsGivenUpJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{HeartbeatTimeout: time.Second})
	u := f.user(t, 100)
	a1, err := f.queueAudio(t, u, `{"prompt":"a"}`)
	require.NoError(t, err)
	j1, _ := f.store.ForAudio(ctx, a1)
	_, _, err = f.store.Claim(ctx, j1.ID, 1)
	require.NoError(t, err)
	// Simulate River discarding the job (its rescuer gave up on it).
	_, err = f.pool.Exec(ctx, `UPDATE river_job SET state = 'discarded', finalized_at = now(),
		errors = ARRAY['{"at":"2024-01-01T00:00:00Z","attempt":1,"error":"boom","trace":""}'::jsonb] WHERE id = $1`, j1.RiverJobID)
	require.NoError(t, err)
	res, err := f.store.RescueStale(ctx)
	require.NoError(t, err)
	require.Len(t, res.Failed, 1)
	require.Equal(t, jobs.StateError, res.Failed[0].State)
	require.Contains(t, res.Failed[0].Error, "boom")
	require.Equal(t, "ERROR", legacyState(t, f.pool, a1))
}

func TestAdoptOrphans(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{})
	u := f.user(t, 0)
	var id int64
	require.NoError(t, f.pool.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, 'legacy.mp3', 'c1', 0, '{"prompt":"x"}', 'QUEUED') RETURNING id`,
		u).Scan(&id))
	n, err := f.store.AdoptOrphans(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	n, err = f.store.AdoptOrphans(ctx)
	require.NoError(t, err)
	require.Zero(t, n)
	j, err := f.store.ForAudio(ctx, id)
	require.NoError(t, err)
	require.Equal(t, jobs.StateQueued, j.State)
}

func TestUnsupportedAudioOpRefusedWhenWorkersLack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t, jobs.Config{})
	u := f.user(t, 100)
	parent, err := f.queueAudio(t, u, `{"prompt":"a"}`)
	require.NoError(t, err)
	// No worker announced yet: accepted.
	_, err = f.queueAudio(t, u, fmt.Sprintf(`{"parent_id":%d,"mode":"audio split"}`, parent))
	require.NoError(t, err)
	require.NoError(t, f.reg.Announce(ctx, "w1", []string{jobs.AudioOpText, jobs.AudioOpExtend}, time.Minute))
	_, err = f.queueAudio(t, u, fmt.Sprintf(`{"parent_id":%d,"mode":"audio split"}`, parent))
	require.Equal(t, apperr.KindUnsupported, apperr.KindOf(err))
	require.Contains(t, err.Error(), "not supported by this backend")
}

func TestPlanVideo(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, meta string
		frames     []int
		dur        float64
		err        string
	}{
		{"numbers", `{"timestamps":[0,1,2.5],"imageIds":[1,2,3]}`, []int{8, 12}, 2.5, ""},
		{"strings and offset", `{"timestamps":["1","1.1"],"imageIds":["4","5"]}`, []int{2}, 0.1, ""},
		{"cut at max duration", `{"timestamps":[0,30,61],"imageIds":[1,2,3]}`, []int{240}, 30, ""},
		{"cut to images", `{"timestamps":[0,1,2],"imageIds":[1,2]}`, []int{8}, 1, ""},
		{"too few", `{"timestamps":[0],"imageIds":[1]}`, nil, 0, "at least two keyframes"},
		{"not increasing", `{"timestamps":[0,2,1],"imageIds":[1,2,3]}`, nil, 0, "increase"},
		{"bad id", `{"timestamps":[0,1],"imageIds":[1,"x"]}`, nil, 0, "imageIds[1]"},
		{"no metadata", ``, nil, 0, "no metadata"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			p, err := jobs.PlanVideo(json.RawMessage(tc.meta), 8, 60)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				require.Equal(t, apperr.KindInvalid, apperr.KindOf(err))
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.frames, p.Frames)
			require.InDelta(t, tc.dur, p.Duration(), 1e-9)
		})
	}
}
