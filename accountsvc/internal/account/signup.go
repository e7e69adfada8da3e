package account

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/db"
)

// SignupInput is a sign-up request.
type SignupInput struct {
	Email, Password string
	// Metadata is the client-owned JSON object; nil means {}.
	Metadata json.RawMessage
	// ReferralToken is the referrer's token; "" for none.
	ReferralToken string
}

// Signup creates an unverified account, its verification key, its
// referral (when the token names a user; an unknown token is ignored) and
// the signup bonus in one transaction, and queues the verification email in
// the same transaction. It returns the new user's id.
//
// An address that already has an account gets the same kind of answer (a
// fresh id from the same sequence, so nothing tells the two apart) and the
// owner gets an email instead: a new verification link while unverified,
// otherwise a notice that someone tried to sign up. A verified account is
// not changed otherwise. An unverified one keeps the new signup's password
// hash as pending with the new link, and verifying with that link makes it
// the password (see Verify): whoever signed up first with someone else's
// address cannot keep a password on the account the owner verifies.
func (s *Service) Signup(ctx context.Context, in SignupInput) (int64, error) {
	addr, err := NormalizeEmail(in.Email)
	if err != nil {
		return 0, err
	}
	if err := ValidatePassword(in.Password); err != nil {
		return 0, err
	}
	meta, err := NormalizeMetadata(in.Metadata)
	if err != nil {
		return 0, err
	}
	// Hash first, on every path, so that the time taken does not tell a new
	// address from a registered one.
	hash, err := s.hasher.Hash(in.Password)
	if err != nil {
		return 0, err
	}
	nonce, err := newNonce()
	if err != nil {
		return 0, err
	}
	now := s.now()

	var (
		id       int64
		existing *userRow
	)
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		existing, err = findUserByEmail(ctx, tx, addr, true)
		if err != nil {
			return err
		}
		if existing == nil {
			var inserted bool
			id, inserted, err = insertUser(ctx, tx, addr, hash, hashKey(s.keys.derive(purposeVerify, nonce)),
				now.Add(s.cfg.VerifyTTL), meta, now)
			if err != nil {
				return err
			}
			if !inserted {
				// A concurrent signup with the same address won the race.
				if existing, err = findUserByEmail(ctx, tx, addr, true); err != nil {
					return err
				}
				if existing == nil {
					return errors.New("signup: address conflict without a row")
				}
			}
		}
		if existing != nil {
			return s.signupExisting(ctx, tx, existing, hash, now)
		}
		if err := s.addReferral(ctx, tx, id, in.ReferralToken, now); err != nil {
			return err
		}
		if g, ok := s.credits.SignupBonus(id, now); ok {
			if _, err := s.ledger.Grant(ctx, tx, g); err != nil {
				return fmt.Errorf("signup bonus: %w", err)
			}
		}
		return s.mailer.enqueue(ctx, tx, MailArgs{Email: MailVerification, To: addr, Nonce: nonce})
	})
	if err != nil {
		return 0, fmt.Errorf("sign up: %w", err)
	}
	if existing != nil {
		// The same answer as a new account: the next id of the sequence.
		return nextUserID(ctx, s.pool)
	}
	s.log.Info("user signed up", zap.Int64("user_id", id))
	return id, nil
}

// signupExisting handles a signup with a registered address inside the
// signup transaction; hash is the new signup's password hash.
func (s *Service) signupExisting(ctx context.Context, tx pgx.Tx, u *userRow, hash string, now time.Time) error {
	if u.verified {
		if !s.mailAllowed(ctx, u.email) {
			return nil
		}
		return s.mailer.enqueue(ctx, tx, MailArgs{Email: MailAccountExists, To: u.email})
	}
	if !s.mailAllowed(ctx, u.email) {
		// Over the email cap no new link goes out, but the newest signup's
		// password still becomes the pending one: the live link in the
		// owner's inbox confirms the password the owner chose last, never
		// one set before by someone else (who could exhaust the cap first).
		return setPendingPassword(ctx, tx, u.id, hash)
	}
	return s.reissueVerification(ctx, tx, u, &hash, now)
}
