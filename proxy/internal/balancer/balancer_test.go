package balancer_test

import (
	"errors"
	"fmt"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

func pool(tb testing.TB, n int) []*balancer.Upstream {
	tb.Helper()
	ups := make([]*balancer.Upstream, n)
	for i := range ups {
		addr := fmt.Sprintf("http://10.0.0.%d:5000", i+1)
		u, err := url.Parse(addr)
		require.NoError(tb, err)
		ups[i] = balancer.NewUpstream(int64(i+1), addr, u)
	}
	return ups
}

var t0 = time.Unix(1_700_000_000, 0)

func TestRoundRobin(t *testing.T) {
	t.Parallel()
	ups := pool(t, 3)
	rr := &balancer.RoundRobin{}
	seen := map[*balancer.Upstream]int{}
	for range 6 {
		seen[rr.Select(ups, balancer.Job{}, t0, nil)]++
	}
	require.Equal(t, map[*balancer.Upstream]int{ups[0]: 2, ups[1]: 2, ups[2]: 2}, seen)

	ups[1].SetDraining(true)
	ups[2].MarkRemoved()
	for range 3 {
		require.Same(t, ups[0], rr.Select(ups, balancer.Job{}, t0, nil))
	}
	ups[0].SetWeight(0)
	require.Nil(t, rr.Select(ups, balancer.Job{}, t0, nil))
	require.Nil(t, rr.Select(nil, balancer.Job{}, t0, nil))
}

func TestLeastConn(t *testing.T) {
	t.Parallel()
	ups := pool(t, 3)
	lc := &balancer.LeastConn{}
	ups[0].Start(1, t0)
	ups[0].Start(1, t0)
	ups[1].Start(1, t0)
	require.Same(t, ups[2], lc.Select(ups, balancer.Job{}, t0, nil))
	ups[2].Start(1, t0)
	ups[2].Start(1, t0)
	require.Same(t, ups[1], lc.Select(ups, balancer.Job{}, t0, nil))
	// Weight divides the load: 2 in flight at weight 4 beats 1 at weight 1.
	ups[0].SetWeight(4)
	require.Same(t, ups[0], lc.Select(ups, balancer.Job{}, t0, nil))
	// Skip excludes hosts already tried.
	require.Same(t, ups[1], lc.Select(ups, balancer.Job{}, t0, func(u *balancer.Upstream) bool { return u == ups[0] }))
}

func TestEEFTLearnsAndPrefersFastHost(t *testing.T) {
	t.Parallel()
	ups := pool(t, 2)
	e := &balancer.EEFT{}
	// Host 0 takes 1 s per unit, host 1 takes 4 s per unit.
	now := t0
	for i, spu := range []float64{1, 4} {
		tk := ups[i].Start(2, now)
		tk.Done(now.Add(time.Duration(2*spu*float64(time.Second))), true)
	}
	require.InDelta(t, 1, ups[0].SecPerUnit(), 1e-9)
	require.InDelta(t, 4, ups[1].SecPerUnit(), 1e-9)

	now = t0.Add(time.Minute)
	require.Same(t, ups[0], e.Select(ups, balancer.Job{Work: 1}, now, nil))
	// With 4 units in flight on the fast host, a 1-unit job finishes there
	// in 5 s but on the idle slow host in 4 s.
	tk := ups[0].Start(4, now)
	require.InDelta(t, 5, ups[0].ExpectedFinish(1, now, 1), 1e-9)
	require.InDelta(t, 4, ups[1].ExpectedFinish(1, now, 1), 1e-9)
	require.Same(t, ups[1], e.Select(ups, balancer.Job{Work: 1}, now, nil))
	// Two seconds later half the running job is done.
	require.InDelta(t, 3, ups[0].ExpectedFinish(1, now.Add(2*time.Second), 1), 1e-9)
	require.Same(t, ups[0], e.Select(ups, balancer.Job{Work: 1}, now.Add(2*time.Second), nil))
	tk.Done(now.Add(4*time.Second), false)
	require.Zero(t, ups[0].InFlight())
	require.Zero(t, ups[0].Outstanding())

	// A queue the host reports (other replicas' requests) counts too.
	ups[0].SetCheck(balancer.CheckResult{At: now, Slots: 1, InFlight: 1, Queued: 5}, true)
	require.Same(t, ups[1], e.Select(ups, balancer.Job{Work: 1}, now, nil))
}

func TestPassiveEjectionBackoff(t *testing.T) {
	t.Parallel()
	u := pool(t, 1)[0]
	require.True(t, u.Available(t0))

	// Two 5xx do not eject; the third does, for 1 s.
	require.False(t, u.RecordFailure(balancer.Fail5xx, t0))
	require.False(t, u.RecordFailure(balancer.Fail5xx, t0))
	require.True(t, u.RecordFailure(balancer.Fail5xx, t0))
	require.False(t, u.Available(t0.Add(999*time.Millisecond)))
	require.True(t, u.Available(t0.Add(time.Second)))
	// A connection error ejects at once, and the back-off doubles.
	now := t0.Add(time.Second)
	require.True(t, u.RecordFailure(balancer.FailConnect, now))
	require.False(t, u.Available(now.Add(1999*time.Millisecond)))
	require.True(t, u.Available(now.Add(2*time.Second)))
	require.Equal(t, "ejected", u.Status(now).State)
	// A success resets the back-off.
	u.RecordSuccess()
	require.True(t, u.RecordFailure(balancer.FailConnect, now))
	require.True(t, u.Available(now.Add(time.Second)))

	// Active checks: down when the checker says so; turning healthy again
	// clears a passive ejection.
	u.SetCheck(balancer.CheckResult{At: now, Err: errors.New("refused")}, false)
	require.False(t, u.Healthy(now.Add(time.Hour)))
	require.Equal(t, "down", u.Status(now).State)
	require.True(t, u.RecordFailure(balancer.FailConnect, now))
	u.SetCheck(balancer.CheckResult{At: now, Slots: 2}, true)
	require.True(t, u.Available(now))
	st := u.Status(now)
	require.Equal(t, "up", st.State)
	require.EqualValues(t, 2, st.Slots)
	require.EqualValues(t, 6, st.Failures)
}

func TestEstimate(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		path, body string
		want       float64
	}{
		{"/images", `{"inference_mode":"Text to Image","samples":1,"steps":25,"aspect_ratio":"512:512"}`, 1},
		{"/images", `{"inference_mode":"Text to Image","samples":"4","steps":"50","aspect_ratio":"768:768"}`, 4 * 2 * 2.25},
		{"/images", `{"inference_mode":"Image to Image","samples":1,"steps":25,"strength":0.5,"aspect_ratio":"512:512"}`, 0.5},
		{"/images", `{"inference_mode":"ControlNet Depth","samples":8,"steps":25,"aspect_ratio":"512:512"}`, 1.5},
		{"/images", `{"inference_mode":"Mask","steps":100,"aspect_ratio":"512:512"}`, 1.1},
		{"/images", `{"inference_mode":"Text to Image","samples":1000,"steps":100000,"aspect_ratio":"99999:99999"}`, 16 * 6 * 16},
		{"/images", `not json`, 2.25},
		// Samples default to 1, as in gpusvc; "samples" is the field on
		// every route, "n" is not read.
		{"/images", `{"inference_mode":"Text to Image","aspect_ratio":"512:512"}`, 1},
		{"/images", `{"inference_mode":"Text to Image","n":4,"aspect_ratio":"512:512"}`, 1},
		// A queued job (202) costs the host only the enqueue, whatever it
		// asks for.
		{"/v1/images/generations", `{"samples":16,"steps":150,"aspect_ratio":"2048:2048"}`, 0.05},
		{"/v1/images/generations", `{"width":512,"height":512,"steps":50}`, 0.05},
		{"/upscale", `{}`, 4},
		{"/extend_prompt", `{}`, 0.3},
	} {
		require.InDelta(t, tc.want, balancer.EstimatePrefix(gpuroute.Lookup("POST", tc.path), []byte(tc.body), true), 1e-9, tc.body)
	}
}

