package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/db"
)

// This file is the store of the users table: every statement on users that
// the account flows run, each next to the function that runs it. They take
// a db.Querier so that they run inside or outside a transaction.

// userRow is what login and signup need of a user.
type userRow struct {
	id           int64
	email        string
	hash         string
	verified     bool
	tokenVersion int
}

// findUserByEmail looks addr up case-insensitively; an exact match wins
// when legacy rows differ only in case. nil when there is none. lock takes
// a row lock (in a transaction).
func findUserByEmail(ctx context.Context, q db.Querier, addr string, lock bool) (*userRow, error) {
	sql := `
SELECT id, email, password, is_verified, token_version FROM users
WHERE lower(email) = lower($1)
ORDER BY (email = $1) DESC, id LIMIT 1`
	if lock {
		sql += " FOR UPDATE"
	}
	var u userRow
	err := q.QueryRow(ctx, sql, addr).Scan(&u.id, &u.email, &u.hash, &u.verified, &u.tokenVersion)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("find user by email: %w", err)
	}
	return &u, nil
}

// insertUser inserts a new unverified user; inserted is false when a
// unique index (the address, in any case) already holds it.
func insertUser(ctx context.Context, q db.Querier, addr, hash, verifyKeyHash string, verifyExpires time.Time,
	meta json.RawMessage, now time.Time,
) (id int64, inserted bool, err error) {
	const sql = `
INSERT INTO users (email, password, is_verified, verify_key, verify_key_expires_at, metadata, created_at)
VALUES ($1, $2, FALSE, $3, $4, $5::json, $6)
ON CONFLICT DO NOTHING
RETURNING id`
	err = q.QueryRow(ctx, sql, addr, hash, verifyKeyHash, verifyExpires, string(meta), now).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("insert user: %w", err)
	}
	return id, true, nil
}

// nextUserID draws an id from the users sequence, exactly as an insert
// would.
func nextUserID(ctx context.Context, q db.Querier) (int64, error) {
	var id int64
	if err := q.QueryRow(ctx, `SELECT nextval(pg_get_serial_sequence('users', 'id'))`).Scan(&id); err != nil {
		return 0, fmt.Errorf("draw user id: %w", err)
	}
	return id, nil
}

// noPassword is the users.password of an account nobody can log in to
// until a password is set through a reset key: no hash has this form, so
// Hasher.Verify refuses every password against it (as for the legacy
// anonymous row). A contested signup leaves it (see Service.Signup).
const noPassword = "!"

// contestSignup drops the password of an unverified user whose address
// two signups with different passwords claimed: neither may survive the
// verification (see Service.Signup).
func contestSignup(ctx context.Context, q db.Querier, id int64) error {
	const sql = `UPDATE users SET password = $2, pending_password = NULL WHERE id = $1 AND NOT is_verified`
	if _, err := q.Exec(ctx, sql, id, noPassword); err != nil {
		return fmt.Errorf("contest signup of user %d: %w", id, err)
	}
	return nil
}

// setVerifyKey replaces the verification key of an unverified user.
func setVerifyKey(ctx context.Context, q db.Querier, id int64, keyHash string, expires time.Time) error {
	const sql = `UPDATE users SET verify_key = $2, verify_key_expires_at = $3 WHERE id = $1 AND NOT is_verified`
	if _, err := q.Exec(ctx, sql, id, keyHash, expires); err != nil {
		return fmt.Errorf("reissue verification key of user %d: %w", id, err)
	}
	return nil
}

// verifiedUser is the outcome of verifyUserByKey.
type verifiedUser struct {
	id    int64
	email string
	// noPassword is true when the account has no usable password after
	// the verification (a contested signup): the owner must set one.
	noPassword bool
}

// verifyUserByKey marks verified the unverified user whose live key is one
// of keys and consumes the key. A key without an expiry (legacy rows) lives
// ttl from the row's creation. ok is false when no user matches.
//
// A pending password (left by a repeated signup of an earlier release,
// which this one no longer writes) counts as a contested signup: the
// password is dropped. Dropping it bumps the token version.
func verifyUserByKey(ctx context.Context, q db.Querier, keys []string, now time.Time, ttl time.Duration) (u verifiedUser, ok bool, err error) {
	const sql = `
UPDATE users SET is_verified = TRUE, verify_key = NULL, verify_key_expires_at = NULL,
    password = CASE WHEN pending_password IS NULL THEN password ELSE $4 END, pending_password = NULL,
    token_version = token_version + CASE WHEN pending_password IS NULL AND password <> $4 THEN 0 ELSE 1 END
WHERE verify_key = ANY($1) AND NOT is_verified
  AND COALESCE(verify_key_expires_at, created_at + make_interval(secs => $3)) > $2
RETURNING id, email, password = $4`
	err = q.QueryRow(ctx, sql, keys, now, ttl.Seconds(), noPassword).Scan(&u.id, &u.email, &u.noPassword)
	if errors.Is(err, pgx.ErrNoRows) {
		return verifiedUser{}, false, nil
	}
	if err != nil {
		return verifiedUser{}, false, fmt.Errorf("verify user: %w", err)
	}
	return u, true, nil
}

