package account

import (
	"bytes"
	"encoding/json"
	"math"
	"net/mail"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/nounsai/sdserver/shared/apperr"
)

// Input limits.
const (
	// MaxEmailLen is the legacy users.email VARCHAR(128), in bytes.
	MaxEmailLen = 128
	// MaxMetadataLen bounds the client-owned metadata blob, in bytes.
	MaxMetadataLen = 256 << 10
	// maxTokenLen bounds a referral token we are willing to look up.
	maxTokenLen = 128
)

// Public messages of validation errors.
const (
	MsgInvalidData     = "Invalid data!"
	MsgInvalidEmail    = "Invalid email address!"
	MsgInvalidPassword = "Password must be between 8 and 1024 bytes!"
	MsgInvalidMetadata = "Invalid metadata!"
)

// NormalizeEmail trims s and checks that it is a plain address (no display
// name, no control or space characters, valid UTF-8, at most MaxEmailLen
// bytes). It returns the trimmed address as the user typed it; uniqueness
// and lookups are case-insensitive (lower(email) in SQL).
func NormalizeEmail(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > MaxEmailLen || !utf8.ValidString(s) {
		return "", apperr.Invalid(MsgInvalidEmail)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError {
			return "", apperr.Invalid(MsgInvalidEmail)
		}
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Name != "" || a.Address != s || strings.Count(s, "@") != 1 {
		return "", apperr.Invalid(MsgInvalidEmail)
	}
	local, domain, _ := strings.Cut(s, "@")
	if local == "" || domain == "" || !strings.Contains(domain, ".") || strings.HasSuffix(domain, ".") {
		return "", apperr.Invalid(MsgInvalidEmail)
	}
	return s, nil
}

// ValidatePassword checks the length of a new password in bytes.
func ValidatePassword(p string) error {
	if len(p) < MinPasswordLen || len(p) > MaxPasswordLen {
		return apperr.Invalid(MsgInvalidPassword)
	}
	return nil
}

// NormalizeMetadata checks the client-owned metadata blob and returns it
// re-encoded: absent or null gives {}; otherwise it must be a JSON object of
// at most MaxMetadataLen bytes whose strings hold no NUL character and whose
// numbers are finite doubles (PostgreSQL's jsonb refuses both, and a blob
// that cannot be read back would break the account later).
func NormalizeMetadata(raw json.RawMessage) (json.RawMessage, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return json.RawMessage("{}"), nil
	}
	if len(raw) > MaxMetadataLen || raw[0] != '{' {
		return nil, apperr.Invalid(MsgInvalidMetadata)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil || dec.More() {
		return nil, apperr.Invalid(MsgInvalidMetadata)
	}
	if !cleanJSON(v, 0) {
		return nil, apperr.Invalid(MsgInvalidMetadata)
	}
	out, err := json.Marshal(v)
	if err != nil || len(out) > MaxMetadataLen {
		return nil, apperr.Invalid(MsgInvalidMetadata)
	}
	return out, nil
}

func cleanJSON(v any, depth int) bool {
	if depth > 64 {
		return false
	}
	switch x := v.(type) {
	case string:
		return !strings.ContainsRune(x, 0)
	case json.Number:
		f, err := strconv.ParseFloat(string(x), 64)
		return err == nil && !math.IsInf(f, 0) && !math.IsNaN(f)
	case []any:
		for _, e := range x {
			if !cleanJSON(e, depth+1) {
				return false
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) || !cleanJSON(e, depth+1) {
				return false
			}
		}
	}
	return true
}

// usableToken reports whether a referral token is worth looking up.
func usableToken(s string) bool {
	if s == "" || len(s) > maxTokenLen || !utf8.ValidString(s) {
		return false
	}
	return !strings.ContainsRune(s, 0)
}
