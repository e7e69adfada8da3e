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
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/ratelimit"
)

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
	Log       *zap.Logger
}

// API holds the handlers.
type API struct {
	opts Options
	log  *zap.Logger
}

// New returns the API.
func New(o Options) *API {
	if o.KeepAlive <= 0 {
		o.KeepAlive = 15 * time.Second
	}
	if o.MaxStream <= 0 {
		o.MaxStream = time.Hour
	}
	return &API{opts: o, log: o.Log.Named("jobapi")}
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
	sub, err := a.opts.Events.Subscribe(ctx, j.PublicID)
	if err != nil {
		return apperr.Wrap(apperr.KindUnavailable, "Job events are unavailable", err)
	}
	defer sub.Close()
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
	send := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", name, b); err != nil {
			return err
		}
		w.Flush()
		return nil
	}
	if err := send("snapshot", snap); err != nil {
		return nil // the client went away
	}
	if j.State.Terminal() {
		_ = send("done", snap)
		return nil
	}
	last := j.Seq
	keep := time.NewTicker(a.opts.KeepAlive)
	defer keep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-keep.C:
			// Events are best effort: on each keep-alive, catch up from the
			// row, so a lost event (even the terminal one) is recovered.
			fj, err := a.opts.Store.GetForUser(ctx, uid, j.PublicID)
			if err != nil {
				return nil
			}
			if fj.Seq > last {
				last = fj.Seq
				if fj.State.Terminal() {
					if resp, err := a.toResponse(ctx, fj); err == nil {
						_ = send("done", resp)
					}
					return nil
				}
				if err := send("state", jobs.EventOf(fj, jobs.EventState)); err != nil {
					return nil
				}
				continue
			}
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return nil
			}
			w.Flush()
		case m, ok := <-sub.C():
			if !ok {
				return nil
			}
			ev, ok := jobs.Decode(m)
			if !ok || ev.Seq <= last {
				continue
			}
			last = ev.Seq
			if ev.State.Terminal() {
				// The full job, with its result ids and times.
				fj, err := a.opts.Store.GetForUser(ctx, uid, j.PublicID)
				if err != nil {
					return nil
				}
				resp, err := a.toResponse(ctx, fj)
				if err != nil {
					return nil
				}
				_ = send("done", resp)
				return nil
			}
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