func TestNew(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"", "eeft", "least_conn", "round_robin"} {
		_, err := balancer.New(p)
		require.NoError(t, err, p)
	}
	_, err := balancer.New("random")
	require.Error(t, err)
}

// TestRecoveredHostForgetsStaleSpeed checks that a host back from being
// down is not starved by the speed it was last measured at: EEFT would
// never choose a host it believes 20× slower, and so never re-measure it.
func TestRecoveredHostForgetsStaleSpeed(t *testing.T) {
	t.Parallel()
	ups := pool(t, 2)
	e := &balancer.EEFT{}
	for i, spu := range []float64{1, 20} {
		tk := ups[i].Start(1, t0)
		tk.Done(t0.Add(time.Duration(spu*float64(time.Second))), true)
	}
	now := t0.Add(time.Minute)
	// The fast host is busy with 5 units; the slow estimate still loses.
	ups[0].Start(5, now)
	require.Same(t, ups[0], e.Select(ups, balancer.Job{Work: 1}, now, nil))

	ups[1].SetCheck(balancer.CheckResult{At: now, Err: errors.New("refused")}, false)
	ups[1].SetCheck(balancer.CheckResult{At: now, Slots: 1}, true)
	require.Zero(t, ups[1].SecPerUnit(), "the speed is learned anew after an outage")
	require.Same(t, ups[1], e.Select(ups, balancer.Job{Work: 1}, now, nil))

	// A healthy check of a host that was never down keeps what it learned.
	ups[0].SetCheck(balancer.CheckResult{At: now, Slots: 1}, true)
	require.InDelta(t, 1, ups[0].SecPerUnit(), 1e-9)
}
