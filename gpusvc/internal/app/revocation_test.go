package app_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/auth"
)

// TestRevokedTokensAreRefused checks that gpusvc honours what accountsvc
// does to tokens: the logout deny-list (same Redis keys) and the token
// version bumped by a password change.
func TestRevokedTokensAreRefused(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := start(t, cfg)
	id, _ := s.user(t, 10)
	opts, err := redis.ParseURL(cfg.RedisURL)
	require.NoError(t, err)
	rdb := redis.NewClient(opts)
	t.Cleanup(func() { _ = rdb.Close() })
	// The revocation store accountsvc builds, over the same prefix.
	rev := auth.NewRevocations(s.pool, rdb, cfg.RedisPrefix, time.Time{})
	ctx := context.Background()

	loggedOut, claims, err := auth.Issue([]byte(secret), id, 0, time.Hour, time.Now())
	require.NoError(t, err)
	kept, _, err := auth.Issue([]byte(secret), id, 0, time.Hour, time.Now())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, s.post(t, "/images", loggedOut, txt2img(1, 1)).status)
	require.NoError(t, rev.Revoke(ctx, claims))
	r := s.post(t, "/images", loggedOut, txt2img(2, 1))
	require.Equal(t, http.StatusUnauthorized, r.status, "%s", r.body)
	require.Equal(t, http.StatusOK, s.post(t, "/images", kept, txt2img(3, 1)).status)

	require.NoError(t, auth.BumpVersion(ctx, s.pool, id))
	require.Equal(t, http.StatusUnauthorized, s.post(t, "/images", kept, txt2img(4, 1)).status,
		"a token from before a password change is refused")
}
