package account

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// Legacy public messages (docs/legacy-contract.md §3.1).
const (
	MsgInvalidCredentials = "Invalid credentials!"
	MsgNotVerified        = "Email not verified!"
	MsgInvalidVerifyKey   = "Invalid verification key"
	MsgInvalidResetKey    = "Invalid key"
	MsgResetKeyNotFound   = "Reset key not found"
	MsgWrongPassword      = "Current password is incorrect!"
	MsgTooManyFailures    = "Too many failed login attempts, try again later"
	MsgUserNotFound       = "User not found"
)

// ReferralReward is the reward_rules row paid to the referrer when a
// referred user verifies (legacy reward `referral_verify`).
const ReferralReward = "referral_verify"

// referralMemo is the legacy transactions.memo of the referral reward.
const referralMemo = "rewards_referral_verify"

// Defaults of Config.
const (
	DefaultVerifyTTL      = 7 * 24 * time.Hour
	DefaultResetTTL       = time.Hour
	DefaultMailPerAddress = 5
	// DefaultLoginFailureFloor is the least time a failed login takes. It
	// is above the slowest stored hash the service still verifies (legacy
	// sha256_crypt with 535000 rounds, about 80-150 ms) plus the database
	// lookup, so that no failure answers faster than another.
	DefaultLoginFailureFloor = 250 * time.Millisecond
)

