package admission

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Redis layout (see the package doc): a hash per replica,
// <prefix>admission:replica:<id>, with fields "r:<user>" (in flight) and
// "w:<user>" (waiting), and the sorted set <prefix>admission:replicas of
// replica ids scored by when their hash expires.
func (c *Controller) replicaKey(id string) string {
	return c.cfg.RedisPrefix + "admission:replica:" + id
}

func (c *Controller) replicasKey() string { return c.cfg.RedisPrefix + "admission:replicas" }

// Sync publishes this replica's per-user counts to Redis and reads the
// other replicas'. On a Redis error it forgets the remote counts (this
// replica then shares alone) and reports the error to Deps.OnRedisError.
// Run calls it every SyncInterval; tests call it directly.
func (c *Controller) Sync(ctx context.Context) {
	if c.deps.Redis == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.SyncInterval)
	defer cancel()
	running, waiting, err := c.sync(ctx)
	if err != nil {
		if c.deps.OnRedisError != nil {
			c.deps.OnRedisError(err)
		}
		running, waiting = nil, nil
	}
	c.mu.Lock()
	c.q.setRemote(running, waiting)
	c.dispatch(c.deps.Now())
	c.mu.Unlock()
}

func (c *Controller) sync(ctx context.Context) (running, waiting map[string]int, err error) {
	fields := map[string]any{}
	c.mu.Lock()
	for k, u := range c.q.users {
		if u.running > 0 {
			fields["r:"+k] = u.running
		}
		if u.waiting > 0 {
			fields["w:"+k] = u.waiting
		}
	}
	c.mu.Unlock()

	now := c.deps.Now()
	ttl := 3 * c.cfg.SyncInterval
	own := c.replicaKey(c.cfg.ReplicaID)
	var ids *redis.StringSliceCmd
	_, err = c.deps.Redis.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, own)
		if len(fields) > 0 {
			p.HSet(ctx, own, fields)
			p.PExpire(ctx, own, ttl)
		}
		p.ZAdd(ctx, c.replicasKey(), redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: c.cfg.ReplicaID})
		p.ZRemRangeByScore(ctx, c.replicasKey(), "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		p.PExpire(ctx, c.replicasKey(), ttl)
		ids = p.ZRange(ctx, c.replicasKey(), 0, -1)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("admission sync: publish counts: %w", err)
	}
	var hashes []*redis.MapStringStringCmd
	_, err = c.deps.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids.Val() {
			if id != c.cfg.ReplicaID {
				hashes = append(hashes, p.HGetAll(ctx, c.replicaKey(id)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("admission sync: read other replicas: %w", err)
	}
	running, waiting = map[string]int{}, map[string]int{}
	for _, h := range hashes {
		for f, v := range h.Val() {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				continue
			}
			if k, ok := strings.CutPrefix(f, "r:"); ok {
				running[k] += n
			} else if k, ok := strings.CutPrefix(f, "w:"); ok {
				waiting[k] += n
			}
		}
	}
	return running, waiting, nil
}
