package dbtest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const defaultRedisURL = "redis://127.0.0.1:6379/0"

// RedisURL returns the URL of the Redis tests use: $TEST_REDIS_URL, or
// redis://127.0.0.1:6379/0.
func RedisURL() string {
	if u := os.Getenv("TEST_REDIS_URL"); u != "" {
		return u
	}
	return defaultRedisURL
}

// Redis returns a client on $TEST_REDIS_URL (default redis://127.0.0.1:6379/0)
// and a key prefix unique to the test, "test:<random>:". Tests must put every
// key they write under the prefix: when the test ends, all keys with it are
// deleted and the client is closed.
func Redis(tb testing.TB) (*redis.Client, string) {
	tb.Helper()
	raw := RedisURL()
	opts, err := redis.ParseURL(raw)
	if err != nil {
		tb.Fatalf("dbtest: parse TEST_REDIS_URL: %v", err)
	}
	client := redis.NewClient(opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		_ = client.Close()
		tb.Fatalf("dbtest: Redis is unreachable at %s (set TEST_REDIS_URL): %v", redact(raw), err)
	}

	prefix := "test:" + randomHex(8) + ":"
	tb.Cleanup(func() {
		defer client.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := deletePrefix(ctx, client, prefix); err != nil {
			tb.Errorf("dbtest: delete redis keys %s*: %v", prefix, err)
		}
	})
	return client, prefix
}

// deletePrefix deletes every key starting with prefix; prefix must not contain
// glob characters.
func deletePrefix(ctx context.Context, client *redis.Client, prefix string) error {
	iter := client.Scan(ctx, 0, prefix+"*", 500).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			if err := client.Del(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return client.Del(ctx, batch...).Err()
	}
	return nil
}