// Config tunes the Service. Zero values take the defaults.
type Config struct {
	// VerifyTTL is the lifetime of a verification key (7 days).
	VerifyTTL time.Duration
	// ResetTTL is the lifetime of a password reset key (1 hour).
	ResetTTL time.Duration
	// MailPerAddress caps the emails that a signup with an existing
	// address, a verification resend or a reset request sends to one
	// address per hour (5), so the routes cannot flood an inbox. Requests
	// over the cap answer as usual and send nothing.
	MailPerAddress int
	// LoginFailureFloor is the least wall-clock time a failed login takes
	// (250 ms): every failure (unknown email, wrong password against any
	// hash kind, unverified, locked, internal error) is padded to it, so
	// the response time tells neither whether an address is registered nor
	// which kind of hash it has. Successful logins are not padded. A
	// failure slower than the floor is not padded further.
	LoginFailureFloor time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Deps are the Service's collaborators. All are required except
// MailLimiter (nil: no per-address cap) and Log (nil: no logs).
type Deps struct {
	Pool        *pgxpool.Pool
	Hasher      *Hasher
	Keys        *KeyDeriver
	Mailer      *Mailer
	Ledger      *credits.Ledger
	Credits     credits.Config
	Issuer      auth.Issuer
	Lockout     *Lockout
	MailLimiter *ratelimit.Limiter
	Log         *zap.Logger
}

// Service implements the account use cases. It is safe for concurrent use.
type Service struct {
	Deps
	cfg Config
}

// NewService returns a Service.
func NewService(d Deps, cfg Config) *Service {
	if cfg.VerifyTTL <= 0 {
		cfg.VerifyTTL = DefaultVerifyTTL
	}
	if cfg.ResetTTL <= 0 {
		cfg.ResetTTL = DefaultResetTTL
	}
	if cfg.MailPerAddress <= 0 {
		cfg.MailPerAddress = DefaultMailPerAddress
	}
	if cfg.LoginFailureFloor <= 0 {
		cfg.LoginFailureFloor = DefaultLoginFailureFloor
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if d.Log == nil {
		d.Log = zap.NewNop()
	}
	d.Log = d.Log.Named("account")
	return &Service{Deps: d, cfg: cfg}
}

// now returns the clock as stored: UTC, microseconds.
func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

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
	hash, err := s.Hasher.Hash(in.Password)
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
	err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		existing, err = findUserByEmail(ctx, tx, addr, true)
		if err != nil {
			return err
		}
		if existing == nil {
			var inserted bool
			id, inserted, err = insertUser(ctx, tx, addr, hash, hashKey(s.Keys.derive(purposeVerify, nonce)),
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
		if g, ok := s.Credits.SignupBonus(id, now); ok {
			if _, err := s.Ledger.Grant(ctx, tx, g); err != nil {
				return fmt.Errorf("signup bonus: %w", err)
			}
		}
		return s.Mailer.enqueue(ctx, tx, MailArgs{Email: MailVerification, To: addr, Nonce: nonce})
	})
	if err != nil {
		return 0, fmt.Errorf("sign up: %w", err)
	}
	if existing != nil {
		// The same answer as a new account: the next id of the sequence.
		return nextUserID(ctx, s.Pool)
	}
	s.Log.Info("user signed up", zap.Int64("user_id", id))
	return id, nil
}

// signupExisting handles a signup with a registered address inside the
// signup transaction; hash is the new signup's password hash.
func (s *Service) signupExisting(ctx context.Context, tx pgx.Tx, u *userRow, hash string, now time.Time) error {
	if u.verified {
		if !s.mailAllowed(ctx, u.email) {
			return nil
		}
		return s.Mailer.enqueue(ctx, tx, MailArgs{Email: MailAccountExists, To: u.email})
	}
	if !s.mailAllowed(ctx, u.email) {
		// Over the email cap no new link goes out, but the newest signup's
		// password still becomes the pending one: the live link in the
		// owner's inbox confirms the password the owner chose last, never
		// one set before by someone else (who could exhaust the cap first).
		const q = `UPDATE users SET pending_password = $2 WHERE id = $1 AND NOT is_verified`
		if _, err := tx.Exec(ctx, q, u.id, hash); err != nil {
			return fmt.Errorf("store pending password of user %d: %w", u.id, err)
		}
		return nil
	}
	return s.reissueVerification(ctx, tx, u, &hash, now)
}

// reissueVerification replaces the user's verification key (the old link
// stops working) and queues the email with the new one. A non-nil
// pendingHash (a repeated signup) becomes the pending password that the new
// key confirms; nil (a resend) keeps the pending password as it is.
func (s *Service) reissueVerification(ctx context.Context, tx pgx.Tx, u *userRow, pendingHash *string, now time.Time) error {
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	const q = `
UPDATE users SET verify_key = $2, verify_key_expires_at = $3, pending_password = COALESCE($4, pending_password)
WHERE id = $1 AND NOT is_verified`
	if _, err := tx.Exec(ctx, q, u.id, hashKey(s.Keys.derive(purposeVerify, nonce)), now.Add(s.cfg.VerifyTTL), pendingHash); err != nil {
		return fmt.Errorf("reissue verification key of user %d: %w", u.id, err)
	}
	return s.Mailer.enqueue(ctx, tx, MailArgs{Email: MailVerification, To: u.email, Nonce: nonce})
}

// addReferral records that token's owner referred the new user. An unusable
// or unknown token is logged and ignored (legacy C2).
func (s *Service) addReferral(ctx context.Context, tx pgx.Tx, userID int64, token string, now time.Time) error {
	if token == "" {
		return nil
	}
	if !usableToken(token) {
		s.Log.Info("referral token ignored", zap.Int64("user_id", userID), zap.String("reason", "malformed"))
		return nil
	}
	var referrer int64
	err := tx.QueryRow(ctx, `SELECT id FROM users WHERE referral_token = $1 ORDER BY id LIMIT 1`, token).Scan(&referrer)
	if errors.Is(err, pgx.ErrNoRows) {
		s.Log.Info("referral token ignored", zap.Int64("user_id", userID), zap.String("reason", "unknown"))
		return nil
	}
	if err != nil {
		return fmt.Errorf("look up referral token: %w", err)
	}
	const q = `INSERT INTO referrals (referrer_id, referred_id, metadata, created_at, updated_at) VALUES ($1, $2, '{}', $3, $3)`
	if _, err := tx.Exec(ctx, q, referrer, userID, now); err != nil {
		return fmt.Errorf("insert referral of user %d by %d: %w", userID, referrer, err)
	}
	return nil
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
	return db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		u, err := findUserByEmail(ctx, tx, addr, true)
		if err != nil || u == nil || u.verified || !s.mailAllowed(ctx, u.email) {
			return err
		}
		return s.reissueVerification(ctx, tx, u, nil, now)
	})
}

