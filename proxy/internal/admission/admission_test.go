package admission_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// fleet returns a pool of hosts that each reported slots in /health.
func fleet(tb testing.TB, hosts int, slots int64) *balancer.Pool {
	tb.Helper()
	var ups []*balancer.Upstream
	for i := range hosts {
		addr := fmt.Sprintf("http://10.0.0.%d:5000", i+1)
		u, err := url.Parse(addr)
		require.NoError(tb, err)
		up := balancer.NewUpstream(int64(i+1), addr, u)
		up.SetCheck(balancer.CheckResult{At: time.Now(), Slots: slots}, true)
		learnSpeed(up, time.Second)
		ups = append(ups, up)
	}
	return balancer.NewPool(ups)
}

// learnSpeed teaches up that one work unit takes perUnit, as a finished
// request would.
func learnSpeed(up *balancer.Upstream, perUnit time.Duration) {
	start := time.Now()
	up.Start(1, start).Done(start.Add(perUnit), true)
}

// newController returns a controller over pool with cfg, without Redis.
func newController(tb testing.TB, cfg admission.Config, pool *balancer.Pool) *admission.Controller {
	tb.Helper()
	c, err := admission.New(cfg, admission.Deps{Pool: pool})
	require.NoError(tb, err)
	return c
}

// from returns a request of the anonymous client at ip.
func from(ip string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/images", nil)
	r.RemoteAddr = net.JoinHostPort(ip, "40000")
	return r
}

// admitNow admits a request that must not wait.
func admitNow(tb testing.TB, c *admission.Controller, ip string, work float64) admission.Ticket {
	tb.Helper()
	t, err := c.Admit(context.Background(), from(ip), work)
	require.NoError(tb, err)
	require.False(tb, t.Waited)
	return t
}

// result is the outcome of a queued Admit.
type result struct {
	who    string
	ticket admission.Ticket
	err    error
}

// queueUp starts an Admit that will wait, and returns once the queue holds
// it (so arrival order is fixed).
func queueUp(tb testing.TB, ctx context.Context, c *admission.Controller, ip string, work float64, out chan<- result) {
	tb.Helper()
	before := c.Snapshot().Waiting
	go func() {
		t, err := c.Admit(ctx, from(ip), work)
		out <- result{who: ip, ticket: t, err: err}
	}()
	require.Eventually(tb, func() bool { return c.Snapshot().Waiting == before+1 }, 5*time.Second, time.Millisecond)
}

func next(tb testing.TB, out <-chan result) result {
	tb.Helper()
	select {
	case r := <-out:
		return r
	case <-time.After(5 * time.Second):
		tb.Fatal("no request was admitted")
		return result{}
	}
}

const (
	heavy = "192.0.2.1"
	light = "192.0.2.2"
	third = "192.0.2.3"
)

func TestHeavyBacklogDoesNotDelayLightUser(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		policy string
		first  string
	}{
		{admission.PolicyFair, light},
		{admission.PolicyFIFO, heavy},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			t.Parallel()
			// Share 1: this test is about the order alone, not the cap.
			c := newController(t, admission.Config{Policy: tc.policy, UserShare: 1, MaxWait: time.Minute}, fleet(t, 1, 2))
			t1 := admitNow(t, c, heavy, 1)
			admitNow(t, c, heavy, 1)
			out := make(chan result, 32)
			for range 20 {
				queueUp(t, t.Context(), c, heavy, 1, out)
			}
			queueUp(t, t.Context(), c, light, 1, out)
			t1.Done()
			r := next(t, out)
			require.NoError(t, r.err)
			require.Equal(t, tc.first, r.who)
			require.True(t, r.ticket.Waited)
			require.Equal(t, 1, r.ticket.Position, "it was told it is next")
		})
	}
}

// serveInTurn releases running, then each request admitted after it, n
// times, and returns who was admitted in order.
func serveInTurn(tb testing.TB, running admission.Ticket, out <-chan result, n int) []string {
	tb.Helper()
	var order []string
	for range n {
		running.Done()
		r := next(tb, out)
		require.NoError(tb, r.err)
		order = append(order, r.who)
		running = r.ticket
	}
	running.Done()
	return order
}

