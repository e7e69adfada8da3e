package auth_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/dbtest"
)

func createUser(tb testing.TB, pool *pgxpool.Pool, email string) int64 {
	tb.Helper()
	var id int64
	err := pool.QueryRow(context.Background(),
		`INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`, email).Scan(&id)
	require.NoError(tb, err)
	return id
}

// clock is a settable test clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

func TestRevocations(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	rdb, prefix := dbtest.Redis(t)
	userID := createUser(t, pool, "a@example.com")
	clk := &clock{t: time.Now().UTC()}
	cutoff := clk.Now().Add(48 * time.Hour)

	rev := auth.NewRevocations(pool, rdb, prefix, cutoff)
	rev.Now = clk.Now
	v := &auth.Verifier{Secrets: [][]byte{secret}, Now: clk.Now, Revocation: rev}
	is := auth.Issuer{Secret: secret, Now: clk.Now}

	legacy := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": userID, "exp": clk.Now().Add(300 * 24 * time.Hour).Unix()})
	tokA, _, err := is.Issue(userID, 0)
	require.NoError(t, err)
	tokB, _, err := is.Issue(userID, 0)
	require.NoError(t, err)

	for _, tok := range []string{legacy, tokA, tokB} {
		_, err := v.Verify(ctx, tok)
		require.NoError(t, err)
	}

	// Logout deny-lists the presented token only, until it expires.
	claimsA, err := v.Verify(ctx, tokA)
	require.NoError(t, err)
	require.NoError(t, rev.Revoke(ctx, claimsA))
	_, err = v.Verify(ctx, tokA)
	requireAuthErr(t, err, auth.MsgTokenInvalid)
	_, err = v.Verify(ctx, tokB)
	require.NoError(t, err)
	ttl, err := rdb.TTL(ctx, prefix+"deny:"+claimsA.JTI).Result()
	require.NoError(t, err)
	require.InDelta(t, auth.DefaultTTL.Seconds(), ttl.Seconds(), 5)

	// A legacy token can be logged out too (by the hash of the token).
	legacy2 := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": userID, "exp": clk.Now().Add(time.Hour).Unix()})
	claimsL2, err := v.Verify(ctx, legacy2)
	require.NoError(t, err)
	require.NoError(t, rev.Revoke(ctx, claimsL2))
	_, err = v.Verify(ctx, legacy2)
	requireAuthErr(t, err, auth.MsgTokenInvalid)
	_, err = v.Verify(ctx, legacy)
	require.NoError(t, err)

	// A password change bumps the version: every earlier token is refused,
	// the legacy one included; a token of the new version works.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, auth.BumpVersion(ctx, tx, userID))
	require.NoError(t, tx.Commit(ctx))
	for _, tok := range []string{legacy, tokB} {
		_, err := v.Verify(ctx, tok)
		requireAuthErr(t, err, auth.MsgTokenInvalid)
	}
	tokC, _, err := is.Issue(userID, 1)
	require.NoError(t, err)
	c, err := v.Verify(ctx, tokC)
	require.NoError(t, err)
	require.Equal(t, 1, c.Version)

	// Unknown users.
	err = auth.BumpVersion(ctx, pool, userID+1000)
	require.True(t, apperr.Is(err, apperr.KindNotFound), "%v", err)
	tokGhost, _, err := is.Issue(userID+1000, 0)
	require.NoError(t, err)
	_, err = v.Verify(ctx, tokGhost)
	requireAuthErr(t, err, auth.MsgTokenInvalid)

	// Legacy tokens of users who never changed their password stop at the
	// cutoff.
	other := createUser(t, pool, "b@example.com")
	legacyOther := sign(t, jwt.SigningMethodHS256, secret, jwt.MapClaims{"id": other, "exp": clk.Now().Add(300 * 24 * time.Hour).Unix()})
	_, err = v.Verify(ctx, legacyOther)
	require.NoError(t, err)
	clk.Add(48 * time.Hour)
	_, err = v.Verify(ctx, legacyOther)
	requireAuthErr(t, err, auth.MsgTokenInvalid)
	tokOther, _, err := is.Issue(other, 0)
	require.NoError(t, err)
	_, err = v.Verify(ctx, tokOther)
	require.NoError(t, err)

	// Revoking an expired token is a no-op.
	require.NoError(t, rev.Revoke(ctx, auth.Claims{UserID: other, JTI: "old", ExpiresAt: clk.Now().Add(-time.Minute)}))
	n, err := rdb.Exists(ctx, prefix+"deny:old").Result()
	require.NoError(t, err)
	require.Zero(t, n)
}

// TestRevocationsRedisDown: the deny-list fails open (reported to OnError),
// the database version check still applies.
func TestRevocationsRedisDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := dbtest.New(t)
	userID := createUser(t, pool, "c@example.com")

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	deadAddr := ln.Addr().String()
	require.NoError(t, ln.Close())
	dead := redis.NewClient(&redis.Options{Addr: deadAddr, MaxRetries: -1, DialTimeout: time.Second})
	t.Cleanup(func() { _ = dead.Close() })

	var mu sync.Mutex
	var reported []error
	rev := auth.NewRevocations(pool, dead, "x:", time.Time{})
	rev.OnError = func(err error) { mu.Lock(); reported = append(reported, err); mu.Unlock() }
	v := &auth.Verifier{Secrets: [][]byte{secret}, Revocation: rev}
	is := auth.Issuer{Secret: secret}

	tok0, _, err := is.Issue(userID, 0)
	require.NoError(t, err)
	_, err = v.Verify(ctx, tok0)
	require.NoError(t, err)
	mu.Lock()
	require.Len(t, reported, 1)
	mu.Unlock()

	require.NoError(t, auth.BumpVersion(ctx, pool, userID))
	_, err = v.Verify(ctx, tok0)
	requireAuthErr(t, err, auth.MsgTokenInvalid)

	// Logout cannot be put on the deny-list: it bumps the token version
	// instead, so the token (and every other token of the user) is refused
	// from now on, durably, and logout still answers success.
	tok1, c1, err := is.Issue(userID, 1)
	require.NoError(t, err)
	tok1b, _, err := is.Issue(userID, 1)
	require.NoError(t, err)
	_, err = v.Verify(ctx, tok1)
	require.NoError(t, err)
	require.NoError(t, rev.Revoke(ctx, c1))
	for _, tok := range []string{tok1, tok1b} {
		_, err = v.Verify(ctx, tok)
		requireAuthErr(t, err, auth.MsgTokenInvalid)
	}
	mu.Lock()
	require.Contains(t, fmt.Sprint(reported), "revoking all of the user's tokens instead")
	mu.Unlock()

	// A cancelled logout is an error, not a bump.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	tok2, c2, err := is.Issue(userID, 2)
	require.NoError(t, err)
	err = rev.Revoke(cctx, c2)
	require.Error(t, err)
	require.False(t, apperr.Is(err, apperr.KindUnavailable))
	_, err = v.Verify(ctx, tok2)
	require.NoError(t, err)
}