// Verify marks the key's user verified and consumes the key. A pending
// password (left by a repeated signup, see Signup) replaces the password in
// the same statement and bumps the token version, so that no token of an
// earlier signup is accepted. In the same transaction it pays the referral reward to the referrer, at most once per
// referred user (reward_payouts is unique per reward and referred user, and
// the verification itself can only succeed once). It returns the user's id.
func (s *Service) Verify(ctx context.Context, key string) (int64, error) {
	if key == "" || len(key) > 256 {
		return 0, apperr.Invalid(MsgInvalidVerifyKey)
	}
	now := s.now()
	var id int64
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		const q = `
UPDATE users SET is_verified = TRUE, verify_key = NULL, verify_key_expires_at = NULL,
    password = COALESCE(pending_password, password), pending_password = NULL,
    token_version = token_version + CASE WHEN pending_password IS NULL THEN 0 ELSE 1 END
WHERE verify_key = ANY($1) AND NOT is_verified
  AND COALESCE(verify_key_expires_at, created_at + make_interval(secs => $3)) > $2
RETURNING id`
		err := tx.QueryRow(ctx, q, keyCandidates(key), now, s.cfg.VerifyTTL.Seconds()).Scan(&id)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Invalid(MsgInvalidVerifyKey)
		}
		if err != nil {
			return fmt.Errorf("verify user: %w", err)
		}
		return s.payReferralReward(ctx, tx, id, now)
	})
	if err != nil {
		return 0, err
	}
	s.Log.Info("user verified", zap.Int64("user_id", id))
	return id, nil
}

// payReferralReward pays the referral_verify reward for referred user id,
// if they were referred, the rule exists and it was not paid before, and
// marks metadata.rewards_referral_verify on the referred user as the legacy
// system did. A missing rule is logged, never an error (legacy C3).
func (s *Service) payReferralReward(ctx context.Context, tx pgx.Tx, id int64, now time.Time) error {
	var referrer int64
	err := tx.QueryRow(ctx, `SELECT referrer_id FROM referrals WHERE referred_id = $1 ORDER BY id LIMIT 1`, id).Scan(&referrer)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read referral of user %d: %w", id, err)
	}
	var (
		amount int64
		days   *int
	)
	err = tx.QueryRow(ctx, `SELECT amount, expires_in_days FROM reward_rules WHERE name = $1 AND enabled`, ReferralReward).
		Scan(&amount, &days)
	if errors.Is(err, pgx.ErrNoRows) {
		s.Log.Warn("referral reward rule missing or disabled", zap.String("reward", ReferralReward), zap.Int64("user_id", id))
		return nil
	}
	if err != nil {
		return fmt.Errorf("read reward rule: %w", err)
	}
	var payout int64
	const ins = `
INSERT INTO reward_payouts (reward_name, referred_id, referrer_id, amount, created_at)
VALUES ($1, $2, $3, $4, $5)
ON CONFLICT ON CONSTRAINT reward_payouts_once DO NOTHING
RETURNING id`
	err = tx.QueryRow(ctx, ins, ReferralReward, id, referrer, amount, now).Scan(&payout)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // paid before
	}
	if err != nil {
		return fmt.Errorf("record referral payout for user %d: %w", id, err)
	}
	if amount > 0 {
		in := credits.GrantInput{
			UserID: referrer, Amount: amount, Memo: referralMemo,
			IdempotencyKey: fmt.Sprintf("%s:%d", ReferralReward, id),
		}
		if days != nil {
			t := now.Add(time.Duration(*days) * 24 * time.Hour)
			in.ExpiresAt = &t
		}
		g, err := s.Ledger.Grant(ctx, tx, in)
		if err != nil {
			return fmt.Errorf("grant referral reward: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE reward_payouts SET transaction_id = $2 WHERE id = $1`, payout, g.ID); err != nil {
			return fmt.Errorf("link referral payout: %w", err)
		}
	}
	if err := markRewarded(ctx, tx, id); err != nil {
		return err
	}
	s.Log.Info("referral reward paid", zap.Int64("user_id", id), zap.Int64("referrer_id", referrer), zap.Int64("amount", amount))
	return nil
}