func TestWorkUnitsWeighTheOrder(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{UserShare: 1, MaxWait: time.Minute}, fleet(t, 1, 1))
	running := admitNow(t, c, third, 1)
	out := make(chan result, 32)
	for range 2 {
		queueUp(t, t.Context(), c, heavy, 4, out) // 4-sample requests
	}
	for range 8 {
		queueUp(t, t.Context(), c, light, 1, out) // 1-sample requests
	}
	H, L := heavy, light
	require.Equal(t, []string{H, L, L, L, L, H, L, L, L, L}, serveInTurn(t, running, out, 10),
		"one 4-unit request per four 1-unit ones")
}

func TestFIFOPolicyServesInArrivalOrder(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{Policy: admission.PolicyFIFO, MaxWait: time.Minute}, fleet(t, 1, 1))
	running := admitNow(t, c, heavy, 1)
	out := make(chan result, 32)
	want := []string{heavy, heavy, light, heavy, third, light}
	for _, ip := range want {
		queueUp(t, t.Context(), c, ip, 1, out)
	}
	require.Equal(t, want, serveInTurn(t, running, out, len(want)))
}

func TestLoneUserGetsEverySlot(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{UserShare: 0.5, MaxWait: time.Minute}, fleet(t, 2, 2))
	var tickets []admission.Ticket
	for range 4 {
		tickets = append(tickets, admitNow(t, c, heavy, 1))
	}
	require.Equal(t, 4, c.Snapshot().InFlight, "the cap (2 of 4 slots) does not apply to a lone user")
	out := make(chan result, 4)
	queueUp(t, t.Context(), c, heavy, 1, out)
	tickets[0].Done()
	r := next(t, out)
	require.NoError(t, r.err)
	require.Equal(t, 4, c.Snapshot().InFlight, "the freed slot went to the lone user's next request")

	// With another user waiting, the cap holds: the heavy user (4 in
	// flight, cap 2) is passed over for the light one.
	queueUp(t, t.Context(), c, heavy, 1, out)
	queueUp(t, t.Context(), c, light, 1, out)
	tickets[1].Done()
	r = next(t, out)
	require.Equal(t, light, r.who)
}

func TestEstimatePastDeadlineIsRefusedAtOnce(t *testing.T) {
	t.Parallel()
	// One slot at a learned 1 s per unit; MaxWait 2 s.
	c := newController(t, admission.Config{MaxWait: 2 * time.Second}, fleet(t, 1, 1))
	admitNow(t, c, heavy, 4)
	out := make(chan result, 1)
	queueUp(t, t.Context(), c, heavy, 1, out) // estimated start 2 s: may wait
	began := time.Now()
	// The same user's next request queues behind its first.
	_, err := c.Admit(t.Context(), from(heavy), 1)
	took := time.Since(began)
	var refusal *admission.Refusal
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, admission.ReasonDeadline, refusal.Reason)
	require.Less(t, took, 100*time.Millisecond, "refused without waiting")
	require.Equal(t, 2, refusal.Position)
	require.InDelta(t, 3.0, refusal.EstimatedStart.Seconds(), 0.01, "1 unit queued ahead + half the 4 running, at 1 unit/s")
	require.Equal(t, time.Second, refusal.RetryAfter)
	require.Contains(t, refusal.Message, "estimated start in 3.0 s is past the 2.0 s wait limit")
	h := http.Header{}
	refusal.Headers(h)
	require.Equal(t, "2", h.Get(admission.HeaderPosition))
	require.Equal(t, "3.0", h.Get(admission.HeaderEstimatedStart))
	require.Equal(t, "1", h.Get("Retry-After"))
}

func TestNoEstimateBeforeAnySpeedIsLearned(t *testing.T) {
	t.Parallel()
	u, err := url.Parse("http://10.0.0.1:5000")
	require.NoError(t, err)
	up := balancer.NewUpstream(1, u.String(), u)
	up.SetCheck(balancer.CheckResult{At: time.Now(), Slots: 1}, true)
	c := newController(t, admission.Config{MaxWait: time.Second}, balancer.NewPool([]*balancer.Upstream{up}))
	admitNow(t, c, heavy, 100)
	out := make(chan result, 1)
	// 100 units at an assumed speed would be refused; the speed is
	// unknown, so the request may wait.
	queueUp(t, t.Context(), c, light, 1, out)
}

func TestWaitEndsAtMaxWait(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{MaxWait: 300 * time.Millisecond}, fleet(t, 1, 1))
	// Nothing learned and little running: the estimate lets it wait.
	admitNow(t, c, heavy, 0.1)
	began := time.Now()
	_, err := c.Admit(t.Context(), from(light), 0.1)
	var refusal *admission.Refusal
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, admission.ReasonTimeout, refusal.Reason)
	require.GreaterOrEqual(t, time.Since(began), 300*time.Millisecond)
	require.Zero(t, c.Snapshot().Waiting)
}

