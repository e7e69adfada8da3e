// Package rdb opens the Redis client. Redis holds only what may be lost
// (rate-limit counters, the token deny-list, the worker registry, job
// progress pub/sub); this package must never be used for data that needs to
// survive a Redis restart, and no request may need Redis to succeed.
//
// Because every use fails open (see docs/operations.md, "Failure modes"),
// what matters during an outage is how long each request waits before it
// gives up on Redis. Open therefore sets short timeouts and puts a circuit
// breaker in front of the client: after a connection failure every command
// fails at once, without touching the network, for the breaker's cooldown;
// then the next command tries the server again.
package rdb

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Timeouts of the client Open returns: Redis answers in well under a
// millisecond on its network, so anything slower is an outage.
const (
	DialTimeout = 500 * time.Millisecond
	IOTimeout   = 500 * time.Millisecond
	// Cooldown is how long the breaker fails commands at once after a
	// connection failure.
	Cooldown = time.Second
)

// ErrUnavailable is returned, without a network round trip, while the
// breaker is open after a recent connection failure.
var ErrUnavailable = errors.New("redis unavailable (circuit open after a recent failure)")

// Open parses url, applies the timeouts and the breaker, and pings the
// server.
func Open(ctx context.Context, url string) (*redis.Client, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("parse redis url: %w", err)
	}
	if opts.DialTimeout == 0 || opts.DialTimeout > DialTimeout {
		opts.DialTimeout = DialTimeout
	}
	opts.ReadTimeout = IOTimeout
	opts.WriteTimeout = IOTimeout
	// One immediate retry covers a pooled connection a Redis restart
	// closed; more would multiply the wait during an outage.
	opts.MaxRetries = 1
	opts.DialerRetries = 1 // go-redis's default, 5 dials 100 ms apart, is a 0.5 s wait
	// Honour context deadlines too, so callers can bound a command below
	// the read timeout (the proxy's rate-limit check waits at most 100 ms).
	opts.ContextTimeoutEnabled = true
	c := redis.NewClient(opts)
	c.AddHook(NewBreaker(Cooldown, time.Now))
	pctx, cancel := context.WithTimeout(ctx, 2*DialTimeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("ping redis: %w", err)
	}
	return c, nil
}

// Breaker is a go-redis hook that fails commands and dials at once with
// ErrUnavailable for a cooldown after a connection failure (refused,
// reset, timed out). Replies from the server, redis.Nil included, are not
// failures, and neither is a caller's own cancellation. Safe for
// concurrent use.
type Breaker struct {
	cooldown  time.Duration
	now       func() time.Time
	openUntil atomic.Int64 // unix nanoseconds
}

// NewBreaker returns a breaker with the given cooldown and clock.
func NewBreaker(cooldown time.Duration, now func() time.Time) *Breaker {
	return &Breaker{cooldown: cooldown, now: now}
}

// Open reports whether the breaker currently fails commands at once.
func (b *Breaker) Open() bool { return b.now().UnixNano() < b.openUntil.Load() }

func (b *Breaker) observe(err error) {
	if isConnFailure(err) {
		b.openUntil.Store(b.now().Add(b.cooldown).UnixNano())
	}
}

// isConnFailure reports whether err means Redis could not be reached or
// did not answer in time.
func isConnFailure(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) || errors.Is(err, ErrUnavailable) {
		return false
	}
	var re redis.Error
	if errors.As(err, &re) {
		return false // the server answered (an error reply)
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)
}

// DialHook implements redis.Hook.
func (b *Breaker) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if b.Open() {
			return nil, ErrUnavailable
		}
		conn, err := next(ctx, network, addr)
		b.observe(err)
		return conn, err
	}
}

// ProcessHook implements redis.Hook.
func (b *Breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if b.Open() {
			cmd.SetErr(ErrUnavailable)
			return ErrUnavailable
		}
		err := next(ctx, cmd)
		b.observe(err)
		return err
	}
}

// ProcessPipelineHook implements redis.Hook.
func (b *Breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if b.Open() {
			for _, cmd := range cmds {
				cmd.SetErr(ErrUnavailable)
			}
			return ErrUnavailable
		}
		err := next(ctx, cmds)
		b.observe(err)
		return err
	}
}

// Status pings c, within at most IOTimeout, for health bodies: "ok", or
// "degraded" when Redis does not answer (every use then fails open).
func Status(ctx context.Context, c redis.UniversalClient) string {
	ctx, cancel := context.WithTimeout(ctx, IOTimeout)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		return "degraded"
	}
	return "ok"
}
