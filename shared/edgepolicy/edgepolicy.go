// Package edgepolicy is the one policy every public HTTP entry applies
// before a request reaches a route, as plain net/http helpers: the legacy
// challenge-token check, CORS with its one list of exposed headers, and
// request IDs. The proxy's data path calls them directly; shared/web wraps
// them for the echo services (accountsvc answers CORS itself because the
// frontend calls api-cpu directly; gpusvc, always behind the proxy, does
// not add CORS headers at all).
//
// With no challenge token configured every request that needs one is
// refused (fail closed): a missing setting must not open the routes.
// Configuration loading refuses an empty CHALLENGE_TOKEN, so this only
// matters for code that builds a Challenge by hand.
//
// This package must never read a request body, log, or know any route
// beyond the exemptions it is given.
package edgepolicy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"time"
)

// ChallengeHeader is the legacy shared-secret header, in canonical form so
// that header maps are indexed without canonicalising per request.
const ChallengeHeader = "Challenge-Token"

// MsgChallengeInvalid is the public message of a failed challenge-token
// check (the legacy text).
const MsgChallengeInvalid = "challenge-token header missing / invalid"

// challengeBody is the 401 body: the legacy message as JSON (the old proxy
// answered plain text; every error here is JSON).
var challengeBody = []byte(`{"message":"` + MsgChallengeInvalid + `"}` + "\n")

// Secrets is a set of accepted secret values, compared in constant time.
// Both sides are hashed first so that neither the length of the accepted
// values nor the position of a mismatch leaks through timing, and every
// accepted value is compared (no early exit).
type Secrets [][sha256.Size]byte

// NewSecrets returns the set of values; empty strings are ignored.
func NewSecrets(values ...string) Secrets {
	var s Secrets
	for _, v := range values {
		if v != "" {
			s = append(s, sha256.Sum256([]byte(v)))
		}
	}
	return s
}

// Match reports whether presented is one of the accepted values. An empty
// presented value, or an empty set, never matches.
func (s Secrets) Match(presented string) bool {
	if presented == "" {
		return false
	}
	h := sha256.Sum256([]byte(presented))
	ok := 0
	for i := range s {
		ok |= subtle.ConstantTimeCompare(h[:], s[i][:])
	}
	return ok == 1
}

// Challenge is the legacy challenge-token check. The token ships with the
// frontend: it is a speed bump against casual scripting, not
// authentication.
type Challenge struct {
	tokens Secrets
	exempt []string
}

// NewChallenge returns the check accepting any of tokens (the current one
// and previous ones during a rotation; empty values are ignored). Requests
// whose path starts with one of exempt pass without a token (pages opened
// from emails cannot send a header). With no token every other request is
// refused.
func NewChallenge(tokens []string, exempt ...string) *Challenge {
	return &Challenge{tokens: NewSecrets(tokens...), exempt: exempt}
}

// Allows reports whether r may pass: it carries an accepted token, its
// path is exempt, or it is a CORS preflight (which browsers send without
// custom headers).
func (c *Challenge) Allows(r *http.Request) bool {
	if IsPreflight(r) {
		return true
	}
	for _, p := range c.exempt {
		if strings.HasPrefix(r.URL.Path, p) {
			return true
		}
	}
	var v string
	if vs := r.Header[ChallengeHeader]; len(vs) > 0 {
		v = vs[0]
	}
	return c.tokens.Match(v)
}

// WriteChallengeFailure answers 401 with {"message": MsgChallengeInvalid}.
func WriteChallengeFailure(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	_, _ = w.Write(challengeBody)
}

// ExposedHeaders are the response headers browsers may read, as one
// Access-Control-Expose-Headers value.
const ExposedHeaders = "X-Image-Id, X-Image-Ids, X-Request-ID, Retry-After, X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset, X-Queue-Position, X-Queue-Estimated-Start"

// AllowedMethods are the methods a preflight allows.
const AllowedMethods = "DELETE, GET, HEAD, OPTIONS, PATCH, POST, PUT"

// IsPreflight reports whether r is a CORS preflight request.
func IsPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// CORS applies the CORS policy to the response w is about to send for r,
// as the legacy app did: any origin is allowed (echoed back, never "*"),
// with Vary: Origin. A preflight is answered here (200, every method, the
// requested headers, cached 600 s) and CORS returns true: the caller must
// not write anything else. A request without Origin gets no CORS header.
func CORS(w http.ResponseWriter, r *http.Request) (answered bool) {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return false
	}
	h := w.Header()
	h["Vary"] = []string{"Origin"}
	h["Access-Control-Allow-Origin"] = []string{origin}
	if IsPreflight(r) {
		h.Add("Vary", "Access-Control-Request-Method")
		h.Add("Vary", "Access-Control-Request-Headers")
		h.Set("Access-Control-Allow-Methods", AllowedMethods)
		if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
			h.Set("Access-Control-Allow-Headers", rh)
		}
		h.Set("Access-Control-Max-Age", "600")
		w.WriteHeader(http.StatusOK)
		return true
	}
	h["Access-Control-Expose-Headers"] = exposed
	return false
}

// exposed is ExposedHeaders as a header value; its capacity equals its
// length, so an append never writes into it.
var exposed = []string{ExposedHeaders}[:1:1]

// RequestIDHeader is the header carrying the request ID both ways, in
// canonical form.
const RequestIDHeader = "X-Request-Id"

// RequestID returns the request ID of a request with header h: the
// client's own X-Request-ID when it is 1 to 128 visible ASCII characters,
// else a fresh one.
func RequestID(h http.Header) string {
	if v := h[RequestIDHeader]; len(v) > 0 && validRequestID(v[0]) {
		return v[0]
	}
	return NewRequestID()
}

// NewRequestID returns a fresh random request ID (32 hex characters).
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// Bounds of the lingering close after a refused body.
const (
	// LingerBytes is the most of a refused body read and discarded.
	LingerBytes = 32 << 20
	// LingerTimeout bounds the time spent discarding it.
	LingerTimeout = 5 * time.Second
)

// Linger is the lingering close after an answer (a 413) sent before the
// request body was read: it sends the answer at once, then reads and
// discards up to LingerBytes of body for at most LingerTimeout, so that a
// client that writes its whole body before reading (browsers, Python's
// urllib: no Expect: 100-continue) reads the answer instead of a connection
// reset. body must be the request's own body, not a http.MaxBytesReader
// that already refused. A client that sent Expect: 100-continue was not
// told to continue and sends nothing more, so nothing is read. The server
// closes the connection afterwards (it marked it so when the answer left
// with the body unread).
func Linger(w http.ResponseWriter, r *http.Request, body io.Reader) {
	if body == nil || body == http.NoBody || r.Header.Get("Expect") != "" {
		return
	}
	rc := http.NewResponseController(w)
	if err := rc.Flush(); err != nil {
		return
	}
	_ = rc.SetReadDeadline(time.Now().Add(LingerTimeout))
	_, _ = io.CopyN(io.Discard, body, LingerBytes)
}
