package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/nounsai/sdserver/shared/apperr"
)

// The legacy public messages of 401 responses.
const (
	MsgTokenMissing = "Token is missing!"
	MsgTokenInvalid = "Token is invalid!"
)

// DefaultTTL is the lifetime of a newly issued token when Issuer.TTL is zero.
const DefaultTTL = 30 * 24 * time.Hour

// LegacyVersion is Claims.Version of a token without a `ver` claim, i.e. one
// issued by the legacy system.
const LegacyVersion = -1

// maxTokenLen bounds the Authorization header we are willing to parse; our
// tokens are about 250 bytes.
const maxTokenLen = 4096

// Claims are the verified contents of a token.
type Claims struct {
	// UserID is the `id` claim: the user the token belongs to.
	UserID int64
	// Version is the `ver` claim, compared with users.token_version;
	// LegacyVersion (-1) for a token issued by the legacy system.
	Version int
	// JTI is the `jti` claim. For a token without one (legacy tokens) it is
	// "legacy-" + the hex SHA-256 of the raw token, so that logout can still
	// deny-list the exact token presented.
	JTI string
	// IssuedAt is the `iat` claim; zero when absent (legacy tokens).
	IssuedAt time.Time
	// ExpiresAt is the `exp` claim; always set on verified tokens.
	ExpiresAt time.Time
	// Anonymous marks the placeholder claims Optional gives callers without
	// a token; UserID is then the anonymous account's id.
	Anonymous bool
}

// Issuer issues new-format tokens: {id, iat, exp, jti, ver}.
type Issuer struct {
	// Secret is the HS256 signing secret (the current one). Required.
	Secret []byte
	// TTL is the token lifetime; zero means DefaultTTL.
	TTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Issue signs a token for userID at token version version (the user's
// current users.token_version). It returns the token and its claims.
func (i Issuer) Issue(userID int64, version int) (string, Claims, error) {
	ttl := i.TTL
	if ttl == 0 {
		ttl = DefaultTTL
	}
	now := time.Now
	if i.Now != nil {
		now = i.Now
	}
	return Issue(i.Secret, userID, version, ttl, now())
}

// Issue signs an HS256 token with secret for userID at token version
// version, valid from now for ttl. The jti is 128 random bits in hex.
// Times are truncated to whole seconds, as JWT numeric dates are.
func Issue(secret []byte, userID int64, version int, ttl time.Duration, now time.Time) (string, Claims, error) {
	switch {
	case len(secret) == 0:
		return "", Claims{}, errors.New("issue token: empty secret")
	case userID <= 0:
		return "", Claims{}, fmt.Errorf("issue token: bad user id %d", userID)
	case version < 0:
		return "", Claims{}, fmt.Errorf("issue token: bad version %d", version)
	case ttl < time.Second:
		return "", Claims{}, fmt.Errorf("issue token: ttl %s too short", ttl)
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", Claims{}, fmt.Errorf("issue token: read random jti: %w", err)
	}
	c := Claims{
		UserID:    userID,
		Version:   version,
		JTI:       hex.EncodeToString(b[:]),
		IssuedAt:  time.Unix(now.Unix(), 0).UTC(),
		ExpiresAt: time.Unix(now.Add(ttl).Unix(), 0).UTC(),
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"id":  c.UserID,
		"iat": c.IssuedAt.Unix(),
		"exp": c.ExpiresAt.Unix(),
		"jti": c.JTI,
		"ver": c.Version,
	})
	s, err := tok.SignedString(secret)
	if err != nil {
		return "", Claims{}, fmt.Errorf("issue token: sign: %w", err)
	}
	return s, c, nil
}

// Checker decides whether a token whose signature and expiry are valid has
// been revoked. Check returns nil when the token may be used, an
// *apperr.Error of KindUnauthorized when it is revoked, and another error
// (Unavailable/Internal) when it cannot tell.
type Checker interface {
	Check(ctx context.Context, c Claims) error
}

// Verifier verifies tokens. It is safe for concurrent use once built; do
// not change its fields afterwards.
type Verifier struct {
	// Secrets are the accepted HS256 secrets: the current one first, then
	// previous ones accepted during a rotation window. Empty secrets are
	// ignored; with none, every token is invalid.
	Secrets [][]byte
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Revocation checks verified tokens for revocation. Nil disables the
	// check (tools and tests only: services must set it).
	Revocation Checker
}

// Verify checks an Authorization header value: a raw JWT as the legacy
// frontend sends it, or "Bearer <JWT>". It enforces HS256, the signature
// against any of v.Secrets, a required and unexpired `exp`, an integer `id`,
// and then revocation. An empty header gives 401 "Token is missing!";
// anything invalid, expired or revoked gives 401 "Token is invalid!".
func (v *Verifier) Verify(ctx context.Context, header string) (Claims, error) {
	raw := tokenFromHeader(header)
	if raw == "" {
		return Claims{}, apperr.Unauthorized(MsgTokenMissing)
	}
	c, err := v.parse(raw)
	if err != nil {
		return Claims{}, apperr.Wrap(apperr.KindUnauthorized, MsgTokenInvalid, err)
	}
	if v.Revocation != nil {
		if err := v.Revocation.Check(ctx, c); err != nil {
			return Claims{}, err
		}
	}
	return c, nil
}

// tokenFromHeader strips an optional "Bearer " prefix (any case) and
// surrounding space from an Authorization header value.
func tokenFromHeader(header string) string {
	raw := strings.TrimSpace(header)
	if len(raw) >= 6 && strings.EqualFold(raw[:6], "bearer") && (len(raw) == 6 || raw[6] == ' ') {
		raw = strings.TrimSpace(raw[6:])
	}
	return raw
}

func (v *Verifier) parse(raw string) (Claims, error) {
	if len(raw) > maxTokenLen {
		return Claims{}, fmt.Errorf("token of %d bytes is too long", len(raw))
	}
	keys := make([]jwt.VerificationKey, 0, len(v.Secrets))
	for _, s := range v.Secrets {
		if len(s) > 0 {
			keys = append(keys, s)
		}
	}
	if len(keys) == 0 {
		return Claims{}, errors.New("no verification secret configured")
	}
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(now),
		jwt.WithJSONNumber(),
	)
	mc := jwt.MapClaims{}
	if _, err := p.ParseWithClaims(raw, mc, func(*jwt.Token) (any, error) {
		return jwt.VerificationKeySet{Keys: keys}, nil
	}); err != nil {
		return Claims{}, fmt.Errorf("parse token: %w", err)
	}
	return claimsFromMap(mc, raw)
}