func TestQueueMaxRefusesTheNextWaiter(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{QueueMax: 2, MaxWait: time.Minute}, fleet(t, 1, 1))
	admitNow(t, c, heavy, 1)
	out := make(chan result, 2)
	queueUp(t, t.Context(), c, heavy, 1, out)
	queueUp(t, t.Context(), c, light, 1, out)
	_, err := c.Admit(t.Context(), from(third), 1)
	var refusal *admission.Refusal
	require.ErrorAs(t, err, &refusal)
	require.Equal(t, admission.ReasonQueueFull, refusal.Reason)
	require.Equal(t, 2, c.Snapshot().Waiting)
}

func TestCancelledClientLeavesTheQueue(t *testing.T) {
	t.Parallel()
	c := newController(t, admission.Config{MaxWait: time.Minute}, fleet(t, 1, 1))
	running := admitNow(t, c, third, 1)
	ctx, cancel := context.WithCancel(t.Context())
	gone := make(chan result, 1)
	queueUp(t, ctx, c, heavy, 1, gone)
	out := make(chan result, 1)
	queueUp(t, t.Context(), c, light, 1, out)
	cancel()
	r := next(t, gone)
	require.ErrorIs(t, r.err, context.Canceled)
	require.Equal(t, 1, c.Snapshot().Waiting, "the cancelled request left the queue")
	running.Done()
	r = next(t, out)
	require.NoError(t, r.err)
	require.Equal(t, light, r.who, "the slot went to the request still waiting")
	require.Equal(t, 1, c.Snapshot().InFlight, "the cancelled request holds no slot")
}

func TestUserKeyFromJWT(t *testing.T) {
	t.Parallel()
	secret := []byte("admission-test-secret-0123456789")
	c, err := admission.New(admission.Config{JWTSecrets: [][]byte{secret}}, admission.Deps{Pool: fleet(t, 1, 2)})
	require.NoError(t, err)
	tok, _, err := auth.Issue(secret, 42, 0, time.Hour, time.Now())
	require.NoError(t, err)
	r := from("2001:db8:1:2::7")
	r.Header.Set("Authorization", tok)
	ticket, err := c.Admit(t.Context(), r, 1)
	require.NoError(t, err)
	anon, err := c.Admit(t.Context(), from("2001:db8:1:2::8"), 1)
	require.NoError(t, err)
	_ = anon
	users := map[string]int{}
	for _, u := range c.Snapshot().Users {
		users[u.User] = u.InFlight
	}
	require.Equal(t, map[string]int{"user:42": 1, "ip:2001:db8:1:2::/64": 1}, users)
	ticket.Done()
}

func TestReplicasShareThePerUserCap(t *testing.T) {
	t.Parallel()
	rc, prefix := dbtest.Redis(t)
	cfg := admission.Config{UserShare: 0.5, MaxWait: time.Minute, RedisPrefix: prefix}
	newReplica := func(id string) *admission.Controller {
		cfg := cfg
		cfg.ReplicaID = id
		// Each replica sees a fleet of 4 slots (cap 2 per user).
		c, err := admission.New(cfg, admission.Deps{Pool: fleet(t, 2, 2), Redis: rc})
		require.NoError(t, err)
		return c
	}
	a, b := newReplica("a"), newReplica("b")

	// On replica a, the heavy user holds its share (2).
	admitNow(t, a, heavy, 1)
	admitNow(t, a, heavy, 1)
	// On replica b, a third user fills every slot, then the heavy user
	// and, after it, the light user wait.
	var bTickets []admission.Ticket
	for range 4 {
		bTickets = append(bTickets, admitNow(t, b, third, 1))
	}
	out := make(chan result, 2)
	queueUp(t, t.Context(), b, heavy, 1, out)
	queueUp(t, t.Context(), b, light, 1, out)

	a.Sync(t.Context())
	b.Sync(t.Context())
	var heavyRemote int
	for _, u := range b.Snapshot().Users {
		if u.User == "ip:"+heavy {
			heavyRemote = u.RemoteInFlight
		}
	}
	require.Equal(t, 2, heavyRemote, "b sees the heavy user's requests on a")

	bTickets[0].Done()
	r := next(t, out)
	require.Equal(t, light, r.who, "the heavy user, at its cap across replicas, is passed over")
	bTickets[1].Done()
	r = next(t, out)
	require.Equal(t, heavy, r.who, "with nobody else waiting, the heavy user gets the slot")
}

