package hosts

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// TestReloadsNeverApplyAnOlderSnapshot checks that a reload which read
// api_hosts before a change cannot apply its read after a reload that saw
// the change (a NOTIFY reload racing a /refresh_hosts one). The first reload
// is paused between its read and its apply while the table changes and a
// second reload runs.
func TestReloadsNeverApplyAnOlderSnapshot(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	ctx := context.Background()
	_, err := db.Exec(ctx, `INSERT INTO api_hosts (address) VALUES ('http://10.2.0.1:5000')`)
	require.NoError(t, err)

	reg := NewRegistry(db, &balancer.Pool{}, zaptest.NewLogger(t))
	read, release := make(chan struct{}), make(chan struct{})
	// Not a sync.Once: its Do would also hold the second reload back.
	var first atomic.Bool
	base := reg.list
	reg.list = func(ctx context.Context) ([]Row, error) {
		rows, err := base(ctx)
		if first.CompareAndSwap(false, true) {
			close(read)
			<-release
		}
		return rows, err
	}

	var wg sync.WaitGroup
	wg.Go(func() {
		_, err := reg.Reload(ctx)
		require.NoError(t, err)
	})
	<-read // the first reload holds the old table
	_, err = db.Exec(ctx, `INSERT INTO api_hosts (address) VALUES ('http://10.2.0.2:5000')`)
	require.NoError(t, err)
	second := make(chan struct{})
	wg.Go(func() {
		defer close(second)
		_, err := reg.Reload(ctx)
		require.NoError(t, err)
	})
	// Give the second reload time to finish, if it can while the first is
	// paused (it must not be able to).
	select {
	case <-second:
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	wg.Wait()

	var addrs []string
	for _, u := range reg.Pool().Hosts() {
		addrs = append(addrs, u.Address)
	}
	require.Equal(t, []string{"http://10.2.0.1:5000", "http://10.2.0.2:5000"}, addrs)
}