// replacePasswordHash stores hash as the user's password unless the stored
// one is no longer old (it changed meanwhile).
func replacePasswordHash(ctx context.Context, q db.Querier, id int64, old, hash string) error {
	if _, err := q.Exec(ctx, `UPDATE users SET password = $3 WHERE id = $1 AND password = $2`, id, old, hash); err != nil {
		return fmt.Errorf("replace password hash of user %d: %w", id, err)
	}
	return nil
}

// resetPassword sets the user's password, drops any pending one and
// returns the user's address; ok is false when there is no such user.
func resetPassword(ctx context.Context, q db.Querier, id int64, hash string) (addr string, ok bool, err error) {
	const sql = `UPDATE users SET password = $2, pending_password = NULL WHERE id = $1 RETURNING email`
	err = q.QueryRow(ctx, sql, id, hash).Scan(&addr)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("set password of user %d: %w", id, err)
	}
	return addr, true, nil
}

// readProfile reads the user's profile; NotFound when there is none.
func readProfile(ctx context.Context, q db.Querier, id int64) (Profile, error) {
	var (
		p    Profile
		meta []byte
	)
	const sql = `SELECT id, email, is_verified, referral_token, metadata, created_at FROM users WHERE id = $1`
	err := q.QueryRow(ctx, sql, id).Scan(&p.ID, &p.Email, &p.Verified, &p.ReferralToken, &meta, &p.CreatedAt)
	if err != nil {
		return Profile{}, db.Interpret(err, "User")
	}
	p.Metadata = meta
	return p, nil
}

// lockPassword reads the user's password hash and address under a row lock
// (in a transaction); NotFound when there is no such user.
func lockPassword(ctx context.Context, q db.Querier, id int64) (hash, addr string, err error) {
	err = q.QueryRow(ctx, `SELECT password, email FROM users WHERE id = $1 FOR UPDATE`, id).Scan(&hash, &addr)
	if err != nil {
		return "", "", db.Interpret(err, "User")
	}
	return hash, addr, nil
}

// updateProfile replaces the metadata and the password hash where they are
// not nil.
func updateProfile(ctx context.Context, q db.Querier, id int64, meta, hash *string) error {
	const sql = `UPDATE users SET metadata = COALESCE($2::json, metadata), password = COALESCE($3, password) WHERE id = $1`
	if _, err := q.Exec(ctx, sql, id, meta, hash); err != nil {
		return fmt.Errorf("update user %d: %w", id, err)
	}
	return nil
}

// tokenVersion reads the user's token version.
func tokenVersion(ctx context.Context, q db.Querier, id int64) (int, error) {
	var v int
	if err := q.QueryRow(ctx, `SELECT token_version FROM users WHERE id = $1`, id).Scan(&v); err != nil {
		return 0, fmt.Errorf("read token version of user %d: %w", id, err)
	}
	return v, nil
}

// readReferralToken reads the user's referral token (nil when unset);
// NotFound when there is no such user.
func readReferralToken(ctx context.Context, q db.Querier, id int64) (*string, error) {
	var tok *string
	if err := q.QueryRow(ctx, `SELECT referral_token FROM users WHERE id = $1`, id).Scan(&tok); err != nil {
		return nil, db.Interpret(err, "User")
	}
	return tok, nil
}

// setReferralTokenOnce stores fresh as the user's referral token unless it
// has one, and returns the token the user ends up with.
func setReferralTokenOnce(ctx context.Context, q db.Querier, id int64, fresh string) (string, error) {
	const sql = `
UPDATE users SET referral_token = COALESCE(NULLIF(referral_token, ''), $2)
WHERE id = $1 RETURNING referral_token`
	var got string
	if err := q.QueryRow(ctx, sql, id, fresh).Scan(&got); err != nil {
		return "", db.Interpret(err, "User")
	}
	return got, nil
}

// findUserByReferralToken returns the id of the (oldest) user owning token;
// ok is false when none does.
func findUserByReferralToken(ctx context.Context, q db.Querier, token string) (id int64, ok bool, err error) {
	err = q.QueryRow(ctx, `SELECT id FROM users WHERE referral_token = $1 ORDER BY id LIMIT 1`, token).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("look up referral token: %w", err)
	}
	return id, true, nil
}

// markRewarded sets metadata.rewards_referral_verify = true on the user. The
// merge is done in Go so that legacy metadata that jsonb would refuse
// cannot fail the verification; non-object metadata is left alone.
func markRewarded(ctx context.Context, q db.Querier, id int64) error {
	var raw []byte
	if err := q.QueryRow(ctx, `SELECT metadata FROM users WHERE id = $1`, id).Scan(&raw); err != nil {
		return fmt.Errorf("read metadata of user %d: %w", id, err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil //nolint:nilerr // not an object: nothing to mark
	}
	m[referralMemo] = json.RawMessage("true")
	out, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode metadata of user %d: %w", id, err)
	}
	if _, err := q.Exec(ctx, `UPDATE users SET metadata = $2 WHERE id = $1`, id, string(out)); err != nil {
		return fmt.Errorf("mark referral reward on user %d: %w", id, err)
	}
	return nil
}
