package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// sessions signs and checks the console's session cookie and the CSRF
// tokens tied to it. The cookie holds an expiry and an HMAC-SHA256 of it
// keyed by a hash of the admin token, never the token itself, so rotating
// the token ends every session. It is safe for concurrent use.
type sessions struct {
	key      []byte // sha256 of the admin token; nil = console disabled
	tokenSum [sha256.Size]byte
	ttl      time.Duration
}

// newSessions derives the keys from token; an empty token disables logins.
func newSessions(token string, ttl time.Duration) *sessions {
	s := &sessions{ttl: ttl}
	if token != "" {
		s.tokenSum = sha256.Sum256([]byte(token))
		// A separate derivation, so that the MAC key is not the value the
		// token comparison uses.
		k := sha256.Sum256([]byte("nounsai proxy console v1\x00" + token))
		s.key = k[:]
	}
	return s
}

// enabled reports whether an admin token is configured.
func (s *sessions) enabled() bool { return s.key != nil }

// checkToken compares presented with the admin token in constant time
// (both hashed first, so lengths leak nothing).
func (s *sessions) checkToken(presented string) bool {
	if !s.enabled() || presented == "" {
		return false
	}
	h := sha256.Sum256([]byte(presented))
	return subtle.ConstantTimeCompare(h[:], s.tokenSum[:]) == 1
}

func (s *sessions) mac(purpose, msg string) string {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte(purpose))
	m.Write([]byte{0})
	m.Write([]byte(msg))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// issue returns a new cookie value valid until now+ttl, and that expiry.
// The value is "<expiry unix>.<random id>.<MAC of both>": the random id
// makes every sign-in's cookie, and so its CSRF token, distinct.
func (s *sessions) issue(now time.Time) (string, time.Time) {
	exp := now.Add(s.ttl).Truncate(time.Second)
	var id [12]byte
	_, _ = rand.Read(id[:])
	msg := strconv.FormatInt(exp.Unix(), 10) + "." + base64.RawURLEncoding.EncodeToString(id[:])
	return msg + "." + s.mac("session", msg), exp
}

// valid reports whether value is an unexpired cookie issued by s.
func (s *sessions) valid(value string, now time.Time) bool {
	if !s.enabled() || len(value) > maxCookieLen {
		return false
	}
	i := strings.LastIndexByte(value, '.')
	if i < 0 {
		return false
	}
	msg, sig := value[:i], value[i+1:]
	e, _, ok := strings.Cut(msg, ".")
	if !ok {
		return false
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil || now.Unix() >= exp {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(s.mac("session", msg)))
}

// csrf returns the CSRF token of the session cookie value.
func (s *sessions) csrf(cookie string) string { return s.mac("csrf", cookie) }

// validCSRF compares presented with the CSRF token of cookie in constant
// time.
func (s *sessions) validCSRF(cookie, presented string) bool {
	if presented == "" || len(presented) > maxCookieLen {
		return false
	}
	return hmac.Equal([]byte(presented), []byte(s.csrf(cookie)))
}

// maxCookieLen bounds the cookie and CSRF values we look at.
const maxCookieLen = 256
