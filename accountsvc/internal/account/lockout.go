package account

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// LockoutPolicy is a hard limit: past Free failures the subject is locked
// for a time that doubles with each further failure.
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

// SlowdownPolicy is a soft limit: past Free failures each failed attempt
// answers only after a delay that doubles with each further failure. It
// never refuses an attempt.
type SlowdownPolicy struct {
	// Free is the number of failures without delay.
	Free int
	// Base is the first delay; each further failure doubles it.
	Base time.Duration
	// Max caps the delay.
	Max time.Duration
	// Memory is how long failures are remembered after the last one.
	Memory time.Duration
}

// Default lockout policies. One client address is locked out of one
// account after 5 failures (30 s, doubling up to 15 min), and out of every
// account after 30 failures over all accounts (1 min, doubling up to 1 h).
// An account itself is never locked: after 10 failures from any addresses
// each further failure is slowed down (250 ms, doubling up to 5 s).
// Failures are forgotten a day after the last one.
var (
	DefaultAccountIPLockout = LockoutPolicy{Free: 5, Base: 30 * time.Second, Max: 15 * time.Minute, Memory: 24 * time.Hour}
	DefaultIPLockout        = LockoutPolicy{Free: 30, Base: time.Minute, Max: time.Hour, Memory: 24 * time.Hour}
	DefaultAccountSlowdown  = SlowdownPolicy{Free: 10, Base: 250 * time.Millisecond, Max: 5 * time.Second, Memory: 24 * time.Hour}
)

// LockoutConfig configures a Lockout. Zero policies take the defaults.
type LockoutConfig struct {
	// AccountIP locks one client address out of one account.
	AccountIP LockoutPolicy
	// IP locks one client address out of every account.
	IP LockoutPolicy
	// Account slows down the failures of one account from every address.
	Account SlowdownPolicy
	// Disabled turns the lockout off (RATE_LIMITS=off).
	Disabled bool
	// Unavailable counts the Redis failures the lockout tolerated (fail
	// open); nil counts nothing.
	Unavailable prometheus.Counter
}

// NewLockoutUnavailableCounter returns the counter for
// LockoutConfig.Unavailable, to be registered by the caller.
func NewLockoutUnavailableCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "account_login_lockout_unavailable_total",
		Help: "Login lockout operations that failed because Redis did not answer; the login or password check went ahead (fail open).",
	})
}

// Lockout is the brute-force protection of logins and of the current
// password check of a profile update, counted in Redis so that it holds
// across replicas. It is safe for concurrent use.
//
// No failure can lock anyone out from another address: hard locks are per
// client address and account (a guesser locks only itself out of the
// account) and per client address (a guesser trying many accounts locks
// only itself out). Failures of an account from every address only slow
// its failed attempts down, so an attacker spread over many addresses
// gains speed only by parallelism while the owner's right password always
// answers at once. The account is named by the hash of the lower-cased
// email, so unknown emails are counted like real ones (no enumeration) and
// no address is stored in Redis.
//
// Redis errors fail open: the operation returns an error, the caller logs
// it and goes on as if nothing was locked, and Unavailable is counted.
type Lockout struct {
	rdb    redis.UniversalClient
	prefix string
	cfg    LockoutConfig
}

// NewLockout returns a lockout with keys under prefix. rdb may be nil when
// cfg.Disabled is set.
func NewLockout(rdb redis.UniversalClient, prefix string, cfg LockoutConfig) *Lockout {
	if cfg.AccountIP == (LockoutPolicy{}) {
		cfg.AccountIP = DefaultAccountIPLockout
	}
	if cfg.IP == (LockoutPolicy{}) {
		cfg.IP = DefaultIPLockout
	}
	if cfg.Account == (SlowdownPolicy{}) {
		cfg.Account = DefaultAccountSlowdown
	}
	return &Lockout{rdb: rdb, prefix: prefix, cfg: cfg}
}

// keys names the Redis keys of one attempt.
type lockKeys struct {
	account   string // failure count of the account (slow-down)
	accountIP string // failure count and lock of the account from ip
	ips       string // set of the addresses that failed on the account
	ip        string // failure count and lock of ip; "" without an ip
}

