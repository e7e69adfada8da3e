package jobs

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"
)

// Registry records which operations the live workers support, so that the
// API can refuse work no worker can do (501) instead of queueing it to
// fail. Each gpusvc announces its backend's operations every few seconds
// under "<prefix>jobs:worker:<id>" with a TTL; the entry vanishes when the
// process dies. Safe for concurrent use.
type Registry struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewRegistry returns a registry on rdb with the configured key prefix.
func NewRegistry(rdb redis.UniversalClient, prefix string) *Registry {
	return &Registry{rdb: rdb, prefix: prefix}
}

func (r *Registry) key(workerID string) string { return r.prefix + "jobs:worker:" + workerID }

// Announce records that workerID supports ops, for ttl.
func (r *Registry) Announce(ctx context.Context, workerID string, ops []string, ttl time.Duration) error {
	b, err := json.Marshal(ops)
	if err != nil {
		return fmt.Errorf("encode worker ops: %w", err)
	}
	if err := r.rdb.Set(ctx, r.key(workerID), b, ttl).Err(); err != nil {
		return fmt.Errorf("announce worker %s: %w", workerID, err)
	}
	return nil
}

// Withdraw removes workerID's entry (on shutdown).
func (r *Registry) Withdraw(ctx context.Context, workerID string) error {
	return r.rdb.Del(ctx, r.key(workerID)).Err()
}

// Supports reports whether some live worker supports op. known is false
// when no worker is live at all: the caller then accepts the work (it
// waits in the queue for a worker) rather than guessing.
func (r *Registry) Supports(ctx context.Context, op string) (supported, known bool, err error) {
	iter := r.rdb.Scan(ctx, 0, r.prefix+"jobs:worker:*", 100).Iterator()
	for iter.Next(ctx) {
		raw, err := r.rdb.Get(ctx, iter.Val()).Bytes()
		if err != nil {
			continue // expired between SCAN and GET
		}
		var ops []string
		if json.Unmarshal(raw, &ops) != nil {
			continue
		}
		known = true
		if slices.Contains(ops, op) {
			return true, true, nil
		}
	}
	if err := iter.Err(); err != nil {
		return false, false, fmt.Errorf("read worker registry: %w", err)
	}
	return false, known, nil
}
