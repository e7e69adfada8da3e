package account

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// LockoutPolicy is the brute-force policy for one kind of subject.
type LockoutPolicy struct {
	// Free is the number of failures allowed before the first lock.
	Free int
	// Base is the first lock; each further failure doubles it.
	Base time.Duration
	// Max caps the lock.
	Max time.Duration
	// Memory is how long failures are remembered after the last one.
	Memory time.Duration
}

// Default lockout policies: an account is locked after 5 failures (30 s,
// doubling up to 15 min); an IP after 30 failures (1 min, doubling up to
// 1 h). Failures are forgotten a day after the last one.
var (
	DefaultAccountLockout = LockoutPolicy{Free: 5, Base: 30 * time.Second, Max: 15 * time.Minute, Memory: 24 * time.Hour}
	DefaultIPLockout      = LockoutPolicy{Free: 30, Base: time.Minute, Max: time.Hour, Memory: 24 * time.Hour}
)

// Lockout counts failed logins per client IP and per account in Redis and
// locks a subject out for a growing time once it has failed too often. The
// account subject is the hash of the lower-cased email, so unknown emails
// are counted and locked like real ones (no enumeration) and no address is
// stored in Redis. It is safe for concurrent use, across replicas.
//
// Redis errors fail open (the login proceeds); the caller logs them.
type Lockout struct {
	rdb     redis.UniversalClient
	prefix  string
	account LockoutPolicy
	ip      LockoutPolicy
	// disabled turns the lockout off (RATE_LIMITS=off).
	disabled bool
}

// NewLockout returns a lockout with keys under prefix. rdb may be nil when
// disabled is set.
func NewLockout(rdb redis.UniversalClient, prefix string, account, ip LockoutPolicy, disabled bool) *Lockout {
	return &Lockout{rdb: rdb, prefix: prefix, account: account, ip: ip, disabled: disabled}
}

type lockSubject struct {
	key    string
	policy LockoutPolicy
}

func (l *Lockout) subjects(ip, email string) []lockSubject {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	s := []lockSubject{{key: "acct:" + hex.EncodeToString(sum[:16]), policy: l.account}}
	if ip != "" {
		s = append(s, lockSubject{key: "ip:" + ip, policy: l.ip})
	}
	return s
}

// Locked returns how long the IP or the account is still locked (zero when
// neither is).
func (l *Lockout) Locked(ctx context.Context, ip, email string) (time.Duration, error) {
	if l.disabled {
		return 0, nil
	}
	var longest time.Duration
	for _, s := range l.subjects(ip, email) {
		d, err := l.rdb.PTTL(ctx, l.prefix+"lock:"+s.key).Result()
		if err != nil {
			return 0, fmt.Errorf("read login lock: %w", err)
		}
		if d > longest {
			longest = d
		}
	}
	return longest, nil
}

// failScript counts a failure and, past the free ones, sets a lock of
// base * 2^(n-free-1) capped at max. KEYS: counter, lock. ARGV: free,
// base ms, max ms, memory ms.
var failScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
local free = tonumber(ARGV[1])
if n > free then
  local lock = tonumber(ARGV[2]) * (2 ^ math.min(n - free - 1, 30))
  lock = math.min(lock, tonumber(ARGV[3]))
  redis.call('SET', KEYS[2], '1', 'PX', math.floor(lock))
end
return n
`)

// Fail records a failed login for the IP and the account.
func (l *Lockout) Fail(ctx context.Context, ip, email string) error {
	if l.disabled {
		return nil
	}
	for _, s := range l.subjects(ip, email) {
		p := s.policy
		err := failScript.Run(ctx, l.rdb, []string{l.prefix + "fail:" + s.key, l.prefix + "lock:" + s.key},
			p.Free, p.Base.Milliseconds(), p.Max.Milliseconds(), p.Memory.Milliseconds()).Err()
		if err != nil {
			return fmt.Errorf("record login failure: %w", err)
		}
	}
	return nil
}

// Reset forgets the account's failures and lock (successful login or
// password reset). The IP's count is kept: one good password does not
// clear an IP that is guessing at many accounts.
func (l *Lockout) Reset(ctx context.Context, email string) error {
	if l.disabled {
		return nil
	}
	s := l.subjects("", email)[0]
	if err := l.rdb.Del(ctx, l.prefix+"fail:"+s.key, l.prefix+"lock:"+s.key).Err(); err != nil {
		return fmt.Errorf("reset login failures: %w", err)
	}
	return nil
}