func TestRedisDownFailsOpen(t *testing.T) {
	t.Parallel()
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = dead.Close() })
	var failures []error
	c, err := admission.New(admission.Config{SyncInterval: time.Second}, admission.Deps{
		Pool: fleet(t, 1, 2), Redis: dead, Registry: prometheus.NewRegistry(),
		OnRedisError: func(err error) { failures = append(failures, err) },
	})
	require.NoError(t, err)
	admitNow(t, c, heavy, 1)
	c.Sync(t.Context())
	require.Len(t, failures, 1)
	require.False(t, errors.Is(failures[0], context.Canceled))
	admitNow(t, c, light, 1)
}

// TestFreeSlotsCountedPerHost: the balancer (EEFT) may queue a request at a
// fast busy host rather than start it on a slow idle one. The idle host's
// slot is still free, so the next request is admitted at once instead of
// waiting at the proxy while that host idles (counting the fleet's slots
// less our requests left it idle: a fleet of speeds 1, 1, 0.5, 0.25 at 80 %
// load went from p50 44 ms to 738 ms).
func TestFreeSlotsCountedPerHost(t *testing.T) {
	t.Parallel()
	pool := fleet(t, 2, 1)
	fast := pool.Hosts()[0]
	c := newController(t, admission.Config{}, pool)

	// Two requests admitted, both sent to the fast host (one runs, one
	// queues there), as the balancer chose.
	now := time.Now()
	for range 2 {
		admitNow(t, c, heavy, 1)
		fast.Start(1, now)
	}
	// The slow host's slot is free: a third request does not wait.
	admitNow(t, c, light, 1)

	// Once every host has a request, the next one waits.
	pool.Hosts()[1].Start(1, now)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan result, 1)
	queueUp(t, ctx, c, third, 1, out)
}

// queueFleet returns a pool of hosts that each reported slots and a wait
// queue of queue places in /health.
func queueFleet(tb testing.TB, hosts int, slots, queue int64) *balancer.Pool {
	tb.Helper()
	pool := fleet(tb, hosts, slots)
	for _, up := range pool.Hosts() {
		up.SetCheck(balancer.CheckResult{At: time.Now(), Slots: slots, QueueSize: queue}, true)
	}
	return pool
}

// TestIdleUserGoesToTheHostQueue: while a heavy user's requests wait for
// the fleet's slots, a user with nothing running does not wait behind the
// next slot release here and then again at the host (where an async job
// takes the slot first): their request goes at once into a host's own
// fair queue, while it has room. Their second request, and every request
// under FIFO, waits as before; so do idle users once the host queues are
// taken, until a place frees.
func TestIdleUserGoesToTheHostQueue(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := newController(t, admission.Config{UserShare: 1, MaxWait: time.Minute}, queueFleet(t, 1, 1, 1))
	h1 := admitNow(t, c, heavy, 1)
	out := make(chan result, 4)
	queueUp(t, ctx, c, heavy, 1, out)

	l1 := admitNow(t, c, light, 1) // idle, and the host queue has a place
	queueUp(t, ctx, c, light, 1, out)
	queueUp(t, ctx, c, third, 1, out) // idle, but the host queue is taken
	require.Equal(t, 3, c.Snapshot().Waiting)

	// The light user's first request ends: its host-queue place goes to
	// the idle third user, not to the heavy or light user's next request.
	l1.Done()
	r := next(t, out)
	require.Equal(t, third, r.who)
	require.NoError(t, r.err)
	require.True(t, r.ticket.Waited)
	select {
	case r := <-out:
		t.Fatalf("%s was admitted with no slot free", r.who)
	case <-time.After(50 * time.Millisecond):
	}

	// The slot frees: the heavy user's request (equal tags: each user had
	// one served, and it came first), then the light one's.
	h1.Done()
	require.Equal(t, heavy, next(t, out).who)
	r.ticket.Done()
	require.Equal(t, light, next(t, out).who)

	// FIFO is today's order: an idle user waits like everyone else.
	f := newController(t, admission.Config{Policy: admission.PolicyFIFO, MaxWait: time.Minute}, queueFleet(t, 1, 1, 1))
	admitNow(t, f, heavy, 1)
	queueUp(t, ctx, f, heavy, 1, out)
	queueUp(t, ctx, f, light, 1, out)
	require.Equal(t, 2, f.Snapshot().Waiting)
}