func (l *Lockout) keys(ip, email string) lockKeys {
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
	acct := hex.EncodeToString(sum[:16])
	k := lockKeys{
		account:   l.prefix + "acct:" + acct,
		accountIP: l.prefix + "acctip:" + acct + ":" + ip,
		ips:       l.prefix + "acctips:" + acct,
	}
	if ip != "" {
		k.ip = l.prefix + "ip:" + ip
	}
	return k
}

// failed reports err to the metric and returns it wrapped.
func (l *Lockout) failed(op string, err error) error {
	if l.cfg.Unavailable != nil {
		l.cfg.Unavailable.Inc()
	}
	return fmt.Errorf("%s: %w", op, err)
}

// Locked returns how long ip is still locked out of the account of email,
// or out of every account (zero when it is not). Failures from other
// addresses never lock ip out.
func (l *Lockout) Locked(ctx context.Context, ip, email string) (time.Duration, error) {
	if l.cfg.Disabled {
		return 0, nil
	}
	k := l.keys(ip, email)
	var longest time.Duration
	for _, key := range []string{k.accountIP, k.ip} {
		if key == "" {
			continue
		}
		d, err := l.rdb.PTTL(ctx, key+":lock").Result()
		if err != nil {
			return 0, l.failed("read login lock", err)
		}
		longest = max(longest, d)
	}
	return longest, nil
}

// lockScript counts a failure and, past the free ones, sets a lock of
// base * 2^(n-free-1) capped at max. KEYS: counter, lock. ARGV: free,
// base ms, max ms, memory ms. It returns the count.
var lockScript = redis.NewScript(`
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

// countScript counts a failure of the account and remembers which address
// failed. KEYS: counter, address set. ARGV: memory ms, address.
var countScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[2])
redis.call('PEXPIRE', KEYS[2], ARGV[1])
return n
`)

// Fail records a failed attempt of ip on the account of email and returns
// how long the failure should take to answer (the account's slow-down;
// zero within its free failures).
func (l *Lockout) Fail(ctx context.Context, ip, email string) (time.Duration, error) {
	if l.cfg.Disabled {
		return 0, nil
	}
	k := l.keys(ip, email)
	for _, s := range []struct {
		key string
		p   LockoutPolicy
	}{{k.accountIP, l.cfg.AccountIP}, {k.ip, l.cfg.IP}} {
		if s.key == "" {
			continue
		}
		err := lockScript.Run(ctx, l.rdb, []string{s.key, s.key + ":lock"},
			s.p.Free, s.p.Base.Milliseconds(), s.p.Max.Milliseconds(), s.p.Memory.Milliseconds()).Err()
		if err != nil {
			return 0, l.failed("record login failure", err)
		}
	}
	p := l.cfg.Account
	n, err := countScript.Run(ctx, l.rdb, []string{k.account, k.ips}, p.Memory.Milliseconds(), ip).Int()
	if err != nil {
		return 0, l.failed("record login failure", err)
	}
	if n <= p.Free {
		return 0, nil
	}
	d := p.Base << min(n-p.Free-1, 30)
	if d <= 0 || d > p.Max {
		d = p.Max
	}
	return d, nil
}

// Succeeded forgets the account's failures from ip and its slow-down (a
// right password from ip). Locks of other addresses stay, and so does
// ip's count over all accounts: one good password does not clear an
// address that is guessing at many accounts.
func (l *Lockout) Succeeded(ctx context.Context, ip, email string) error {
	if l.cfg.Disabled {
		return nil
	}
	k := l.keys(ip, email)
	if err := l.rdb.Del(ctx, k.account, k.accountIP, k.accountIP+":lock").Err(); err != nil {
		return l.failed("reset login failures", err)
	}
	return nil
}

// Reset forgets every failure and lock of the account of email, from every
// address (a password reset: the inbox owner has set a new password).
// Counts of addresses over all accounts stay.
func (l *Lockout) Reset(ctx context.Context, email string) error {
	if l.cfg.Disabled {
		return nil
	}
	k := l.keys("", email)
	ips, err := l.rdb.SMembers(ctx, k.ips).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return l.failed("reset login failures", err)
	}
	del := []string{k.account, k.ips}
	for _, ip := range ips {
		a := l.keys(ip, email).accountIP
		del = append(del, a, a+":lock")
	}
	if err := l.rdb.Del(ctx, del...).Err(); err != nil {
		return l.failed("reset login failures", err)
	}
	return nil
}