func claimsFromMap(mc jwt.MapClaims, raw string) (Claims, error) {
	id, err := intClaim(mc["id"])
	if err != nil || id <= 0 {
		return Claims{}, fmt.Errorf("claim id: bad or missing (%v)", err)
	}
	c := Claims{UserID: id, Version: LegacyVersion}
	if ver, ok := mc["ver"]; ok {
		n, err := intClaim(ver)
		if err != nil || n < 0 || n > 1<<31-1 {
			return Claims{}, fmt.Errorf("claim ver: bad (%v)", err)
		}
		c.Version = int(n)
	}
	if jti, ok := mc["jti"]; ok {
		s, isString := jti.(string)
		if !isString || s == "" || len(s) > 128 {
			return Claims{}, errors.New("claim jti: bad")
		}
		c.JTI = s
	} else {
		sum := sha256.Sum256([]byte(raw))
		c.JTI = "legacy-" + hex.EncodeToString(sum[:])
	}
	exp, err := mc.GetExpirationTime()
	if err != nil || exp == nil {
		return Claims{}, fmt.Errorf("claim exp: bad (%v)", err)
	}
	c.ExpiresAt = exp.UTC()
	iat, err := mc.GetIssuedAt()
	if err != nil {
		return Claims{}, fmt.Errorf("claim iat: %w", err)
	}
	if iat != nil {
		c.IssuedAt = iat.UTC()
	}
	return c, nil
}

// intClaim reads an integer claim: a JSON integer, or (tolerated, some old
// clients stringified it) a decimal string.
func intClaim(v any) (int64, error) {
	switch x := v.(type) {
	case json.Number:
		return strconv.ParseInt(string(x), 10, 64)
	case string:
		return strconv.ParseInt(strings.TrimSpace(x), 10, 64)
	case nil:
		return 0, errors.New("missing")
	default:
		return 0, fmt.Errorf("unexpected type %T", v)
	}
}
