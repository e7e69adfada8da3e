package jobs_test

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/jobs"
)

// starts records the order in which a River worker started jobs.
type starts struct {
	mu   sync.Mutex
	ids  []int64
	cond chan struct{}
}

func (s *starts) add(id int64) {
	s.mu.Lock()
	s.ids = append(s.ids, id)
	s.mu.Unlock()
	select {
	case s.cond <- struct{}{}:
	default:
	}
}

func (s *starts) list() []int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ids)
}

// recordWorker runs image jobs the way gpusvc does (claim, work, finish),
// the work being a sleep of one service time.
type recordWorker struct {
	river.WorkerDefaults[jobs.ImageArgs]
	store   *jobs.Store
	starts  *starts
	service time.Duration
}

func (w *recordWorker) Work(ctx context.Context, job *river.Job[jobs.ImageArgs]) error {
	j, res, err := w.store.Claim(ctx, job.Args.JobID, job.Attempt)
	if err != nil {
		return err
	}
	if res == jobs.ClaimBusy {
		return river.JobSnooze(10 * time.Millisecond)
	}
	w.starts.add(j.ID)
	time.Sleep(w.service)
	_, _, err = w.store.Finish(ctx, j.ID, jobs.Outcome{State: jobs.StateCompleted, Result: &jobs.Result{}}, nil)
	return err
}

// startWorker works the queue with one worker (one GPU slot) until the
// test ends.
func startWorker(t *testing.T, pool *pgxpool.Pool, store *jobs.Store, service time.Duration) *starts {
	t.Helper()
	st := &starts{cond: make(chan struct{}, 1)}
	workers := river.NewWorkers()
	river.AddWorker(workers, &recordWorker{store: store, starts: st, service: service})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Workers: workers, Queues: map[string]river.QueueConfig{jobs.Queue: {MaxWorkers: 1}},
		FetchCooldown: 2 * time.Millisecond, FetchPollInterval: 20 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	require.NoError(t, client.Start(context.Background()))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = client.StopAndCancel(ctx)
	})
	return st
}

// enqueueImages queues n image jobs of samples samples for the user.
func enqueueImages(t *testing.T, f fixture, userID int64, n, samples int) []jobs.Job {
	t.Helper()
	out := make([]jobs.Job, 0, n)
	for range n {
		err := db.InTx(context.Background(), f.pool, func(tx pgx.Tx) error {
			j, err := f.store.Enqueue(context.Background(), tx, jobs.NewJob{UserID: userID, Kind: jobs.KindImage, Units: samples})
			out = append(out, j)
			return err
		})
		require.NoError(t, err)
	}
	return out
}

func waitStarts(t *testing.T, st *starts, n int) []int64 {
	t.Helper()
	require.Eventually(t, func() bool { return len(st.list()) >= n }, 60*time.Second, 5*time.Millisecond)
	return st.list()
}

func fairConfig(mode string) jobs.Config {
	return jobs.Config{Fairness: mode, MaxQueuedPerUser: 500, MaxRunningPerUser: 2}
}

// TestFairLightUserJumpsHeavyBacklog: user A has 200 jobs queued and the
// one worker is busy with them; user B's single job, queued afterwards,
// is the next or the one after next job the worker starts (at most one
// job's service time once the slot frees), not the 201st.
func TestFairLightUserJumpsHeavyBacklog(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fairConfig(jobs.FairnessFair))
	a, b := f.user(t, 0), f.user(t, 0)
	enqueueImages(t, f, a, 200, 1)
	st := startWorker(t, f.pool, f.store, 20*time.Millisecond)
	before := len(waitStarts(t, st, 5))

	light := enqueueImages(t, f, b, 1, 1)[0]
	got := waitStarts(t, st, before+3)
	pos := slices.Index(got, light.ID)
	require.NotEqual(t, -1, pos, "B's job started within the next few starts: %v", got)
	require.LessOrEqual(t, pos-before, 2, "B's job waited for at most the running job and one fetched before it (started %d after it was queued)", pos-before)
}

// TestFIFOKeepsArrivalOrder: with JOB_FAIRNESS=fifo the same light job
// waits behind the whole backlog (today's order).
func TestFIFOKeepsArrivalOrder(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fairConfig(jobs.FairnessFIFO))
	a, b := f.user(t, 0), f.user(t, 0)
	heavy := enqueueImages(t, f, a, 20, 1)
	light := enqueueImages(t, f, b, 1, 1)[0]
	require.Nil(t, light.FairAt, "no tag in FIFO mode")
	st := startWorker(t, f.pool, f.store, 2*time.Millisecond)
	got := waitStarts(t, st, 21)
	want := make([]int64, 0, 21)
	for _, j := range heavy {
		want = append(want, j.ID)
	}
	require.Equal(t, append(want, light.ID), got[:21])
}

