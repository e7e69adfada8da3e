// Package jobapi serves the owner-only job routes: GET /v1/jobs/<id> (the
// source of truth for a job's state), GET /v1/jobs/<id>/events (Server-Sent
// Events: a snapshot, then progress, then one terminal event) and DELETE
// /v1/jobs/<id> (cancel). They live in accountsvc because the proxy sends
// every non-GPU route there; the workers run in gpusvc.
//
// This package must never run or change jobs except through shared/jobs.
package jobapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

// subscribeTimeout bounds the wait for Redis to confirm a subscription
// before a stream falls back to polling.
const subscribeTimeout = time.Second

// Options are the dependencies of the API. All are required but Limiter
// (no rate limits), KeepAlive and MaxStream.
type Options struct {
	Store  *jobs.Store
	Events *jobs.Events
	// Verifier checks the JWT on every route.
	Verifier *auth.Verifier
	Limiter  *ratelimit.Limiter
	// KeepAlive is the interval of SSE comment lines that keep proxies
	// from closing an idle stream; 0 means 15s.
	KeepAlive time.Duration
	// MaxStream bounds one SSE connection; the client reconnects and gets
	// a fresh snapshot. 0 means 1 hour.
	MaxStream time.Duration
	// Poll is how often an event stream reads the job's row when it has no
	// Redis subscription (Redis is down); 0 means 1s.
	Poll time.Duration
	// OnRedisError hears that a stream went on without Redis (it polls);
	// nil ignores it.
	OnRedisError func(err error)
}

// API holds the handlers.
type API struct {
	opts Options
}

// New returns the API.
func New(o Options) *API {
	o.KeepAlive = config.OrDefault(o.KeepAlive, 15*time.Second)
	o.MaxStream = config.OrDefault(o.MaxStream, time.Hour)
	o.Poll = config.OrDefault(o.Poll, time.Second)
	if o.OnRedisError == nil {
		o.OnRedisError = func(error) {}
	}
	return &API{opts: o}
}

// Register adds the routes to e.
func (a *API) Register(e *echo.Echo) {
	mw := []echo.MiddlewareFunc{a.opts.Verifier.Required()}
	limit := func(name string, n int) []echo.MiddlewareFunc {
		if a.opts.Limiter == nil {
			return mw
		}
		return append(append([]echo.MiddlewareFunc(nil), mw...),
			a.opts.Limiter.Middleware(ratelimit.Rule{Name: name, Limit: n, Window: time.Minute, Key: ratelimit.ByUser}))
	}
	e.GET("/v1/jobs/:id", a.handleJobGet, limit("jobs_get", 120)...)
	e.GET("/v1/jobs/:id/events", a.handleJobEvents, limit("jobs_events", 30)...)
	e.DELETE("/v1/jobs/:id", a.handleJobCancel, limit("jobs_cancel", 30)...)
}

// jobResponse is the wire shape of a job.
type jobResponse struct {
	ID            string          `json:"id"`
	Kind          jobs.Kind       `json:"kind"`
	State         jobs.State      `json:"state"`
	QueuePosition *int            `json:"queue_position"`
	Progress      float64         `json:"progress"`
	Stage         string          `json:"stage"`
	Result        json.RawMessage `json:"result"`
	Error         *string         `json:"error"`
	// AudioID and VideoProjectID name the legacy row the job works on.
	AudioID        *int64     `json:"audio_id,omitempty"`
	VideoProjectID *int64     `json:"video_project_id,omitempty"`
	CancelPending  bool       `json:"cancel_requested"`
	CreatedAt      time.Time  `json:"created_at"`
	StartedAt      *time.Time `json:"started_at"`
	FinishedAt     *time.Time `json:"finished_at"`
	// Seq orders this snapshot against the events (see jobs.Event.Seq).
	Seq int64 `json:"seq"`
}

func (a *API) toResponse(ctx context.Context, j jobs.Job) (jobResponse, error) {
	pos, err := a.opts.Store.QueuePosition(ctx, j)
	if err != nil {
		return jobResponse{}, err
	}
	r := jobResponse{ID: j.PublicID, Kind: j.Kind, State: j.State, QueuePosition: pos, Progress: j.Progress,
		Stage: j.Stage, Result: j.Result, CancelPending: j.CancelRequested, CreatedAt: j.CreatedAt,
		StartedAt: j.StartedAt, FinishedAt: j.FinishedAt, Seq: j.Seq}
	if r.Result == nil {
		r.Result = json.RawMessage("null")
	}
	if j.Error != "" {
		e := j.Error
		r.Error = &e
	}
	if j.AudioID != 0 {
		r.AudioID = &j.AudioID
	}
	if j.VideoProjectID != 0 {
		r.VideoProjectID = &j.VideoProjectID
	}
	return r, nil
}

