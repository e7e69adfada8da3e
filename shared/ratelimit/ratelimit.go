// Package ratelimit is a fixed-window rate limiter counted in Redis, so that
// limits hold across replicas and restarts (legacy defect R1), plus the echo
// middleware that applies it with Flask-Limiter's headers.
//
// Windows are aligned to the clock (a window of one minute runs from :00 to
// :00), each (rule, key, window) has its own Redis counter, and a counter
// expires one window after its first hit.
//
// Redis errors fail open: the request is allowed and the error goes to
// Options.OnError, because a Redis outage must not take the API down with
// it. This package never logs and never writes HTTP responses itself.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Options tune a Limiter. The zero value is a working, enabled limiter.
type Options struct {
	// Disabled makes every call allowed without touching Redis
	// (RATE_LIMITS=off).
	Disabled bool
	// Now is the clock; nil means time.Now. Replicas should agree on the
	// time to within a small fraction of the window.
	Now func() time.Time
	// OnError receives Redis errors the middleware tolerated (fail open);
	// the service logs them. Nil ignores them.
	OnError func(err error)
}

// Result is the outcome of one Allow call.
type Result struct {
	// Allowed reports whether the hit is within the limit.
	Allowed bool
	// Limit is the number of hits allowed per window.
	Limit int
	// Remaining is the number of hits left in this window (never negative).
	Remaining int
	// Reset is when the current window ends.
	Reset time.Time
	// RetryAfter is, when not allowed, the time until Reset rounded up to
	// whole seconds (at least 1s); zero when allowed.
	RetryAfter time.Duration
}

// Limiter counts hits in Redis. It is safe for concurrent use, and any
// number of Limiters (in any number of processes) with the same Redis and
// prefix share their counts.
type Limiter struct {
	rdb    redis.UniversalClient
	prefix string
	opts   Options
}

// New returns a Limiter whose keys in rdb all start with prefix. rdb may be
// nil only when opts.Disabled is set.
func New(rdb redis.UniversalClient, prefix string, opts Options) *Limiter {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Limiter{rdb: rdb, prefix: prefix, opts: opts}
}

// hitScript increments the counter and gives it a TTL if it has none, in one
// atomic step: a counter can never be left without an expiry.
var hitScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if redis.call('PTTL', KEYS[1]) < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
`)

// FailedOpen reports err, a Redis error after which the caller let the
// request through, to Options.OnError (when set). Every caller of Allow
// that fails open calls it, so that each outage is counted the same way.
func (l *Limiter) FailedOpen(err error) {
	if l.opts.OnError != nil {
		l.opts.OnError(err)
	}
}

// Allow records one hit on key and reports whether it is within limit hits
// per window. key should name the rule and the subject (the middleware uses
// "<rule>:<user or ip>"). limit and window must be positive. On a Redis
// error it returns the error and a zero Result; callers decide whether to
// fail open (the middleware does).
func (l *Limiter) Allow(ctx context.Context, key string, limit int, window time.Duration) (Result, error) {
	if limit <= 0 || window < time.Millisecond {
		return Result{}, fmt.Errorf("rate limit %q: bad limit %d per %s", key, limit, window)
	}
	now := l.opts.Now()
	bucket := now.UnixMilli() / window.Milliseconds()
	reset := time.UnixMilli((bucket + 1) * window.Milliseconds())
	if l.opts.Disabled {
		return Result{Allowed: true, Limit: limit, Remaining: limit, Reset: reset}, nil
	}
	if l.rdb == nil {
		return Result{}, errors.New("rate limit: no redis client")
	}

	redisKey := l.prefix + key + ":" + strconv.FormatInt(bucket, 10)
	n, err := hitScript.Run(ctx, l.rdb, []string{redisKey}, window.Milliseconds()).Int64()
	if err != nil {
		return Result{}, fmt.Errorf("rate limit %q: %w", key, err)
	}
	res := Result{Allowed: n <= int64(limit), Limit: limit, Reset: reset}
	if res.Allowed {
		res.Remaining = limit - int(n)
	} else {
		wait := reset.Sub(now)
		res.RetryAfter = (wait + time.Second - 1).Truncate(time.Second)
		if res.RetryAfter < time.Second {
			res.RetryAfter = time.Second
		}
	}
	return res, nil
}
