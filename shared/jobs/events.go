package jobs

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// The event types.
const (
	// EventProgress reports progress (and stage) of a PROCESSING job.
	EventProgress = "progress"
	// EventState reports a state change; a terminal State ends the stream.
	EventState = "state"
)

// Event is one message on a job's Redis channel.
type Event struct {
	// Type is EventProgress or EventState.
	Type string `json:"type"`
	// JobID is the job's public id.
	JobID string `json:"job_id"`
	// Seq is the row's seq after the change: consumers drop events whose
	// Seq is not above the snapshot they already have.
	Seq      int64   `json:"seq"`
	State    State   `json:"state"`
	Progress float64 `json:"progress"`
	Stage    string  `json:"stage"`
	// Error is the reason of an ERROR; "" otherwise.
	Error string `json:"error,omitempty"`
	// Result is the result ids of a COMPLETED job.
	Result json.RawMessage `json:"result,omitempty"`
}

// Events publishes and subscribes to job events on Redis pub/sub, on the
// channel "<prefix>job:<public id>". Delivery is best effort: a lost event
// is recovered by reading the job (GET /v1/jobs/<id>). Safe for concurrent
// use.
type Events struct {
	rdb    redis.UniversalClient
	prefix string
}

// NewEvents returns an Events on rdb; prefix is the configured Redis key
// prefix (config.Common.RedisPrefix).
func NewEvents(rdb redis.UniversalClient, prefix string) *Events {
	return &Events{rdb: rdb, prefix: prefix}
}

// Channel returns the channel of the job with the public id.
func (e *Events) Channel(publicID string) string { return e.prefix + "job:" + publicID }

// Publish sends ev on its job's channel.
func (e *Events) Publish(ctx context.Context, ev Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode job event: %w", err)
	}
	if err := e.rdb.Publish(ctx, e.Channel(ev.JobID), b).Err(); err != nil {
		return fmt.Errorf("publish job event for %s: %w", ev.JobID, err)
	}
	return nil
}

// Subscription is a subscription to one job's events. Close it when done.
type Subscription struct {
	ps *redis.PubSub
	ch <-chan *redis.Message
}

// Subscribe subscribes to the job's channel and waits until Redis has
// confirmed the subscription, so that every event published after
// Subscribe returns is delivered: read the snapshot after subscribing.
func (e *Events) Subscribe(ctx context.Context, publicID string) (*Subscription, error) {
	ps := e.rdb.Subscribe(ctx, e.Channel(publicID))
	if _, err := ps.Receive(ctx); err != nil {
		_ = ps.Close()
		return nil, fmt.Errorf("subscribe to job %s: %w", publicID, err)
	}
	return &Subscription{ps: ps, ch: ps.Channel()}, nil
}

// Next returns the next event, or an error when ctx ends or the
// subscription is closed. Malformed messages are skipped.
func (s *Subscription) Next(ctx context.Context) (Event, error) {
	for {
		select {
		case <-ctx.Done():
			return Event{}, ctx.Err()
		case m, ok := <-s.ch:
			if !ok {
				return Event{}, fmt.Errorf("job event subscription closed")
			}
			var ev Event
			if json.Unmarshal([]byte(m.Payload), &ev) == nil {
				return ev, nil
			}
		}
	}
}

// C returns the raw message channel, for select loops; decode messages
// with Decode.
func (s *Subscription) C() <-chan *redis.Message { return s.ch }

// Decode parses a message from C; ok is false for a malformed one.
func Decode(m *redis.Message) (Event, bool) {
	var ev Event
	if m == nil || json.Unmarshal([]byte(m.Payload), &ev) != nil {
		return Event{}, false
	}
	return ev, true
}

// Close ends the subscription.
func (s *Subscription) Close() error { return s.ps.Close() }
