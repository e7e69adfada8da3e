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
// owner gets an email instead: a new verification link while unverified
// (within the per-address email cap), otherwise a notice that someone tried
// to sign up. A verified account is not changed otherwise.
//
// A repeated signup of an unverified address with the same password is the
// same claim (a double submit, a lost email) and changes nothing but the
// link. With a different password the address is contested: two people
// claim it and the server cannot tell which one owns the inbox, whatever the
// order and whichever link the owner clicks. So a contested account keeps
// no signup's password at all (see noPassword): the verification, which
// proves the inbox, mails a set-password (reset) link instead (see Verify).
// No link can thus confirm a password that someone other than the inbox
// owner chose, and no later signup can change that.
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
		compared bool
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
			compared = !existing.verified
			return s.signupExisting(ctx, tx, existing, in.Password, now)
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
	if !compared {
		// A repeated signup of an unverified address checks the password
		// once; every other path spends the same time.
		s.hasher.VerifyDummy(in.Password)
	}
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
// signup transaction; password is the new signup's password.
func (s *Service) signupExisting(ctx context.Context, tx pgx.Tx, u *userRow, password string, now time.Time) error {
	if u.verified {
		if !s.mailAllowed(ctx, u.email) {
			return nil
		}
		return s.mailer.enqueue(ctx, tx, MailArgs{Email: MailAccountExists, To: u.email})
	}
	// Once contested the password is noPassword, which no password
	// matches: the account stays contested.
	if same, _ := s.hasher.Verify(u.hash, password); !same {
		if err := contestSignup(ctx, tx, u.id); err != nil {
			return err
		}
		s.log.Info("signup contested: verification will ask for a new password", zap.Int64("user_id", u.id))
	}
	if !s.mailAllowed(ctx, u.email) {
		// Over the email cap no new link goes out; the live one verifies
		// the account as contested or not, as decided above.
		return nil
	}
	return s.reissueVerification(ctx, tx, u, now)
}
