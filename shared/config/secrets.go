package config

import (
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// MinSecretLen is the shortest secret of our own (JWT signing and
// verification secrets, challenge and admin tokens, link-key secret) that
// production accepts, in bytes.
const MinSecretLen = 32

// ShippedSecrets returns every secret value the repository itself contains:
// the placeholders of the deploy/ examples, the defaults of the compose
// file, of the dev Kubernetes overlay and of `make run`, the benchmarks' and
// the tests' well-known values. Anyone with the repository knows them, so
// production refuses each one, whatever its length. A test in deploy/
// fails when a secret assignment there, in scripts/ or in bench/ is missing
// from this list: add new shipped values here.
func ShippedSecrets() []string {
	return []string{
		// deploy/ examples: placeholders.
		"CHANGE-ME",
		"CHANGE-ME-at-least-32-random-bytes",
		// Development defaults: the config defaults, deploy/compose.yaml, the
		// dev overlay (deploy/k8s/overlays/dev) and scripts/run.sh.
		DevJWTSecret,
		DevChallengeToken,
		"dev-admin-token",
		"nounsai-dev-jwt-secret-do-not-use-in-production",
		"nounsai", // compose's PostgreSQL password
		"admin",   // compose's Grafana password
		// Benchmarks (bench/).
		"bench-jwt-secret-0123456789abcdef0123456789",
		"bench-jwt-secret-0123456789abcdef",
		"bench-challenge-token",
		// Tests' well-known values.
		"test-jwt-secret-0123456789abcdef",
		"test-secret-0123456789abcdef",
		"creditapi-test-secret-0123456789",
		"librarytest-proxy-secret-0123456789",
		"legacy-flask-secret-key-0123456789",
		"legacy-secret-0123456789",
		"a-real-production-secret-value",
		"e2e-jwt-secret-0123456789abcdef",
		"e2e-admin-token",
		"e2e-challenge",
		"test-challenge-token",
		"legacy-challenge-token",
		"admin-secret",
		"admin-token-for-tests",
		"console-admin-token",
		"r8_fake_test_token",
	}
}

// placeholder marks a value an operator was meant to replace.
const placeholder = "change-me"

// secretKind tells how strictly a recorded secret is checked.
type secretKind int

const (
	// ownSecret is a secret we choose: at least MinSecretLen bytes.
	ownSecret secretKind = iota
	// credential is issued by a third party (an API key) or is a
	// password inside a URL: its length is not ours to choose, so only
	// shipped values and placeholders are refused.
	credential
)

// secret is one secret value the Loader handed out, for the production
// check in Err.
type secret struct {
	name  string // the variable (or legacy key) it came from
	value string
	kind  secretKind
}

// WeakSecret reports why value must not be a production secret of our own
// ("" when it may be one): too short, shipped in the repository, or a
// placeholder.
func WeakSecret(value string) string {
	if r := knownSecret(value); r != "" {
		return r
	}
	if len(value) < MinSecretLen {
		return fmt.Sprintf("shorter than %d bytes", MinSecretLen)
	}
	return ""
}

// knownSecret reports why value is publicly known ("" when it is not).
func knownSecret(value string) string {
	if slices.Contains(ShippedSecrets(), value) {
		return "a value shipped in the repository (examples, make run, tests)"
	}
	if strings.Contains(strings.ToLower(value), placeholder) {
		return "a placeholder (CHANGE-ME)"
	}
	return ""
}

// Secret returns a secret setting of our own (or def) and records it: in
// production, Err refuses it when it is shorter than MinSecretLen bytes,
// shipped in the repository or a placeholder. An empty value is not
// checked (a setting left empty is disabled or refused by Validate).
func (l *Loader) Secret(env, legacyKey, def string) string {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		v, name = def, env+" (unset; the default)"
	}
	l.record(name, v, ownSecret)
	return v
}

// Secrets returns a comma-separated list of secrets of our own and records
// each entry like Secret.
func (l *Loader) Secrets(env, legacyKey string) []string {
	items := l.List(env, legacyKey, nil)
	for i, s := range items {
		name := env
		if len(items) > 1 {
			name += " (entry " + strconv.Itoa(i+1) + ")"
		}
		l.record(name, s, ownSecret)
	}
	return items
}

// Credential returns a secret issued by a third party (an API key or
// token), or def, and records it: in production, Err refuses a shipped
// value or a placeholder, not a short one.
func (l *Loader) Credential(env, legacyKey, def string) string {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		v, name = def, env
	}
	l.record(name, v, credential)
	return v
}

// URL returns a URL setting (or def) whose password, if any, is recorded
// as a credential: production refuses a shipped or placeholder password
// (e.g. postgres://nounsai:CHANGE-ME@...).
func (l *Loader) URL(env, legacyKey, def string) string {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		v, name = def, env
	}
	if u, err := url.Parse(v); err == nil && u.User != nil {
		if p, set := u.User.Password(); set {
			l.record(name+" (password)", p, credential)
		}
	}
	return v
}

func (l *Loader) record(name, value string, kind secretKind) {
	if value != "" {
		l.secrets = append(l.secrets, secret{name: name, value: value, kind: kind})
	}
}

// secretErrs returns one error per recorded secret production refuses,
// when ENVIRONMENT (or the legacy key environment) is "production".
func (l *Loader) secretErrs() []error {
	if env, _, _ := l.raw("ENVIRONMENT", "environment"); env != "production" {
		return nil
	}
	var errs []error
	seen := map[string]bool{}
	for _, s := range l.secrets {
		if seen[s.name] {
			continue
		}
		seen[s.name] = true
		reason := knownSecret(s.value)
		if s.kind == ownSecret {
			reason = WeakSecret(s.value)
		}
		if reason != "" {
			errs = append(errs, fmt.Errorf("%s: refused in production: %s", s.name, reason))
		}
	}
	return errs
}
