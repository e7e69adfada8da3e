package balancer_test

import (
	"container/heap"
	"fmt"
	"math"
	"math/rand/v2"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// simJob is one request in the simulation.
type simJob struct {
	arrival time.Duration
	work    float64 // estimated, as the proxy sees it
	actual  float64 // true work: the estimate with ±15 % noise
}

// simBodies is the request mix: generation bodies as the frontend sends
// them, plus the cheap GPU routes.
var simBodies = []struct {
	path, body string
	weight     int
}{
	{"/images", `{"inference_mode":"Text to Image","samples":1,"steps":25,"aspect_ratio":"512:512"}`, 4},
	{"/images", `{"inference_mode":"Text to Image","samples":4,"steps":25,"aspect_ratio":"768:768"}`, 2},
	{"/images", `{"inference_mode":"Text to Image","samples":"2","steps":"40","aspect_ratio":"512:768"}`, 2},
	{"/images", `{"inference_mode":"Image to Image","samples":2,"steps":30,"strength":0.6}`, 2},
	{"/images", `{"inference_mode":"ControlNet Depth","steps":25}`, 1},
	{"/v1/images/generations", `{"n":1,"size":"1024x1024"}`, 1},
	{"/extend_prompt", `{"prompt":"a noun"}`, 2},
	{"/upscale", `{"base_64":"..."}`, 1},
}

// arrivals draws n jobs with Poisson arrivals at the given load (fraction of
// the hosts' total speed), deterministically from seed.
func arrivals(tb testing.TB, n int, load float64, speeds []float64, seed uint64) []simJob {
	tb.Helper()
	rng := rand.New(rand.NewPCG(seed, 1))
	var works []float64
	for _, b := range simBodies {
		w := balancer.EstimatePrefix(gpuroute.Lookup("POST", b.path), []byte(b.body), true)
		require.Positive(tb, w)
		for range b.weight {
			works = append(works, w)
		}
	}
	mean := 0.0
	for _, w := range works {
		mean += w
	}
	mean /= float64(len(works))
	capacity := 0.0
	for _, s := range speeds {
		capacity += s
	}
	rate := load * capacity / mean // jobs per second
	jobs := make([]simJob, n)
	t := 0.0
	for i := range jobs {
		t += rng.ExpFloat64() / rate
		w := works[rng.IntN(len(works))]
		jobs[i] = simJob{
			arrival: time.Duration(t * float64(time.Second)),
			work:    w,
			actual:  w * (0.85 + 0.3*rng.Float64()),
		}
	}
	return jobs
}

// event is a completion on a host.
type event struct {
	at   time.Duration
	host int
}

type eventQueue []event

func (q eventQueue) Len() int           { return len(q) }
func (q eventQueue) Less(i, j int) bool { return q[i].at < q[j].at }
func (q eventQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)        { *q = append(*q, x.(event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

// simResult summarises one simulation run.
type simResult struct {
	p50, p99, max time.Duration
	upstreams     []*balancer.Upstream
}

// simulate runs jobs through one-slot FIFO hosts of the given speeds (work
// units per second), placing each with sel under a virtual clock, and
// returns the latency percentiles.
func simulate(tb testing.TB, sel balancer.Selector, speeds []float64, jobs []simJob) simResult {
	tb.Helper()
	epoch := time.Unix(1_700_000_000, 0)
	ups := make([]*balancer.Upstream, len(speeds))
	for i := range ups {
		addr := fmt.Sprintf("http://10.0.0.%d:5000", i+1)
		u, err := url.Parse(addr)
		require.NoError(tb, err)
		ups[i] = balancer.NewUpstream(int64(i+1), addr, u)
	}
	type queued struct {
		job    simJob
		ticket balancer.Ticket
	}
	queues := make([][]queued, len(speeds))
	busy := make([]bool, len(speeds))
	var events eventQueue
	latencies := make([]time.Duration, 0, len(jobs))

	startNext := func(h int, now time.Duration) {
		if len(queues[h]) == 0 {
			busy[h] = false
			return
		}
		busy[h] = true
		service := queues[h][0].job.actual / speeds[h]
		heap.Push(&events, event{at: now + time.Duration(service*float64(time.Second)), host: h})
	}
	complete := func(e event) {
		q := queues[e.host][0]
		queues[e.host] = queues[e.host][1:]
		q.ticket.Done(epoch.Add(e.at), true)
		latencies = append(latencies, e.at-q.job.arrival)
		startNext(e.host, e.at)
	}
	index := make(map[*balancer.Upstream]int, len(ups))
	for i, u := range ups {
		index[u] = i
	}
	for _, j := range jobs {
		for len(events) > 0 && events[0].at <= j.arrival {
			complete(heap.Pop(&events).(event))
		}
		now := epoch.Add(j.arrival)
		u := sel.Select(ups, balancer.Job{Work: j.work}, now, nil)
		require.NotNil(tb, u)
		h := index[u]
		queues[h] = append(queues[h], queued{job: j, ticket: u.Start(j.work, now)})
		if !busy[h] {
			startNext(h, j.arrival)
		}
	}
	for len(events) > 0 {
		complete(heap.Pop(&events).(event))
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		return latencies[int(math.Ceil(p*float64(len(latencies))))-1]
	}
	return simResult{p50: pct(0.5), p99: pct(0.99), max: latencies[len(latencies)-1], upstreams: ups}
}

// TestSimulationPolicies compares the policies on four one-slot hosts with
// speeds 1, 1, 0.5 and 0.25 under Poisson arrivals at 80 % load, with the
// same arrival sequence for every policy. The hosts' speeds are never given
// to the balancer; EEFT must learn them.
func TestSimulationPolicies(t *testing.T) {
	t.Parallel()
	speeds := []float64{1, 1, 0.5, 0.25}
	const jobsPerRun = 20000
	seeds := []uint64{1, 2, 3}

	type row struct {
		policy   string
		p50, p99 []time.Duration
	}
	var rows []row
	for _, policy := range []string{balancer.PolicyEEFT, balancer.PolicyLeastConn, balancer.PolicyRoundRobin} {
		r := row{policy: policy}
		for _, seed := range seeds {
			sel, err := balancer.New(policy)
			require.NoError(t, err)
			res := simulate(t, sel, speeds, arrivals(t, jobsPerRun, 0.8, speeds, seed))
			r.p50 = append(r.p50, res.p50)
			r.p99 = append(r.p99, res.p99)
			if policy == balancer.PolicyEEFT {
				for i, u := range res.upstreams {
					learned := 1 / u.SecPerUnit()
					t.Logf("seed %d host %d: true speed %.2f, learned %.3f", seed, i, speeds[i], learned)
					require.InEpsilon(t, speeds[i], learned, 0.2, "host %d speed not learned", i)
				}
			}
		}
		rows = append(rows, r)
	}
	t.Logf("%-12s %s", "policy", "p50 / p99 per seed (virtual seconds)")
	for _, r := range rows {
		line := ""
		for i := range r.p50 {
			line += fmt.Sprintf("  %7.1f / %7.1f", r.p50[i].Seconds(), r.p99[i].Seconds())
		}
		t.Logf("%-12s%s", r.policy, line)
	}
	for i := range seeds {
		require.Less(t, rows[0].p99[i], rows[1].p99[i], "eeft p99 must beat least_conn (seed %d)", seeds[i])
		require.Less(t, rows[0].p99[i], rows[2].p99[i], "eeft p99 must beat round_robin (seed %d)", seeds[i])
	}
}
