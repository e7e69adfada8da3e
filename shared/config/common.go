package config

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// DevJWTSecret is the fixed signing secret of the local stack. Production
// refuses it (see ShippedSecrets and Loader.Err).
const DevJWTSecret = "dev-only-jwt-secret-change-me-0123456789abcdef"

// DevChallengeToken is the local stack's challenge token. Production
// refuses it (see ShippedSecrets and Loader.Err).
const DevChallengeToken = "dev-challenge-token"

// Common holds the settings every service shares.
type Common struct {
	// Environment is "local" (the default; development secrets allowed)
	// or "production" (legacy key `environment`; shipped, placeholder and
	// short secrets refused, see Loader.Err).
	Environment string
	// HTTPAddr is the listen address, e.g. "127.0.0.1:8081".
	HTTPAddr string
	// DatabaseURL is the PostgreSQL URL (pgx syntax).
	DatabaseURL string
	// RedisURL is the Redis URL, e.g. "redis://127.0.0.1:6379/0".
	RedisURL string
	// RedisPrefix prefixes every Redis key and channel (isolation).
	RedisPrefix string
	// LogFormat is "json" or "console"; LogLevel a zap level name.
	LogFormat, LogLevel string
	// JWTSecrets are the HS256 secrets: the first signs, all verify (the
	// later ones during a rotation window). Legacy key `secret_key`.
	JWTSecrets [][]byte
	// ChallengeTokens are the accepted challenge-token header values, the
	// first current (legacy key `challenge_token`).
	ChallengeTokens []string
	// LegacyTokenCutoff, when set, is the instant from which tokens the
	// old system issued (no version claim) are refused by every service
	// (LEGACY_TOKEN_CUTOFF, RFC 3339); zero means they stay valid until the
	// user's first password change or reset.
	LegacyTokenCutoff time.Time
	// AdminToken guards operator routes; empty disables them.
	AdminToken string
	// AppBaseURL is the frontend base for links in emails.
	AppBaseURL string
	// BodyLimit is the maximum request body in bytes (default 5 MiB).
	BodyLimit int64
	// RateLimits turns every rate limit on or off.
	RateLimits bool
	// TrustedProxies are peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// ShutdownTimeout bounds the graceful drain.
	ShutdownTimeout time.Duration
	// AnonymousUserID is the legacy anonymous account (67).
	AnonymousUserID int64
	// AnonymousEnabled allows token-less generation as AnonymousUserID.
	AnonymousEnabled bool
}

// Shared returns c. A service's Config embeds Common and so has Shared
// too: code common to every service (shared/service) reads the shared
// settings of any service's Config through it.
func (c Common) Shared() Common { return c }

// LoadCommon reads the shared settings. defaultAddr is the service's own
// default listen address.
func LoadCommon(l *Loader, defaultAddr string) Common {
	env := l.String("ENVIRONMENT", "environment", "local")
	secrets := [][]byte{[]byte(l.Secret("JWT_SECRET", "secret_key", DevJWTSecret))}
	for _, s := range l.Secrets("JWT_PREVIOUS_SECRETS", "") {
		secrets = append(secrets, []byte(s))
	}
	tokens := append([]string{l.Secret("CHALLENGE_TOKEN", "challenge_token", DevChallengeToken)},
		l.Secrets("CHALLENGE_PREVIOUS_TOKENS", "")...)
	return Common{
		Environment:       env,
		HTTPAddr:          l.String("HTTP_ADDR", "", defaultAddr),
		DatabaseURL:       l.URL("DATABASE_URL", "", "postgres://postgres@127.0.0.1:5432/nounsai?sslmode=disable"),
		RedisURL:          l.URL("REDIS_URL", "", "redis://127.0.0.1:6379/0"),
		RedisPrefix:       l.String("REDIS_PREFIX", "", "nounsai:"),
		LogFormat:         l.String("LOG_FORMAT", "", "json"),
		LogLevel:          l.String("LOG_LEVEL", "", "info"),
		JWTSecrets:        secrets,
		ChallengeTokens:   tokens,
		AdminToken:        l.Secret("ADMIN_TOKEN", "admin_token", ""),
		LegacyTokenCutoff: l.Time("LEGACY_TOKEN_CUTOFF", ""),
		AppBaseURL:        strings.TrimRight(l.String("APP_BASE_URL", "app_base_url", "http://127.0.0.1:8080"), "/"),
		BodyLimit:         l.Int64("BODY_LIMIT", "", 5<<20),
		RateLimits:        l.Bool("RATE_LIMITS", "", true),
		TrustedProxies:    l.Prefixes("TRUSTED_PROXIES", "", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}),
		ShutdownTimeout:   l.Duration("SHUTDOWN_TIMEOUT", "", 8*time.Second),
		AnonymousUserID:   l.Int64("ANONYMOUS_USER_ID", "", 67),
		AnonymousEnabled:  l.Bool("ANONYMOUS_ENABLED", "", true),
	}
}

// Validate reports every bad shared setting, naming its variable. The
// production rules for secrets are checked by Loader.Err, which sees where
// each value came from.
func (c Common) Validate() error {
	var errs []error
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	if c.Environment != "local" && c.Environment != "production" {
		bad("ENVIRONMENT", "must be local or production, got %q", c.Environment)
	}
	if c.HTTPAddr == "" {
		bad("HTTP_ADDR", "must not be empty")
	}
	if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		bad("DATABASE_URL", "must be a postgres:// URL")
	}
	if u, err := url.Parse(c.RedisURL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") {
		bad("REDIS_URL", "must be a redis:// URL")
	}
	if c.LogFormat != "json" && c.LogFormat != "console" {
		bad("LOG_FORMAT", "must be json or console, got %q", c.LogFormat)
	}
	// The signing secret must be strong; secrets kept only to verify older
	// tokens (the old system's secret_key may be short) must just exist.
	if len(c.JWTSecrets[0]) < 16 {
		bad("JWT_SECRET", "must be at least 16 bytes (keep a shorter legacy secret_key in JWT_PREVIOUS_SECRETS)")
	}
	for _, s := range c.JWTSecrets[1:] {
		if len(s) == 0 {
			bad("JWT_PREVIOUS_SECRETS", "must not contain an empty secret")
		}
	}
	if c.ChallengeTokens[0] == "" {
		bad("CHALLENGE_TOKEN", "must not be empty")
	}
	if c.BodyLimit < 1024 {
		bad("BODY_LIMIT", "must be at least 1024 bytes")
	}
	if c.ShutdownTimeout <= 0 {
		bad("SHUTDOWN_TIMEOUT", "must be positive")
	}
	return errors.Join(errs...)
}