func caller(c echo.Context) (int64, error) {
	id, ok := auth.UserID(c.Request().Context())
	if !ok {
		return 0, apperr.Unauthorized(auth.MsgTokenMissing)
	}
	return id, nil
}

// handleJobGet is GET /v1/jobs/<id>.
func (a *API) handleJobGet(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	j, err := a.opts.Store.GetForUser(ctx, uid, c.Param("id"))
	if err != nil {
		return err
	}
	resp, err := a.toResponse(ctx, j)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// handleJobCancel is DELETE /v1/jobs/<id>: 200 with the job (CANCELED at
// once when it was queued; cancel_requested while its worker stops), 409
// when it has finished.
func (a *API) handleJobCancel(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	j, err := a.opts.Store.Cancel(ctx, uid, c.Param("id"))
	if err != nil {
		return err
	}
	resp, err := a.toResponse(ctx, j)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// handleJobEvents is GET /v1/jobs/<id>/events: Server-Sent Events. It
// subscribes before reading the snapshot, so no change can fall between
// them; events not newer than the snapshot (by seq) are dropped, so the
// stream is ordered. Event names: "snapshot" (the job), "progress",
// "state" (a non-terminal state change) and "done" (the job in its
// terminal state; the stream then ends).
//
// Events come from Redis pub/sub and are best effort: on every keep-alive
// the row is read to catch up. Without Redis (the subscription fails, or
// ends) the stream polls the row every Poll instead, so a client sees the
// same events, only later by up to Poll.
func (a *API) handleJobEvents(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), a.opts.MaxStream)
	defer cancel()
	j, err := a.opts.Store.GetForUser(ctx, uid, c.Param("id"))
	if err != nil {
		return err
	}
	var events <-chan *redis.Message // nil (never ready) while polling
	sctx, scancel := context.WithTimeout(ctx, subscribeTimeout)
	sub, err := a.opts.Events.Subscribe(sctx, j.PublicID)
	scancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // the client went away
		}
		a.opts.OnRedisError(fmt.Errorf("job events of %s, polling the row instead: %w", j.PublicID, err))
	} else {
		defer sub.Close()
		events = sub.C()
	}
	// The snapshot, read after subscribing.
	if j, err = a.opts.Store.GetForUser(ctx, uid, j.PublicID); err != nil {
		return err
	}
	snap, err := a.toResponse(ctx, j)
	if err != nil {
		return err
	}

	w := c.Response()
	h := w.Header()
	h.Set(echo.HeaderContentType, "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	lastWrite := time.Now()
	send := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return err
		}
		w.Flush()
		lastWrite = time.Now()
		return nil
	}
	if err := send("snapshot", snap); err != nil {
		return nil // the client went away
	}
	if j.State.Terminal() {
		_ = send("done", snap)
		return nil
	}
	last, lastState := j.Seq, j.State

	// done sends the job's terminal event, read whole from the row.
	done := func() {
		fj, err := a.opts.Store.GetForUser(ctx, uid, j.PublicID)
		if err != nil {
			return
		}
		if resp, err := a.toResponse(ctx, fj); err == nil {
			_ = send("done", resp)
		}
	}
	// catchUp reads the row and sends what changed since last; it reports
	// whether the stream is over.
	catchUp := func() bool {
		fj, err := a.opts.Store.GetForUser(ctx, uid, j.PublicID)
		if err != nil {
			return true
		}
		if fj.Seq <= last {
			return false
		}
		last = fj.Seq
		if fj.State.Terminal() {
			done()
			return true
		}
		typ := jobs.EventState
		if fj.State == lastState {
			typ = jobs.EventProgress
		}
		lastState = fj.State
		return send(typ, jobs.EventOf(fj, typ)) != nil
	}

	interval := a.opts.KeepAlive
	if events == nil {
		interval = min(a.opts.Poll, a.opts.KeepAlive)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if catchUp() {
				return nil
			}
			if time.Since(lastWrite) >= a.opts.KeepAlive {
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
					return nil
				}
				w.Flush()
				lastWrite = time.Now()
			}
		case m, ok := <-events:
			if !ok {
				// The subscription ended (Redis went away): poll.
				events = nil
				tick.Reset(min(a.opts.Poll, a.opts.KeepAlive))
				continue
			}
			ev, ok := jobs.Decode(m)
			if !ok || ev.Seq <= last {
				continue
			}
			last = ev.Seq
			if ev.State.Terminal() {
				done()
				return nil
			}
			lastState = ev.State
			name := "progress"
			if ev.Type == jobs.EventState {
				name = "state"
			}
			if err := send(name, ev); err != nil {
				return nil
			}
		}
	}
}
