// Package hosts keeps the proxy's GPU host pool in step with the api_hosts
// table: it loads the rows, LISTENs for the api_hosts_changed notification
// sent by the table's trigger (reconnecting when the database connection is
// lost), and reloads periodically as a safety net.
//
// A host keeps its *balancer.Upstream (and so its learned speed and health)
// across reloads while its address stays in the table. A deleted host is
// marked removed: it gets no new requests, and requests already on it
// finish. The table's SQL lives in shared/apihost; this package only reads.
package hosts

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/apihost"
)

// Row is one api_hosts row.
type Row = apihost.Row

// Registry loads api_hosts into a balancer.Pool. Its methods are safe for
// concurrent use.
type Registry struct {
	db   *pgxpool.Pool
	pool *balancer.Pool
	log  *zap.Logger

	// list reads api_hosts; a field so that tests can pause a reload
	// between its read and its apply.
	list func(context.Context) ([]Row, error)

	mu      sync.Mutex // held across a reload's list and apply
	byAddr  map[string]*balancer.Upstream
	invalid map[string]bool // addresses already reported as unusable
}

// NewRegistry returns a registry that fills pool from db. Nothing is loaded
// until Reload or Run.
func NewRegistry(db *pgxpool.Pool, pool *balancer.Pool, log *zap.Logger) *Registry {
	r := &Registry{
		db:      db,
		pool:    pool,
		log:     log,
		byAddr:  map[string]*balancer.Upstream{},
		invalid: map[string]bool{},
	}
	r.list = func(ctx context.Context) ([]Row, error) { return apihost.List(ctx, r.db) }
	return r
}

// Pool returns the pool the registry maintains.
func (r *Registry) Pool() *balancer.Pool { return r.pool }

// Reload reads api_hosts and applies it to the pool at once. It returns the
// hosts now in the pool. Concurrent reloads (a NOTIFY, the safety net,
// /refresh_hosts) run one after the other, each reading the table only once
// the previous one has applied its read, so an older snapshot is never
// applied over a newer one.
func (r *Registry) Reload(ctx context.Context) ([]*balancer.Upstream, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rows, err := r.list(ctx)
	if err != nil {
		return nil, err
	}
	return r.apply(rows), nil
}

// apply makes the pool match rows. The caller holds r.mu.
func (r *Registry) apply(rows []Row) []*balancer.Upstream {
	next := make([]*balancer.Upstream, 0, len(rows))
	seen := make(map[string]bool, len(rows))
	for _, row := range rows {
		addr := strings.TrimRight(strings.TrimSpace(row.Address), "/")
		if seen[addr] {
			continue
		}
		u, err := ParseAddress(addr)
		if err != nil {
			if !r.invalid[addr] {
				r.invalid[addr] = true
				r.log.Warn("ignoring api host", zap.Int64("host_id", row.ID), zap.String("address", addr), zap.Error(err))
			}
			continue
		}
		seen[addr] = true
		up := r.byAddr[addr]
		if up == nil {
			up = balancer.NewUpstream(row.ID, addr, u)
			r.byAddr[addr] = up
			r.log.Info("api host added", zap.Int64("host_id", row.ID), zap.String("address", addr))
		}
		up.ID = row.ID
		weight := row.Weight
		if !row.Enabled {
			weight = 0
		}
		if up.Weight() != weight || up.Draining() != row.Draining {
			r.log.Info("api host updated", zap.String("address", addr),
				zap.Float64("weight", weight), zap.Bool("draining", row.Draining))
		}
		up.SetWeight(weight)
		up.SetDraining(row.Draining)
		next = append(next, up)
	}
	for addr, up := range r.byAddr {
		if !seen[addr] {
			up.MarkRemoved()
			delete(r.byAddr, addr)
			r.log.Info("api host removed", zap.String("address", addr), zap.Int64("in_flight", up.InFlight()))
		}
	}
	r.pool.Set(next)
	return next
}

// ParseAddress checks that address is an absolute http(s) URL with a host
// and no query, and returns it parsed.
func ParseAddress(address string) (*url.URL, error) {
	u, err := url.Parse(address)
	if err != nil {
		return nil, fmt.Errorf("parse address: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("address must be http(s)://host[:port][/path]")
	}
	return u, nil
}

// Run keeps the pool in step with api_hosts until ctx ends: it loads the
// table, LISTENs on apihost.Channel and reloads on each notification, and also every
// interval (the safety net for lost notifications). When the listening
// connection fails it reconnects with back-off and reloads, since changes may
// have been missed. It returns nil when ctx ends.
func (r *Registry) Run(ctx context.Context, interval time.Duration) error {
	backoff := 100 * time.Millisecond
	for {
		err := r.listen(ctx, interval)
		if ctx.Err() != nil {
			return nil
		}
		r.log.Warn("api hosts listener lost", zap.Error(err), zap.Duration("retry_in", backoff))
		// Keep the pool fresh by polling while the listener is down.
		if _, rerr := r.Reload(ctx); rerr != nil && ctx.Err() == nil {
			r.log.Warn("reload api hosts", zap.Error(rerr))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
		if err == nil {
			backoff = 100 * time.Millisecond
		}
	}
}

// listen holds one LISTEN connection until it fails or ctx ends.
func (r *Registry) listen(ctx context.Context, interval time.Duration) error {
	conn, err := pgx.ConnectConfig(ctx, r.db.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect listener: %w", err)
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		_ = conn.Close(closeCtx)
	}()
	if err := apihost.Listen(ctx, conn); err != nil {
		return err
	}
	r.log.Info("listening for api host changes", zap.Uint32("backend_pid", conn.PgConn().PID()))
	// Load after LISTEN so no change between the two is missed.
	if _, err := r.Reload(ctx); err != nil {
		return err
	}
	for {
		waitCtx, cancel := context.WithTimeout(ctx, interval)
		_, err := conn.WaitForNotification(waitCtx)
		timedOut := errors.Is(waitCtx.Err(), context.DeadlineExceeded)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err != nil && !timedOut:
			return fmt.Errorf("wait for notification: %w", err)
		}
		if _, err := r.Reload(ctx); err != nil {
			return err
		}
	}
}