// markRewarded sets metadata.rewards_referral_verify = true on the user. The
// merge is done in Go so that legacy metadata that jsonb would refuse
// cannot fail the verification; non-object metadata is left alone.
func markRewarded(ctx context.Context, tx pgx.Tx, id int64) error {
	var raw []byte
	if err := tx.QueryRow(ctx, `SELECT metadata FROM users WHERE id = $1`, id).Scan(&raw); err != nil {
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
	if _, err := tx.Exec(ctx, `UPDATE users SET metadata = $2 WHERE id = $1`, id, string(out)); err != nil {
		return fmt.Errorf("mark referral reward on user %d: %w", id, err)
	}
	return nil
}

// LoginResult is a successful login.
type LoginResult struct {
	UserID int64
	Token  string
}

// Login checks email and password. Unknown emails and wrong passwords give
// the same 401 in about the same time (a dummy hash is verified); an
// unverified account gets 400 only after a correct password. Failures are
// counted per IP and per account; a locked subject gets 429 with
// RetryAfter. Every failure takes at least Config.LoginFailureFloor. A
// legacy or weaker hash is replaced by an argon2id one after a successful
// check, guarded by the old value.
func (s *Service) Login(ctx context.Context, ip, emailIn, password string) (_ LoginResult, err error) {
	start := time.Now() // wall clock (monotonic), not the injected one
	defer func() {
		if err != nil {
			padUntil(ctx, start, s.cfg.LoginFailureFloor)
		}
	}()
	if d, err := s.Lockout.Locked(ctx, ip, emailIn); err != nil {
		s.Log.Warn("login lockout unavailable", zap.Error(err))
	} else if d > 0 {
		return LoginResult{}, apperr.TooManyRequests(MsgTooManyFailures).WithRetryAfter(d)
	}
	var u *userRow
	if addr, err := NormalizeEmail(emailIn); err == nil && len(password) <= MaxPasswordLen {
		if u, err = findUserByEmail(ctx, s.Pool, addr, false); err != nil {
			return LoginResult{}, fmt.Errorf("login: %w", err)
		}
	}
	ok, rehash := false, false
	if u == nil {
		s.Hasher.VerifyDummy(password)
	} else {
		ok, rehash = s.Hasher.Verify(u.hash, password)
	}
	if !ok {
		if err := s.Lockout.Fail(ctx, ip, emailIn); err != nil {
			s.Log.Warn("login lockout unavailable", zap.Error(err))
		}
		return LoginResult{}, apperr.Unauthorized(MsgInvalidCredentials)
	}
	if err := s.Lockout.Reset(ctx, emailIn); err != nil {
		s.Log.Warn("login lockout unavailable", zap.Error(err))
	}
	if rehash {
		s.upgradeHash(ctx, u, password)
	}
	if !u.verified {
		return LoginResult{}, apperr.Invalid(MsgNotVerified)
	}
	tok, _, err := s.Issuer.Issue(u.id, u.tokenVersion)
	if err != nil {
		return LoginResult{}, fmt.Errorf("login: %w", err)
	}
	return LoginResult{UserID: u.id, Token: tok}, nil
}

// padUntil waits until floor has passed since start, or ctx is done.
func padUntil(ctx context.Context, start time.Time, floor time.Duration) {
	left := floor - time.Since(start)
	if left <= 0 {
		return
	}
	t := time.NewTimer(left)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// upgradeHash stores an argon2id hash of password in place of u's legacy
// one, unless the hash changed meanwhile. Failure only costs the upgrade.
func (s *Service) upgradeHash(ctx context.Context, u *userRow, password string) {
	hash, err := s.Hasher.Hash(password)
	if err == nil {
		_, err = s.Pool.Exec(ctx, `UPDATE users SET password = $3 WHERE id = $1 AND password = $2`, u.id, u.hash, hash)
	}
	if err != nil {
		s.Log.Warn("password hash upgrade failed", zap.Int64("user_id", u.id), zap.Error(err))
		return
	}
	s.Log.Info("password hash upgraded", zap.Int64("user_id", u.id))
}

// RequestReset creates a reset key for the account of email (replacing any
// older key) and queues the email, in one transaction. Unknown addresses do
// nothing; the caller answers the same either way.
func (s *Service) RequestReset(ctx context.Context, emailIn string) error {
	addr, err := NormalizeEmail(emailIn)
	if err != nil {
		return nil //nolint:nilerr // a malformed address names no account; answer as usual
	}
	nonce, err := newNonce()
	if err != nil {
		return err
	}
	now := s.now()
	return db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		u, err := findUserByEmail(ctx, tx, addr, true)
		if err != nil || u == nil || !s.mailAllowed(ctx, u.email) {
			return err
		}
		if _, err := tx.Exec(ctx, `DELETE FROM password_recovery WHERE user_id = $1`, u.id); err != nil {
			return fmt.Errorf("delete old reset keys of user %d: %w", u.id, err)
		}
		const q = `INSERT INTO password_recovery (user_id, reset_key, created_at) VALUES ($1, $2, $3)`
		if _, err := tx.Exec(ctx, q, u.id, hashKey(s.Keys.derive(purposeReset, nonce)), now); err != nil {
			return fmt.Errorf("insert reset key of user %d: %w", u.id, err)
		}
		return s.Mailer.enqueue(ctx, tx, MailArgs{Email: MailReset, To: u.email, Nonce: nonce})
	})
}

