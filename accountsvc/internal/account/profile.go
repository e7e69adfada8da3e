package account

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/db"
)

// Profile is what the owner may read about their account: never the
// password hash or any key.
type Profile struct {
	ID            int64
	Email         string
	Verified      bool
	ReferralToken *string
	Metadata      json.RawMessage
	CreatedAt     time.Time
}

// Profile returns the user's profile.
func (s *Service) Profile(ctx context.Context, userID int64) (Profile, error) {
	return readProfile(ctx, s.pool, userID)
}

// UpdateInput is a profile update. Nil fields are left unchanged.
type UpdateInput struct {
	// Metadata replaces the metadata when not nil.
	Metadata json.RawMessage
	// Password is the new password. Nil, empty, or equal to the stored hash
	// (the legacy frontend echoes the row it read) leaves it unchanged.
	Password *string
	// CurrentPassword must match for a password change. A wrong one counts
	// as a failed login from IP in the lockout.
	CurrentPassword *string
	// IP is the client address for the lockout.
	IP string
}

// UpdateProfile replaces the metadata and, with a correct current
// password, changes the password (argon2id) and bumps the token version in
// the same transaction. It returns a fresh token when the password changed
// (every older token is refused from then on), else "".
//
// Checking the current password is guarded by the login lockout (Lockout):
// while IP is locked out of the account (or of every account) it answers
// 429 with RetryAfter without checking, a wrong current password is counted
// as a failed login from IP and a correct one clears IP's failures on the
// account, so a stolen token cannot guess the password faster than a login
// from the same address could.
func (s *Service) UpdateProfile(ctx context.Context, userID int64, in UpdateInput) (string, error) {
	var meta *string
	if in.Metadata != nil {
		m, err := NormalizeMetadata(in.Metadata)
		if err != nil {
			return "", err
		}
		str := string(m)
		meta = &str
	}
	newPassword := ""
	if in.Password != nil {
		newPassword = *in.Password
	}
	var (
		newHash *string
		version int
	)
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		stored, addr, err := lockPassword(ctx, tx, userID)
		if err != nil {
			return err
		}
		if newPassword != "" && subtle.ConstantTimeCompare([]byte(newPassword), []byte(stored)) != 1 {
			if err := ValidatePassword(newPassword); err != nil {
				return err
			}
			if in.CurrentPassword == nil {
				return apperr.Invalid(MsgWrongPassword)
			}
			if err := s.checkCurrentPassword(ctx, in.IP, addr, stored, *in.CurrentPassword); err != nil {
				return err
			}
			h, err := s.hasher.Hash(newPassword)
			if err != nil {
				return err
			}
			newHash = &h
		}
		if err := updateProfile(ctx, tx, userID, meta, newHash); err != nil {
			return err
		}
		if newHash == nil {
			return nil
		}
		if err := auth.BumpVersion(ctx, tx, userID); err != nil {
			return err
		}
		version, err = tokenVersion(ctx, tx, userID)
		return err
	})
	if err != nil || newHash == nil {
		return "", err
	}
	s.log.Info("password changed", zap.Int64("user_id", userID))
	tok, _, err := s.issuer.Issue(userID, version)
	if err != nil {
		return "", fmt.Errorf("issue token after password change: %w", err)
	}
	return tok, nil
}

// checkCurrentPassword verifies the current password of the account addr
// under the login lockout: 429 while ip is locked out, a wrong password is
// counted as a failure and answered 400, a correct one clears ip's count.
// Lockout errors fail open, as in Login. The account's slow-down is not
// waited out here (the row lock is held); the route's per-user rate limit
// bounds these checks instead.
func (s *Service) checkCurrentPassword(ctx context.Context, ip, addr, stored, password string) error {
	if d, err := s.lockout.Locked(ctx, ip, addr); err != nil {
		s.log.Warn("login lockout unavailable", zap.Error(err))
	} else if d > 0 {
		return apperr.TooManyRequests(MsgTooManyFailures).WithRetryAfter(d)
	}
	ok := false
	if len(password) <= MaxPasswordLen {
		ok, _ = s.hasher.Verify(stored, password)
	}
	if !ok {
		if _, err := s.lockout.Fail(ctx, ip, addr); err != nil {
			s.log.Warn("login lockout unavailable", zap.Error(err))
		}
		return apperr.Invalid(MsgWrongPassword)
	}
	if err := s.lockout.Succeeded(ctx, ip, addr); err != nil {
		s.log.Warn("login lockout unavailable", zap.Error(err))
	}
	return nil
}
