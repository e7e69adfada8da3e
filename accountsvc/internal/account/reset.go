package account

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/db"
)

// RequestReset creates a reset key for the account of email (replacing any
// older key) and queues the email, in one transaction. Unknown addresses do
// nothing; the caller answers the same either way.
func (s *Service) RequestReset(ctx context.Context, emailIn string) error {
	addr, err := NormalizeEmail(emailIn)
	if err != nil {
		return nil //nolint:nilerr // a malformed address names no account; answer as usual
	}
	now := s.now()
	return db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		u, err := findUserByEmail(ctx, tx, addr, true)
		if err != nil || u == nil || !s.mailAllowed(ctx, u.email) {
			return err
		}
		return s.issueResetKey(ctx, tx, u.id, u.email, now)
	})
}

// issueResetKey replaces the user's reset keys with a fresh one and queues
// the email with it to addr, in tx.
func (s *Service) issueResetKey(ctx context.Context, tx pgx.Tx, userID int64, addr string, now time.Time) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	if err := deleteResetKeys(ctx, tx, userID); err != nil {
		return err
	}
	if err := insertResetKey(ctx, tx, userID, hashKey(s.keys.derive(purposeReset, nonce)), now); err != nil {
		return err
	}
	return s.mailer.enqueue(ctx, tx, MailArgs{Email: MailReset, To: addr, Nonce: nonce})
}

// CheckReset returns when a live reset key expires, or 400 "Invalid key".
func (s *Service) CheckReset(ctx context.Context, key string) (time.Time, error) {
	if key == "" || len(key) > 256 {
		return time.Time{}, apperr.Invalid(MsgInvalidResetKey)
	}
	_, created, ok, err := findResetKey(ctx, s.pool, keyCandidates(key), false)
	if err != nil {
		return time.Time{}, err
	}
	if !ok {
		return time.Time{}, apperr.Invalid(MsgInvalidResetKey)
	}
	expires := created.Add(s.cfg.ResetTTL)
	if !s.now().Before(expires) {
		return time.Time{}, apperr.Invalid(MsgInvalidResetKey)
	}
	return expires.UTC(), nil
}

// ResetPassword sets a new password with a live reset key, in one
// transaction: the argon2id hash is stored, every reset key of the user is
// deleted, and the token version is bumped so that every token issued
// before is refused. A used, expired or unknown key is 400 "Reset key not
// found".
func (s *Service) ResetPassword(ctx context.Context, key, password string) error {
	if err := ValidatePassword(password); err != nil {
		return err
	}
	if key == "" || len(key) > 256 {
		return apperr.Invalid(MsgResetKeyNotFound)
	}
	hash, err := s.hasher.Hash(password)
	if err != nil {
		return err
	}
	now := s.now()
	var (
		userID int64
		addr   string
	)
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			created time.Time
			ok      bool
			err     error
		)
		userID, created, ok, err = findResetKey(ctx, tx, keyCandidates(key), true)
		if err != nil {
			return err
		}
		if !ok || !now.Before(created.Add(s.cfg.ResetTTL)) {
			return apperr.Invalid(MsgResetKeyNotFound)
		}
		// The reset key proves the inbox as a verification key does; a
		// pending password of an earlier signup must not override it later.
		addr, ok, err = resetPassword(ctx, tx, userID, hash)
		if err != nil {
			return err
		}
		if !ok {
			return apperr.Invalid(MsgResetKeyNotFound) // key of a deleted user
		}
		if err := deleteResetKeys(ctx, tx, userID); err != nil {
			return err
		}
		return auth.BumpVersion(ctx, tx, userID)
	})
	if err != nil {
		return err
	}
	if err := s.lockout.Reset(ctx, addr); err != nil {
		s.log.Warn("login lockout unavailable", zap.Error(err))
	}
	s.log.Info("password reset", zap.Int64("user_id", userID))
	return nil
}

// findResetKey returns the user and creation time of the newest reset key
// among keys; ok is false when there is none. lock takes a row lock (in a
// transaction).
func findResetKey(ctx context.Context, q db.Querier, keys []string, lock bool) (userID int64, created time.Time, ok bool, err error) {
	sql := `
SELECT user_id, created_at FROM password_recovery
WHERE reset_key = ANY($1) ORDER BY created_at DESC LIMIT 1`
	if lock {
		sql += " FOR UPDATE"
	}
	err = q.QueryRow(ctx, sql, keys).Scan(&userID, &created)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, time.Time{}, false, nil
	}
	if err != nil {
		return 0, time.Time{}, false, fmt.Errorf("read reset key: %w", err)
	}
	return userID, created, true, nil
}

// insertResetKey stores a reset key's hash for the user.
func insertResetKey(ctx context.Context, q db.Querier, userID int64, keyHash string, now time.Time) error {
	const sql = `INSERT INTO password_recovery (user_id, reset_key, created_at) VALUES ($1, $2, $3)`
	if _, err := q.Exec(ctx, sql, userID, keyHash, now); err != nil {
		return fmt.Errorf("insert reset key of user %d: %w", userID, err)
	}
	return nil
}

// deleteResetKeys deletes every reset key of the user.
func deleteResetKeys(ctx context.Context, q db.Querier, userID int64) error {
	if _, err := q.Exec(ctx, `DELETE FROM password_recovery WHERE user_id = $1`, userID); err != nil {
		return fmt.Errorf("delete reset keys of user %d: %w", userID, err)
	}
	return nil
}
