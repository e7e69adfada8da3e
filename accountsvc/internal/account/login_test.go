package account

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/dbtest"
)

// verifiedUser signs up and verifies addr with password.
func (f *fixture) verifiedUser(tb testing.TB, addr, password string) int64 {
	tb.Helper()
	ctx := context.Background()
	_, err := f.svc.Signup(ctx, SignupInput{Email: addr, Password: password})
	require.NoError(tb, err)
	id, err := f.svc.Verify(ctx, f.lastKey(tb, MailVerification))
	require.NoError(tb, err)
	return id
}

// TestLockoutFromOtherAddresses: failed logins from other addresses never
// lock the owner out: six failures from six IPs, then the owner logs in
// from their own IP with the right password.
func TestLockoutFromOtherAddresses(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	id := f.verifiedUser(t, "owner@example.com", "owner-password")
	for i := range 6 {
		_, err := f.svc.Login(ctx, fmt.Sprintf("203.0.113.%d", i+1), "owner@example.com", "wrong-password")
		requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
	}
	res, err := f.svc.Login(ctx, "198.51.100.1", "owner@example.com", "owner-password")
	require.NoError(t, err, "the owner is locked out by failures from other addresses")
	require.Equal(t, id, res.UserID)
}

// TestLockoutSameAddress: the address that fails is locked out of the
// account, with the right password too, and unknown addresses are locked
// the same way (no enumeration); a password reset lifts the lock.
func TestLockoutSameAddress(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := context.Background()
	f.verifiedUser(t, "guessed@example.com", "right-password")
	for _, addr := range []string{"guessed@example.com", "ghost@example.com"} {
		for range DefaultAccountIPLockout.Free + 1 {
			_, err := f.svc.Login(ctx, "203.0.113.9", addr, "wrong-password")
			requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
		}
		_, err := f.svc.Login(ctx, "203.0.113.9", addr, "right-password")
		requireKind(t, err, apperr.KindTooManyRequests, MsgTooManyFailures)
		e, _ := apperr.As(err)
		require.Positive(t, e.RetryAfter, addr)
	}
	_, err := f.svc.Login(ctx, "198.51.100.2", "guessed@example.com", "right-password")
	require.NoError(t, err)

	require.NoError(t, f.svc.RequestReset(ctx, "guessed@example.com"))
	require.NoError(t, f.svc.ResetPassword(ctx, f.lastKey(t, MailReset), "new-password"))
	_, err = f.svc.Login(ctx, "203.0.113.9", "guessed@example.com", "new-password")
	require.NoError(t, err, "the reset lifts the lock of every address")
}

// TestLockoutSlowdown: failures of one account from any addresses slow its
// failed attempts down (the delay doubles up to the cap) but never lock it.
func TestLockoutSlowdown(t *testing.T) {
	t.Parallel()
	rc, prefix := dbtest.Redis(t)
	l := NewLockout(rc, prefix, LockoutConfig{Account: SlowdownPolicy{Free: 2, Base: time.Second, Max: 4 * time.Second, Memory: time.Hour}})
	ctx := context.Background()
	var got []time.Duration
	for i := range 6 {
		d, err := l.Fail(ctx, fmt.Sprintf("203.0.113.%d", i+1), "slow@example.com")
		require.NoError(t, err)
		got = append(got, d)
		locked, err := l.Locked(ctx, "198.51.100.3", "slow@example.com")
		require.NoError(t, err)
		require.Zero(t, locked)
	}
	require.Equal(t, []time.Duration{0, 0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second}, got)
	// A right password from one address ends the slow-down.
	require.NoError(t, l.Succeeded(ctx, "198.51.100.3", "slow@example.com"))
	d, err := l.Fail(ctx, "203.0.113.1", "slow@example.com")
	require.NoError(t, err)
	require.Zero(t, d)

	// A failed login answers no sooner than the slow-down.
	f := newFixture(t, func(d *Deps, cfg *Config) {
		cfg.LoginFailureFloor = time.Millisecond
		d.Lockout = NewLockout(d.Lockout.rdb, d.Lockout.prefix,
			LockoutConfig{Account: SlowdownPolicy{Free: 1, Base: 1500 * time.Millisecond, Max: time.Minute, Memory: time.Hour}})
	})
	for i, floor := range []time.Duration{0, 1500 * time.Millisecond} {
		start := time.Now()
		_, err := f.svc.Login(ctx, fmt.Sprintf("192.0.2.%d", i+1), "slow@example.com", "wrong-password")
		requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
		require.GreaterOrEqual(t, time.Since(start), floor)
	}
}

// TestLockoutRedisDown: without Redis the lockout fails open: logins go
// ahead, a wrong password is still a 401, and each tolerated failure is
// counted in the metric.
func TestLockoutRedisDown(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	rdb := redis.NewClient(&redis.Options{Addr: dead, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = rdb.Close() })
	unavailable := NewLockoutUnavailableCounter()
	f := newFixture(t)
	id := f.verifiedUser(t, "down@example.com", "right-password")
	f.svc.lockout = NewLockout(rdb, "down:", LockoutConfig{Unavailable: unavailable})
	ctx := context.Background()

	for range DefaultAccountIPLockout.Free + 2 {
		_, err := f.svc.Login(ctx, "203.0.113.5", "down@example.com", "wrong-password")
		requireKind(t, err, apperr.KindUnauthorized, MsgInvalidCredentials)
	}
	res, err := f.svc.Login(ctx, "203.0.113.5", "down@example.com", "right-password")
	require.NoError(t, err)
	require.Equal(t, id, res.UserID)
	// Per attempt: the lock check, then the failure or the success.
	require.Equal(t, float64(2*(DefaultAccountIPLockout.Free+2)+2), testutil.ToFloat64(unavailable))
}
