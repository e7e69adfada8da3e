package account

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// reissueVerification replaces the user's verification key (the old link
// stops working) and queues the email with the new one.
func (s *Service) reissueVerification(ctx context.Context, tx pgx.Tx, u *userRow, now time.Time) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	if err := setVerifyKey(ctx, tx, u.id, hashKey(s.keys.derive(purposeVerify, nonce)), now.Add(s.cfg.VerifyTTL)); err != nil {
		return err
	}
	return s.mailer.enqueue(ctx, tx, MailArgs{Email: MailVerification, To: u.email, Nonce: nonce})
}

// ResendVerification queues a fresh verification email when email names
// an unverified account; otherwise it does nothing. The caller answers the
// same either way.
func (s *Service) ResendVerification(ctx context.Context, emailIn string) error {
	addr, err := NormalizeEmail(emailIn)
	if err != nil {
		return nil //nolint:nilerr // a malformed address names no account; answer as usual
	}
	now := s.now()
	return db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		u, err := findUserByEmail(ctx, tx, addr, true)
		if err != nil || u == nil || u.verified || !s.mailAllowed(ctx, u.email) {
			return err
		}
		return s.reissueVerification(ctx, tx, u, now)
	})
}

// Verify marks the key's user verified and consumes the key. The account
// keeps the password of its signup; a contested signup (see Signup) has
// none, and the verification, which proves the inbox, queues a
// set-password email (a reset key) in the same transaction, outside the
// per-address email cap (it is sent once per verification, and whoever
// contested the address could have used the cap up). In the same
// transaction it pays the referral reward to the referrer, at most once per
// referred user (reward_payouts is unique per reward and referred user, and
// the verification itself can only succeed once). It returns the user's id.
func (s *Service) Verify(ctx context.Context, key string) (int64, error) {
	if key == "" || len(key) > 256 {
		return 0, apperr.Invalid(MsgInvalidVerifyKey)
	}
	now := s.now()
	var u verifiedUser
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var (
			ok  bool
			err error
		)
		u, ok, err = verifyUserByKey(ctx, tx, keyCandidates(key), now, s.cfg.VerifyTTL)
		if err != nil {
			return err
		}
		if !ok {
			return apperr.Invalid(MsgInvalidVerifyKey)
		}
		if u.noPassword {
			if err := s.issueResetKey(ctx, tx, u.id, u.email, now); err != nil {
				return err
			}
		}
		return s.payReferralReward(ctx, tx, u.id, now)
	})
	if err != nil {
		return 0, err
	}
	s.log.Info("user verified", zap.Int64("user_id", u.id), zap.Bool("set_password_sent", u.noPassword))
	return u.id, nil
}
