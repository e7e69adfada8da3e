package health_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/health"
)

func TestRiseFallAndCapacity(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	status.Store(http.StatusOK)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/base/health" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(status.Load()))
		_, _ = w.Write([]byte(`{"message":"API is up and running!","slots":2,"in_flight":1,"queued":3,"queue_size":4,"backend":"nouns","models":[]}`))
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL + "/base")
	require.NoError(t, err)
	up := balancer.NewUpstream(1, srv.URL+"/base", u)
	c := health.NewChecker(health.Config{Rise: 2, Fall: 2, Timeout: time.Second}, srv.Client(), zaptest.NewLogger(t), balancer.NewPool([]*balancer.Upstream{up}))
	ctx := context.Background()

	c.CheckOnce(ctx)
	st := up.Status(time.Now())
	require.Equal(t, "up", st.State)
	require.EqualValues(t, 2, st.Slots)
	require.EqualValues(t, 1, st.RepInFlight)
	require.EqualValues(t, 3, st.RepQueued)
	require.EqualValues(t, 4, up.QueueSize(), "the host's queue bound, for admission")
	require.False(t, st.LastCheck.IsZero())

	status.Store(http.StatusServiceUnavailable)
	c.CheckOnce(ctx)
	require.True(t, up.ActiveHealthy(), "one failure is below the fall threshold")
	c.CheckOnce(ctx)
	require.False(t, up.ActiveHealthy())
	require.Contains(t, up.Status(time.Now()).LastCheckFail, "503")

	status.Store(http.StatusOK)
	c.CheckOnce(ctx)
	require.False(t, up.ActiveHealthy(), "one pass is below the rise threshold")
	c.CheckOnce(ctx)
	require.True(t, up.Available(time.Now()))
}

func TestUnreachableAndTimeout(t *testing.T) {
	t.Parallel()
	block := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block); slow.Close() })
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	var ups []*balancer.Upstream
	for _, a := range []string{slow.URL, deadURL} {
		u, err := url.Parse(a)
		require.NoError(t, err)
		ups = append(ups, balancer.NewUpstream(0, a, u))
	}
	c := health.NewChecker(health.Config{Rise: 1, Fall: 1, Timeout: 100 * time.Millisecond}, http.DefaultClient, zaptest.NewLogger(t), balancer.NewPool(ups))
	start := time.Now()
	c.CheckOnce(context.Background())
	require.Less(t, time.Since(start), time.Second, "checks run concurrently and time out")
	for _, u := range ups {
		require.False(t, u.ActiveHealthy(), u.Address)
	}
}
