package auth

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Revocations is the real Checker: a Redis deny-list of logged-out tokens
// plus the per-user token version in PostgreSQL (users.token_version).
//
// A token is refused when its jti is on the deny-list; when it carries a
// version different from the user's current one (a password change or reset
// bumps it); or, for a legacy token (no version), when the user's version is
// no longer 0 or the legacy cutoff has passed.
//
// Nothing is cached: each Check does one Redis GET-like lookup and one
// primary-key lookup, so a revocation takes effect on the next request.
//
// Redis errors fail open: if the deny-list cannot be read, OnError is called
// and the token is judged by the database check alone (which still refuses
// tokens older than a password change, and every token of a user who
// logged out during the outage: see Revoke). A token logged out before the
// outage is accepted again only while Redis stays unreachable (or for the
// rest of its lifetime if Redis lost its data), instead of every signed-in
// user getting 401 and being thrown out by the frontend. Database errors fail closed (503), after one retry on
// a fresh connection when the connection was lost (db.Read).
//
// Revocations is safe for concurrent use; set the fields before use.
type Revocations struct {
	pool         *pgxpool.Pool
	rdb          redis.UniversalClient
	prefix       string
	legacyCutoff time.Time

	// Now is the clock; NewRevocations sets time.Now.
	Now func() time.Time
	// OnError receives Redis errors of the deny-list lookup that were
	// tolerated (fail open); the service logs them. Nil ignores them.
	OnError func(err error)
}

// NewRevocations returns a Checker over pool and rdb. keyPrefix is prepended
// to every Redis key (deny-list keys are keyPrefix+"deny:"+jti). Legacy
// tokens are refused from legacyCutoff on; the zero time means no cutoff.
func NewRevocations(pool *pgxpool.Pool, rdb redis.UniversalClient, keyPrefix string, legacyCutoff time.Time) *Revocations {
	return &Revocations{pool: pool, rdb: rdb, prefix: keyPrefix, legacyCutoff: legacyCutoff, Now: time.Now}
}

func (r *Revocations) denyKey(jti string) string { return r.prefix + "deny:" + jti }

// Revoke puts the token on the deny-list until it expires (POST /logout).
// An already expired token needs no entry.
//
// When Redis cannot take the entry, the logout still happens, durably and
// more broadly: the user's token version in PostgreSQL is bumped, which
// refuses every token of the user (all devices sign in again). A logout is
// never lost and never fails because of Redis; only its scope widens during
// an outage. OnError hears about it.
func (r *Revocations) Revoke(ctx context.Context, c Claims) error {
	if c.Anonymous || c.JTI == "" {
		return apperr.Invalid("This token cannot be revoked")
	}
	ttl := c.ExpiresAt.Sub(r.Now())
	if ttl <= 0 {
		return nil
	}
	// Round up so the entry never expires before the token does.
	ttl = ttl.Truncate(time.Second) + time.Second
	err := r.rdb.Set(ctx, r.denyKey(c.JTI), "1", ttl).Err()
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("deny-list token of user %d: %w", c.UserID, err)
	}
	if r.OnError != nil {
		r.OnError(fmt.Errorf("deny-list token of user %d (revoking all of the user's tokens instead): %w", c.UserID, err))
	}
	if err := BumpVersion(ctx, r.pool, c.UserID); err != nil {
		return apperr.Wrap(apperr.KindUnavailable, "Service temporarily unavailable",
			fmt.Errorf("logout of user %d without redis: %w", c.UserID, err))
	}
	return nil
}

// Check implements Checker.
func (r *Revocations) Check(ctx context.Context, c Claims) error {
	if c.Anonymous {
		return nil
	}
	if c.JTI != "" {
		n, err := r.rdb.Exists(ctx, r.denyKey(c.JTI)).Result()
		switch {
		case err != nil && ctx.Err() != nil:
			return fmt.Errorf("check deny-list: %w", err)
		case err != nil:
			if r.OnError != nil {
				r.OnError(fmt.Errorf("check deny-list for user %d: %w", c.UserID, err))
			}
		case n > 0:
			return apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid, errors.New("token is on the deny-list"))
		}
	}

	var current int
	err := db.Read(ctx, func(ctx context.Context) error {
		return r.pool.QueryRow(ctx, `SELECT token_version FROM users WHERE id = $1`, c.UserID).Scan(&current)
	})
	if errors.Is(err, pgx.ErrNoRows) {
		return apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid, fmt.Errorf("user %d does not exist", c.UserID))
	}
	if err != nil {
		return apperr.Wrap(apperr.KindUnavailable, "Service temporarily unavailable",
			fmt.Errorf("read token version of user %d: %w", c.UserID, err))
	}
	if c.Version == LegacyVersion {
		if current != 0 {
			return apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid, errors.New("legacy token after a password change"))
		}
		if !r.legacyCutoff.IsZero() && !r.Now().Before(r.legacyCutoff) {
			return apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid, errors.New("legacy token after the cutoff"))
		}
		return nil
	}
	if c.Version != current {
		return apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid,
			fmt.Errorf("token version %d, user has %d", c.Version, current))
	}
	return nil
}

// Execer runs a statement; *pgxpool.Pool, pgx.Tx and db.Querier satisfy it.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// BumpVersion increments users.token_version of userID, refusing every token
// issued before (call it in the same transaction as a password change or
// reset). A missing user is a NotFound error.
func BumpVersion(ctx context.Context, q Execer, userID int64) error {
	tag, err := q.Exec(ctx, `UPDATE users SET token_version = token_version + 1 WHERE id = $1`, userID)
	if err != nil {
		return fmt.Errorf("bump token version of user %d: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return apperr.Wrap(apperr.KindNotFound, "User not found", fmt.Errorf("bump token version: no user %d", userID))
	}
	return nil
}
