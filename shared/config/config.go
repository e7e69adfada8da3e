// Package config loads typed configuration from environment variables and,
// when CONFIG_FILE names one, from the legacy config.json of the Flask
// system (same key names). Environment variables win over the file.
//
// Each binary has its own Config type built with a Loader; this package
// holds the Loader, the settings every service shares (Common) and the
// defaulting of unset constructor options (OrDefault). It must
// never read the environment outside a Loader, and never hold global state.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// LookupFunc looks up an environment variable; os.LookupEnv satisfies it.
type LookupFunc func(key string) (string, bool)

// Loader reads settings from the environment and the legacy config.json.
// It collects parse errors so that Err reports every bad variable at once.
// A Loader is not safe for concurrent use.
type Loader struct {
	lookup LookupFunc
	legacy map[string]json.RawMessage
	errs   []error
	// secrets are the secrets handed out, checked by Err in production.
	secrets []secret
}

// NewLoader returns a Loader over lookup. When lookup yields CONFIG_FILE,
// that file is read as the legacy JSON config; a missing or malformed file
// is an error.
func NewLoader(lookup LookupFunc) (*Loader, error) {
	l := &Loader{lookup: lookup, legacy: map[string]json.RawMessage{}}
	if path, ok := lookup("CONFIG_FILE"); ok && path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("read CONFIG_FILE %s: %w", path, err)
		}
		if err := json.Unmarshal(b, &l.legacy); err != nil {
			return nil, fmt.Errorf("parse CONFIG_FILE %s: %w", path, err)
		}
	}
	return l, nil
}

// FromMap returns a Loader over a fixed map, for tests.
func FromMap(env map[string]string) *Loader {
	l, _ := NewLoader(func(k string) (string, bool) {
		if k == "CONFIG_FILE" {
			return "", false
		}
		v, ok := env[k]
		return v, ok
	})
	return l
}

// raw returns the setting as text: the env variable when set and non-empty,
// else the legacy key when present, else ok=false.
func (l *Loader) raw(env, legacyKey string) (string, string, bool) {
	if env != "" {
		if v, ok := l.lookup(env); ok && v != "" {
			return v, env, true
		}
	}
	if legacyKey != "" {
		if m, ok := l.legacy[legacyKey]; ok {
			var s string
			if json.Unmarshal(m, &s) == nil {
				if s == "" {
					return "", "", false
				}
				return s, "config.json " + legacyKey, true
			}
			// numbers and booleans keep their JSON text
			t := strings.TrimSpace(string(m))
			if t == "null" {
				return "", "", false
			}
			return t, "config.json " + legacyKey, true
		}
	}
	return "", "", false
}

func (l *Loader) fail(name string, err error) {
	l.errs = append(l.errs, fmt.Errorf("%s: %w", name, err))
}

// String returns the setting env (or legacy key legacyKey; "" for none), or def.
func (l *Loader) String(env, legacyKey, def string) string {
	if v, _, ok := l.raw(env, legacyKey); ok {
		return v
	}
	return def
}

// Int returns an integer setting, or def.
func (l *Loader) Int(env, legacyKey string, def int) int {
	return int(l.Int64(env, legacyKey, int64(def)))
}

// Int64 returns an integer setting, or def.
func (l *Loader) Int64(env, legacyKey string, def int64) int64 {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil {
		l.fail(name, fmt.Errorf("not an integer: %q", v))
		return def
	}
	return n
}

// Float returns a floating-point setting, or def.
func (l *Loader) Float(env, legacyKey string, def float64) float64 {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
	if err != nil {
		l.fail(name, fmt.Errorf("not a number: %q", v))
		return def
	}
	return f
}

// Bool returns a boolean setting (1/0, true/false, on/off, yes/no), or def.
func (l *Loader) Bool(env, legacyKey string, def bool) bool {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		return def
	}
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "1", "true", "on", "yes", "t":
		return true
	case "0", "false", "off", "no", "f":
		return false
	}
	l.fail(name, fmt.Errorf("not a boolean: %q", v))
	return def
}

// Duration returns a duration setting ("30s", "5m"; a bare integer means
// seconds), or def.
func (l *Loader) Duration(env, legacyKey string, def time.Duration) time.Duration {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		return def
	}
	v = strings.TrimSpace(v)
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		return time.Duration(n) * time.Second
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		l.fail(name, fmt.Errorf("not a duration: %q", v))
		return def
	}
	return d
}

// Time returns an RFC 3339 instant setting in UTC, or the zero time when
// unset.
func (l *Loader) Time(env, legacyKey string) time.Time {
	v, name, ok := l.raw(env, legacyKey)
	if !ok {
		return time.Time{}
	}
	t, err := time.Parse(time.RFC3339, strings.TrimSpace(v))
	if err != nil {
		l.fail(name, fmt.Errorf("not an RFC 3339 time: %q", v))
		return time.Time{}
	}
	return t.UTC()
}

// List returns a comma-separated setting as trimmed, non-empty items, or def.
func (l *Loader) List(env, legacyKey string, def []string) []string {
	v, _, ok := l.raw(env, legacyKey)
	if !ok {
		return def
	}
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Prefixes returns a comma-separated list of IP addresses or CIDR prefixes.
func (l *Loader) Prefixes(env, legacyKey string, def []netip.Prefix) []netip.Prefix {
	items := l.List(env, legacyKey, nil)
	if items == nil {
		return def
	}
	out := make([]netip.Prefix, 0, len(items))
	for _, it := range items {
		if strings.Contains(it, "/") {
			p, err := netip.ParsePrefix(it)
			if err != nil {
				l.fail(env, fmt.Errorf("bad prefix %q", it))
				continue
			}
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(it)
		if err != nil {
			l.fail(env, fmt.Errorf("bad address %q", it))
			continue
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out
}

// Check ends a service's LoadConfig: it returns every error of Err joined
// with validate's (the service Config's Validate), so that one start
// reports every bad setting, prefixed "config: "; or nil when there are
// none.
func (l *Loader) Check(validate error) error {
	if err := errors.Join(l.Err(), validate); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Err returns every parse error collected so far and, when ENVIRONMENT is
// "production", one error per secret read through Secret, Secrets,
// Credential or URL that production refuses (each naming its variable), or
// nil.
func (l *Loader) Err() error { return errors.Join(append(slices.Clone(l.errs), l.secretErrs()...)...) }