// TestFairWeightsByWorkUnits: a 4-sample job counts four times a 1-sample
// job, so while both users have work queued B runs four 1-sample jobs per
// 4-sample job of A.
func TestFairWeightsByWorkUnits(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fairConfig(jobs.FairnessFair))
	a, b := f.user(t, 0), f.user(t, 0)
	heavy := enqueueImages(t, f, a, 8, 4)
	light := enqueueImages(t, f, b, 16, 1)
	for i, j := range heavy {
		require.NotNil(t, j.FairAt)
		require.InDelta(t, float64(4*i), *j.FairAt, 1e-9)
		require.InDelta(t, 4.0, j.FairWork, 1e-9)
	}
	require.InDelta(t, 15.0, *light[15].FairAt, 1e-9)

	st := startWorker(t, f.pool, f.store, 2*time.Millisecond)
	got := waitStarts(t, st, 10)[:10]
	isA := func(id int64) bool { return slices.ContainsFunc(heavy, func(j jobs.Job) bool { return j.ID == id }) }
	nA := 0
	for _, id := range got {
		if isA(id) {
			nA++
		}
	}
	require.Equal(t, 2, nA, "two 4-unit jobs of A and eight 1-unit jobs of B in the first ten starts: %v", got)
}

// TestFairTagsSurviveRestart: the tags live in PostgreSQL, so a new store
// (a restarted or another host) continues the virtual time and every
// user's last finish tag instead of starting again from zero.
func TestFairTagsSurviveRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fairConfig(jobs.FairnessFair))
	a, b := f.user(t, 0), f.user(t, 0)
	heavy := enqueueImages(t, f, a, 10, 1)

	client, err := jobs.NewInsertClient(f.pool)
	require.NoError(t, err)
	restarted := f
	restarted.store = jobs.NewStore(jobs.Options{Pool: f.pool, River: client, Config: fairConfig(jobs.FairnessFair), Log: zap.NewNop()})
	light := enqueueImages(t, restarted, b, 1, 1)[0]
	more := enqueueImages(t, restarted, a, 1, 1)[0]
	require.InDelta(t, *heavy[0].FairAt, *light.FairAt, 1e-9, "B starts at the virtual time, A's oldest queued tag")
	require.InDelta(t, 10.0, *more.FairAt, 1e-9, "A continues after its last finish tag")

	// River's fetch order follows: B's job is second, right after A's first.
	rows, err := f.pool.Query(context.Background(), `SELECT (args->>'job_id')::bigint FROM river_job
		WHERE state = 'available' ORDER BY priority, scheduled_at, id LIMIT 2`)
	require.NoError(t, err)
	order, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	require.NoError(t, err)
	require.Equal(t, []int64{heavy[0].ID, light.ID}, order)
}

// TestEnqueueBurstOnASmallPool: a burst of concurrent enqueues (a user
// queueing many async images at once) on a pool of two connections
// completes. Enqueue holds its transaction's connection and the user's
// lock; it read the balance on a second pool connection, so once the
// burst held every connection each enqueue waited for ever (gpusvc's pool
// is max(4, CPUs) connections).
func TestEnqueueBurstOnASmallPool(t *testing.T) {
	t.Parallel()
	url := dbtest.NewURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pool, err := db.Open(ctx, url, db.Options{MaxConns: 2})
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	client, err := jobs.NewInsertClient(pool)
	require.NoError(t, err)
	ledger := credits.NewLedger(pool, credits.Options{})
	f := fixture{pool: pool, ledger: ledger, store: jobs.NewStore(jobs.Options{Pool: pool, River: client, Ledger: ledger,
		Config: fairConfig(jobs.FairnessFair), Log: zap.NewNop()})}
	u := f.user(t, 1000)

	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			bctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			errs <- db.InTx(bctx, pool, func(tx pgx.Tx) error {
				_, err := f.store.Enqueue(bctx, tx, jobs.NewJob{UserID: u, Kind: jobs.KindImage, Units: 1, Op: credits.OpTxt2Img})
				return err
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
}
