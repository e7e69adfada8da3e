package hosts_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/proxy/internal/hosts"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// startRegistry runs a registry on db until the test ends. The safety-net
// interval is long so that the test sees notifications, not polling.
func startRegistry(tb testing.TB, db *pgxpool.Pool) *hosts.Registry {
	tb.Helper()
	reg := hosts.NewRegistry(db, &balancer.Pool{}, zaptest.NewLogger(tb))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = reg.Run(ctx, time.Minute) })
	tb.Cleanup(func() { cancel(); wg.Wait() })
	return reg
}

func find(p *balancer.Pool, addr string) *balancer.Upstream {
	for _, u := range p.Hosts() {
		if u.Address == addr {
			return u
		}
	}
	return nil
}

func exec(tb testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	tb.Helper()
	_, err := db.Exec(context.Background(), sql, args...)
	require.NoError(tb, err)
}

func TestRegistryFollowsTable(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ('http://10.0.0.1:5000'), ('not a url')`)
	reg := startRegistry(t, db)
	pool := reg.Pool()
	require.Eventually(t, func() bool { return len(pool.Hosts()) == 1 }, 2*time.Second, 10*time.Millisecond)
	first := find(pool, "http://10.0.0.1:5000")
	require.NotNil(t, first)
	require.True(t, first.Available(time.Now()))

	// The legacy one-column insert is enough, and it arrives within 1 s.
	exec(t, db, `INSERT INTO api_hosts (address) VALUES ('http://10.0.0.7:5000/')`)
	require.Eventually(t, func() bool { return find(pool, "http://10.0.0.7:5000") != nil }, time.Second, 5*time.Millisecond)

	exec(t, db, `UPDATE api_hosts SET draining = true WHERE address = 'http://10.0.0.1:5000'`)
	require.Eventually(t, first.Draining, time.Second, 5*time.Millisecond)
	require.False(t, first.Available(time.Now()))

	exec(t, db, `UPDATE api_hosts SET draining = false, enabled = false WHERE address = 'http://10.0.0.1:5000'`)
	require.Eventually(t, func() bool { return first.Weight() == 0 && !first.Draining() }, time.Second, 5*time.Millisecond)
	require.Equal(t, "disabled", first.Status(time.Now()).State)

	exec(t, db, `UPDATE api_hosts SET enabled = true, weight = 2.5 WHERE address = 'http://10.0.0.1:5000'`)
	require.Eventually(t, func() bool { return first.Weight() == 2.5 }, time.Second, 5*time.Millisecond)
	require.Same(t, first, find(pool, "http://10.0.0.1:5000"), "state survives reloads")

	exec(t, db, `DELETE FROM api_hosts WHERE address = 'http://10.0.0.1:5000'`)
	// The host is marked removed just before the pool is swapped: wait for
	// both (checking the pool right after Removed raced, 1 run in many).
	require.Eventually(t, func() bool { return first.Removed() && find(pool, "http://10.0.0.1:5000") == nil },
		time.Second, 5*time.Millisecond)
	require.Len(t, pool.Hosts(), 1)

	_, err := db.Exec(context.Background(), `INSERT INTO api_hosts (address, weight) VALUES ('http://10.0.0.9:5000', -1)`)
	require.Error(t, err, "negative weight is rejected by the table")
}

func TestRegistrySurvivesListenerTermination(t *testing.T) {
	t.Parallel()
	db := dbtest.New(t)
	reg := startRegistry(t, db)
	pool := reg.Pool()
	ctx := context.Background()

	listenerPID := func() int32 {
		var pid int32
		err := db.QueryRow(ctx, `
			SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query ILIKE 'LISTEN%'`).Scan(&pid)
		if err != nil {
			return 0
		}
		return pid
	}
	var pid int32
	require.Eventually(t, func() bool { pid = listenerPID(); return pid != 0 }, 2*time.Second, 10*time.Millisecond)

	for round := range 2 {
		exec(t, db, `SELECT pg_terminate_backend($1)`, pid)
		require.Eventually(t, func() bool {
			p := listenerPID()
			if p != 0 && p != pid {
				pid = p
				return true
			}
			return false
		}, 3*time.Second, 10*time.Millisecond, "listener reconnects (round %d)", round)

		addr := []string{"http://10.1.0.1:5000", "http://10.1.0.2:5000"}[round]
		exec(t, db, `INSERT INTO api_hosts (address) VALUES ($1)`, addr)
		require.Eventually(t, func() bool { return find(pool, addr) != nil }, time.Second, 5*time.Millisecond)
	}
}

func TestParseAddress(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{"http://10.0.0.7:5000", true},
		{"https://gpu.example.com/base", true},
		{"10.0.0.7:5000", false},
		{"ftp://x", false},
		{"http://", false},
		{"http://u:p@host", false},
		{"http://host/?a=b", false},
	} {
		_, err := hosts.ParseAddress(tc.in)
		require.Equal(t, tc.ok, err == nil, tc.in)
	}
}