// CheckReset returns when a live reset key expires, or 400 "Invalid key".
func (s *Service) CheckReset(ctx context.Context, key string) (time.Time, error) {
	if key == "" || len(key) > 256 {
		return time.Time{}, apperr.Invalid(MsgInvalidResetKey)
	}
	var created time.Time
	const q = `SELECT created_at FROM password_recovery WHERE reset_key = ANY($1) ORDER BY created_at DESC LIMIT 1`
	err := s.Pool.QueryRow(ctx, q, keyCandidates(key)).Scan(&created)
	if errors.Is(err, pgx.ErrNoRows) {
		return time.Time{}, apperr.Invalid(MsgInvalidResetKey)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("check reset key: %w", err)
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
	hash, err := s.Hasher.Hash(password)
	if err != nil {
		return err
	}
	now := s.now()
	var (
		userID int64
		addr   string
	)
	err = db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		var created time.Time
		const sel = `
SELECT user_id, created_at FROM password_recovery
WHERE reset_key = ANY($1) ORDER BY created_at DESC LIMIT 1 FOR UPDATE`
		err := tx.QueryRow(ctx, sel, keyCandidates(key)).Scan(&userID, &created)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && !now.Before(created.Add(s.cfg.ResetTTL))) {
			return apperr.Invalid(MsgResetKeyNotFound)
		}
		if err != nil {
			return fmt.Errorf("read reset key: %w", err)
		}
		// The reset key proves the inbox as a verification key does; a
		// pending password of an earlier signup must not override it later.
		const upd = `UPDATE users SET password = $2, pending_password = NULL WHERE id = $1 RETURNING email`
		err = tx.QueryRow(ctx, upd, userID, hash).Scan(&addr)
		if errors.Is(err, pgx.ErrNoRows) {
			return apperr.Invalid(MsgResetKeyNotFound) // key of a deleted user
		}
		if err != nil {
			return fmt.Errorf("set password of user %d: %w", userID, err)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM password_recovery WHERE user_id = $1`, userID); err != nil {
			return fmt.Errorf("delete reset keys of user %d: %w", userID, err)
		}
		return auth.BumpVersion(ctx, tx, userID)
	})
	if err != nil {
		return err
	}
	if err := s.Lockout.Reset(ctx, addr); err != nil {
		s.Log.Warn("login lockout unavailable", zap.Error(err))
	}
	s.Log.Info("password reset", zap.Int64("user_id", userID))
	return nil
}

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
	var p Profile
	var meta []byte
	const q = `SELECT id, email, is_verified, referral_token, metadata, created_at FROM users WHERE id = $1`
	err := s.Pool.QueryRow(ctx, q, userID).Scan(&p.ID, &p.Email, &p.Verified, &p.ReferralToken, &meta, &p.CreatedAt)
	if err != nil {
		return Profile{}, db.Interpret(err, "User")
	}
	p.Metadata = meta
	return p, nil
}

// UpdateInput is a profile update. Nil fields are left unchanged.
type UpdateInput struct {
	// Metadata replaces the metadata when not nil.
	Metadata json.RawMessage
	// Password is the new password. Nil, empty, or equal to the stored hash
	// (the legacy frontend echoes the row it read) leaves it unchanged.
	Password *string
	// CurrentPassword must match for a password change. A wrong one counts
	// as a failed login of the account (and of IP) in the lockout.
	CurrentPassword *string
	// IP is the client address for the lockout; "" counts only the account.
	IP string
}

// UpdateProfile replaces the metadata and, with a correct current
// password, changes the password (argon2id) and bumps the token version in
// the same transaction. It returns a fresh token when the password changed
// (every older token is refused from then on), else "".
//
// Checking the current password is guarded by the login lockout (Lockout):
// while the account or IP is locked it answers 429 with RetryAfter without
// checking, a wrong current password is counted as a failed login and a
// correct one clears the account's failures, so a stolen token cannot guess
// the password faster than a login could.
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
	err := db.InTx(ctx, s.Pool, func(tx pgx.Tx) error {
		var stored, addr string
		err := tx.QueryRow(ctx, `SELECT password, email FROM users WHERE id = $1 FOR UPDATE`, userID).Scan(&stored, &addr)
		if err != nil {
			return db.Interpret(err, "User")
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
			h, err := s.Hasher.Hash(newPassword)
			if err != nil {
				return err
			}
			newHash = &h
		}
		const upd = `UPDATE users SET metadata = COALESCE($2::json, metadata), password = COALESCE($3, password) WHERE id = $1`
		if _, err := tx.Exec(ctx, upd, userID, meta, newHash); err != nil {
			return fmt.Errorf("update user %d: %w", userID, err)
		}
		if newHash == nil {
			return nil
		}
		if err := auth.BumpVersion(ctx, tx, userID); err != nil {
			return err
		}
		return tx.QueryRow(ctx, `SELECT token_version FROM users WHERE id = $1`, userID).Scan(&version)
	})
	if err != nil || newHash == nil {
		return "", err
	}
	s.Log.Info("password changed", zap.Int64("user_id", userID))
	tok, _, err := s.Issuer.Issue(userID, version)
	if err != nil {
		return "", fmt.Errorf("issue token after password change: %w", err)
	}
	return tok, nil
}

// checkCurrentPassword verifies the current password of the account addr
// under the login lockout: 429 while locked, a wrong password is counted as
// a failure and answered 400, a correct one resets the account's count.
// Lockout errors fail open, as in Login.
func (s *Service) checkCurrentPassword(ctx context.Context, ip, addr, stored, password string) error {
	if d, err := s.Lockout.Locked(ctx, ip, addr); err != nil {
		s.Log.Warn("login lockout unavailable", zap.Error(err))
	} else if d > 0 {
		return apperr.TooManyRequests(MsgTooManyFailures).WithRetryAfter(d)
	}
	ok := false
	if len(password) <= MaxPasswordLen {
		ok, _ = s.Hasher.Verify(stored, password)
	}
	if !ok {
		if err := s.Lockout.Fail(ctx, ip, addr); err != nil {
			s.Log.Warn("login lockout unavailable", zap.Error(err))
		}
		return apperr.Invalid(MsgWrongPassword)
	}
	if err := s.Lockout.Reset(ctx, addr); err != nil {
		s.Log.Warn("login lockout unavailable", zap.Error(err))
	}
	return nil
}

// ReferralToken returns the user's referral token, creating it (96 hex
// characters) the first time.
func (s *Service) ReferralToken(ctx context.Context, userID int64) (string, error) {
	var tok *string
	err := s.Pool.QueryRow(ctx, `SELECT referral_token FROM users WHERE id = $1`, userID).Scan(&tok)
	if err != nil {
		return "", db.Interpret(err, "User")
	}
	if tok != nil && *tok != "" {
		return *tok, nil
	}
	fresh, err := randomHex(KeyHexLen / 2)
	if err != nil {
		return "", err
	}
	const q = `
UPDATE users SET referral_token = COALESCE(NULLIF(referral_token, ''), $2)
WHERE id = $1 RETURNING referral_token`
	var got string
	if err := s.Pool.QueryRow(ctx, q, userID, fresh).Scan(&got); err != nil {
		return "", db.Interpret(err, "User")
	}
	return got, nil
}

// Referral is one user the caller referred.
type Referral struct {
	UserID    int64
	Verified  bool
	CreatedAt time.Time
}

// Referrals is the caller's referral summary.
type Referrals struct {
	// Users is one page of referred users, newest first.
	Users []Referral
	// Total is the number of referred users.
	Total int64
	// CreditsEarned is the sum of the referral rewards paid.
	CreditsEarned int64
}

// MaxPageSize bounds list pages.
const MaxPageSize = 100

// Referrals returns the users userID referred (page is 1-based) and the
// credits earned from them.
func (s *Service) Referrals(ctx context.Context, userID int64, page, limit int) (Referrals, error) {
	limit = min(max(limit, 1), MaxPageSize)
	page = min(max(page, 1), 1_000_000)
	var out Referrals
	const q = `
SELECT u.id, u.is_verified, u.created_at
FROM referrals r JOIN users u ON u.id = r.referred_id
WHERE r.referrer_id = $1
ORDER BY r.id DESC LIMIT $2 OFFSET $3`
	rows, err := s.Pool.Query(ctx, q, userID, limit, int64(page-1)*int64(limit))
	if err != nil {
		return Referrals{}, fmt.Errorf("list referrals of user %d: %w", userID, err)
	}
	out.Users, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (Referral, error) {
		var x Referral
		err := r.Scan(&x.UserID, &x.Verified, &x.CreatedAt)
		return x, err
	})
	if err != nil {
		return Referrals{}, fmt.Errorf("list referrals of user %d: %w", userID, err)
	}
	const sums = `
SELECT (SELECT count(*) FROM referrals WHERE referrer_id = $1),
       (SELECT COALESCE(sum(amount), 0) FROM reward_payouts WHERE referrer_id = $1)`
	if err := s.Pool.QueryRow(ctx, sums, userID).Scan(&out.Total, &out.CreditsEarned); err != nil {
		return Referrals{}, fmt.Errorf("sum referrals of user %d: %w", userID, err)
	}
	return out, nil
}

// mailAllowed applies the per-address email cap. Redis errors allow.
func (s *Service) mailAllowed(ctx context.Context, addr string) bool {
	if s.MailLimiter == nil {
		return true
	}
	sum := sha256.Sum256([]byte(strings.ToLower(addr)))
	res, err := s.MailLimiter.Allow(ctx, "account_mail:"+hex.EncodeToString(sum[:16]), s.cfg.MailPerAddress, time.Hour)
	if err != nil {
		s.Log.Warn("email cap unavailable", zap.Error(err))
		return true
	}
	if !res.Allowed {
		s.Log.Info("email skipped: per-address cap reached")
	}
	return res.Allowed
}

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
func insertUser(ctx context.Context, tx pgx.Tx, addr, hash, verifyKeyHash string, verifyExpires time.Time,
	meta json.RawMessage, now time.Time,
) (id int64, inserted bool, err error) {
	const q = `
INSERT INTO users (email, password, is_verified, verify_key, verify_key_expires_at, metadata, created_at)
VALUES ($1, $2, FALSE, $3, $4, $5::json, $6)
ON CONFLICT DO NOTHING
RETURNING id`
	err = tx.QueryRow(ctx, q, addr, hash, verifyKeyHash, verifyExpires, string(meta), now).Scan(&id)
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
