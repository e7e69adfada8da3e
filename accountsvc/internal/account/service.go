package account

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// The flows of the Service live in one file each: signup.go,
// verification.go, login.go, reset.go, profile.go and referrals.go; the SQL
// of the users table is in users.go.

// Legacy public messages (docs/legacy-contract.md §3.1).
const (
	MsgInvalidCredentials = "Invalid credentials!"
	MsgNotVerified        = "Email not verified!"
	MsgInvalidVerifyKey   = "Invalid verification key"
	MsgInvalidResetKey    = "Invalid key"
	MsgResetKeyNotFound   = "Reset key not found"
	MsgWrongPassword      = "Current password is incorrect!"
	MsgTooManyFailures    = "Too many failed login attempts, try again later"
)

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

// Deps are the Service's collaborators, handed to NewService. All are
// required except MailLimiter (nil: no per-address cap) and Log (nil: no
// logs).
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
	pool        *pgxpool.Pool
	hasher      *Hasher
	keys        *KeyDeriver
	mailer      *Mailer
	ledger      *credits.Ledger
	credits     credits.Config
	issuer      auth.Issuer
	lockout     *Lockout
	mailLimiter *ratelimit.Limiter
	log         *zap.Logger
	cfg         Config
}

// NewService returns a Service using d's collaborators.
func NewService(d Deps, cfg Config) *Service {
	cfg.VerifyTTL = config.OrDefault(cfg.VerifyTTL, DefaultVerifyTTL)
	cfg.ResetTTL = config.OrDefault(cfg.ResetTTL, DefaultResetTTL)
	cfg.MailPerAddress = config.OrDefault(cfg.MailPerAddress, DefaultMailPerAddress)
	cfg.LoginFailureFloor = config.OrDefault(cfg.LoginFailureFloor, DefaultLoginFailureFloor)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := d.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Service{
		pool:        d.Pool,
		hasher:      d.Hasher,
		keys:        d.Keys,
		mailer:      d.Mailer,
		ledger:      d.Ledger,
		credits:     d.Credits,
		issuer:      d.Issuer,
		lockout:     d.Lockout,
		mailLimiter: d.MailLimiter,
		log:         log.Named("account"),
		cfg:         cfg,
	}
}

// now returns the clock as stored: UTC, microseconds.
func (s *Service) now() time.Time { return s.cfg.Now().UTC().Truncate(time.Microsecond) }

// mailAllowed applies the per-address email cap. Redis errors allow.
func (s *Service) mailAllowed(ctx context.Context, addr string) bool {
	if s.mailLimiter == nil {
		return true
	}
	sum := sha256.Sum256([]byte(strings.ToLower(addr)))
	res, err := s.mailLimiter.Allow(ctx, "account_mail:"+hex.EncodeToString(sum[:16]), s.cfg.MailPerAddress, time.Hour)
	if err != nil {
		s.log.Warn("email cap unavailable", zap.Error(err))
		return true
	}
	if !res.Allowed {
		s.log.Info("email skipped: per-address cap reached")
	}
	return res.Allowed
}
