package account

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"

	"github.com/go-crypt/crypt/algorithm/shacrypt"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"

	"github.com/nounsai/sdserver/shared/config"
)

// Password length limits in bytes.
const (
	MinPasswordLen = 8
	MaxPasswordLen = 1024
)

// Argon2Params are the argon2id parameters of new hashes. They are encoded
// in every hash, so changing them only affects hashes written afterwards
// (older ones are upgraded at the next login).
type Argon2Params struct {
	// MemoryKiB is the memory cost in KiB (OWASP minimum 19456 = 19 MiB).
	MemoryKiB uint32
	// Time is the number of passes (OWASP minimum 2 with 19 MiB).
	Time uint32
	// Threads is the parallelism (1).
	Threads uint8
}

// DefaultArgon2 is the OWASP baseline for argon2id: m=19 MiB, t=2, p=1.
var DefaultArgon2 = Argon2Params{MemoryKiB: 19456, Time: 2, Threads: 1}

// Validate refuses parameters below the OWASP baseline or absurdly high.
func (p Argon2Params) Validate() error {
	switch {
	case p.MemoryKiB < DefaultArgon2.MemoryKiB || p.MemoryKiB > 4<<20:
		return fmt.Errorf("argon2 memory must be between %d and %d KiB", DefaultArgon2.MemoryKiB, 4<<20)
	case p.Time < 1 || p.Time > 64 || (p.Time < 2 && p.MemoryKiB < 47104):
		return errors.New("argon2 time must be 2..64 (1 only with memory >= 46 MiB)")
	case p.Threads < 1 || p.Threads > 64:
		return errors.New("argon2 threads must be between 1 and 64")
	}
	return nil
}

const (
	argon2SaltLen = 16
	argon2KeyLen  = 32
)

// Hasher hashes new passwords with argon2id and verifies stored hashes:
// argon2id PHC strings, legacy passlib sha256_crypt ($5$, any rounds) and
// sha512_crypt ($6$), and bcrypt ($2a$, $2b$, $2y$). It is safe for
// concurrent use.
//
// At most a fixed number of hashes run at once; the others wait their
// turn. Each argon2id computation holds MemoryKiB (19 MiB by default)
// while it runs, so without the bound a burst of N logins (from as many
// addresses as an attacker has, below every per-address limit) would need
// N × 19 MiB at once; with it the service's memory is bounded and its CPU,
// which the hashes saturate anyway, is not oversubscribed.
type Hasher struct {
	params Argon2Params
	dummy  string
	slots  chan struct{}
}

// NewHasher returns a hasher writing argon2id hashes with p and running at
// most concurrency hashes at once (0 or less: one per CPU, GOMAXPROCS).
func NewHasher(p Argon2Params, concurrency int) (*Hasher, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	concurrency = config.OrDefault(concurrency, runtime.GOMAXPROCS(0))
	h := &Hasher{params: p, slots: make(chan struct{}, concurrency)}
	dummy, err := h.Hash("dummy password for unknown accounts")
	if err != nil {
		return nil, err
	}
	h.dummy = dummy
	return h, nil
}

// Hash returns the argon2id PHC string of password:
// $argon2id$v=19$m=<KiB>,t=<time>,p=<threads>$<salt>$<hash> with unpadded
// standard base64 salt (16 random bytes) and hash (32 bytes).
func (h *Hasher) Hash(password string) (string, error) {
	defer h.take()()
	salt := make([]byte, argon2SaltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: read salt: %w", err)
	}
	p := h.params
	key := argon2.IDKey([]byte(password), salt, p.Time, p.MemoryKiB, p.Threads, argon2KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.MemoryKiB, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// Verify reports whether password matches the stored hash encoded, and
// whether a match should be rehashed (a legacy algorithm, or argon2id with
// other parameters than the hasher's). An unknown or malformed hash never
// matches; the work of a real check is still done, so that the time taken
// does not tell it apart.
func (h *Hasher) Verify(encoded, password string) (ok, rehash bool) {
	defer h.take()()
	switch {
	case strings.HasPrefix(encoded, "$argon2id$"):
		p, ok := verifyArgon2(encoded, password)
		return ok, ok && p != h.params
	case strings.HasPrefix(encoded, "$5$"), strings.HasPrefix(encoded, "$6$"):
		d, err := shacrypt.Decode(encoded)
		if err != nil {
			h.verifyDummy(password)
			return false, false
		}
		ok := d.MatchBytes([]byte(password))
		return ok, ok
	case strings.HasPrefix(encoded, "$2a$"), strings.HasPrefix(encoded, "$2b$"), strings.HasPrefix(encoded, "$2y$"):
		if len(password) > 72 {
			// bcrypt only ever saw the first 72 bytes; refuse rather
			// than accept a password that differs after them.
			h.verifyDummy(password)
			return false, false
		}
		ok := bcrypt.CompareHashAndPassword([]byte(encoded), []byte(password)) == nil
		return ok, ok
	}
	h.verifyDummy(password)
	return false, false
}

// VerifyDummy spends the time of a real argon2id check and discards the
// result (login with an unknown email).
func (h *Hasher) VerifyDummy(password string) {
	defer h.take()()
	h.verifyDummy(password)
}

func (h *Hasher) verifyDummy(password string) { _, _ = verifyArgon2(h.dummy, password) }

// take waits for one of the hasher's slots and returns its release.
func (h *Hasher) take() (release func()) {
	h.slots <- struct{}{}
	return func() { <-h.slots }
}

// verifyArgon2 parses an argon2id PHC string and checks password against
// it in constant time. Parameters are bounded so that a corrupt row cannot
// make a login allocate gigabytes.
func verifyArgon2(encoded, password string) (Argon2Params, bool) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, hash
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return Argon2Params{}, false
	}
	var m, t, p uint64
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Argon2Params{}, false
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil {
			return Argon2Params{}, false
		}
		switch k {
		case "m":
			m = n
		case "t":
			t = n
		case "p":
			p = n
		default:
			return Argon2Params{}, false
		}
	}
	if m < 8 || m > 4<<20 || t < 1 || t > 64 || p < 1 || p > 64 || m < 8*p {
		return Argon2Params{}, false
	}
	salt, err := base64.RawStdEncoding.DecodeString(parts[4])
	if err != nil || len(salt) < 8 || len(salt) > 64 {
		return Argon2Params{}, false
	}
	want, err := base64.RawStdEncoding.DecodeString(parts[5])
	if err != nil || len(want) < 16 || len(want) > 128 {
		return Argon2Params{}, false
	}
	params := Argon2Params{MemoryKiB: uint32(m), Time: uint32(t), Threads: uint8(p)}
	got := argon2.IDKey([]byte(password), salt, params.Time, params.MemoryKiB, params.Threads, uint32(len(want)))
	return params, subtle.ConstantTimeCompare(got, want) == 1
}
