package account

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/clock"
)

// LoginResult is a successful login.
type LoginResult struct {
	UserID int64
	Token  string
}

// Login checks email and password from client address ip. Unknown emails
// and wrong passwords give the same 401 in about the same time (a dummy hash
// is verified); an unverified account gets 400 only after a correct
// password. Failures go to the Lockout: an address locked out of the
// account (or out of every account) gets 429 with RetryAfter before any
// check, and a failure answers no sooner than the account's slow-down.
// Every failure takes at least Config.LoginFailureFloor. A legacy or weaker
// hash is replaced by an argon2id one after a successful check, guarded by
// the old value.
func (s *Service) Login(ctx context.Context, ip, emailIn, password string) (_ LoginResult, err error) {
	start := time.Now() // wall clock (monotonic), not the injected one
	pad := s.cfg.LoginFailureFloor
	defer func() {
		if err != nil {
			padUntil(ctx, start, pad)
		}
	}()
	if d, err := s.lockout.Locked(ctx, ip, emailIn); err != nil {
		s.log.Warn("login lockout unavailable", zap.Error(err))
	} else if d > 0 {
		return LoginResult{}, apperr.TooManyRequests(MsgTooManyFailures).WithRetryAfter(d)
	}
	var u *userRow
	if addr, err := NormalizeEmail(emailIn); err == nil && len(password) <= MaxPasswordLen {
		if u, err = findUserByEmail(ctx, s.pool, addr, false); err != nil {
			return LoginResult{}, fmt.Errorf("login: %w", err)
		}
	}
	ok, rehash := false, false
	if u == nil {
		s.hasher.VerifyDummy(password)
	} else {
		ok, rehash = s.hasher.Verify(u.hash, password)
	}
	if !ok {
		if d, err := s.lockout.Fail(ctx, ip, emailIn); err != nil {
			s.log.Warn("login lockout unavailable", zap.Error(err))
		} else {
			pad = max(pad, d)
		}
		return LoginResult{}, apperr.Unauthorized(MsgInvalidCredentials)
	}
	if err := s.lockout.Succeeded(ctx, ip, emailIn); err != nil {
		s.log.Warn("login lockout unavailable", zap.Error(err))
	}
	if rehash {
		s.upgradeHash(ctx, u, password)
	}
	if !u.verified {
		return LoginResult{}, apperr.Invalid(MsgNotVerified)
	}
	tok, _, err := s.issuer.Issue(u.id, u.tokenVersion)
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	return LoginResult{UserID: u.id, Token: tok}, nil
}

// padUntil waits until floor has passed since start, or ctx is done.
func padUntil(ctx context.Context, start time.Time, floor time.Duration) {
	_ = clock.Sleep(ctx, floor-time.Since(start))
}

// upgradeHash stores an argon2id hash of password in place of u's legacy
// one, unless the hash changed meanwhile. Failure only costs the upgrade.
func (s *Service) upgradeHash(ctx context.Context, u *userRow, password string) {
	hash, err := s.hasher.Hash(password)
	if err == nil {
		err = replacePasswordHash(ctx, s.pool, u.id, u.hash, hash)
	}
	if err != nil {
		s.log.Warn("password hash upgrade failed", zap.Int64("user_id", u.id), zap.Error(err))
		return
	}
	s.log.Info("password hash upgraded", zap.Int64("user_id", u.id))
}
