package httpapi

import (
	"errors"
	"maps"
	"net/http"
	"sync"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/gpusvc/internal/capacity"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// slotNotice answers the proxy's request for a slot notice (see
// gpuroute.SlotNoticeHeader): when the request's first capacity slot is
// released, it sends the informational response that says so, on the
// handler's own goroutine (the limiter calls the notice from the release,
// which runs on the goroutine that generates). Only the notice header goes
// out with it; the headers set so far are kept for the final answer.
// Requests without the header are untouched.
func slotNotice(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.Header.Get(gpuroute.SlotNoticeHeader) == "" {
			return next(c)
		}
		var once sync.Once
		notice := func() {
			once.Do(func() {
				res := c.Response()
				if res.Committed {
					return
				}
				// The raw writer: echo's Response would take the 1xx for
				// the final status.
				sendSlotNotice(res.Writer)
			})
		}
		c.SetRequest(r.WithContext(capacity.WithReleaseNotice(r.Context(), notice)))
		return next(c)
	}
}

// sendSlotNotice writes the slot notice on w with no other header, leaving
// w's headers as they were.
func sendSlotNotice(w http.ResponseWriter) {
	h := w.Header()
	kept := h.Clone()
	clear(h)
	h.Set(gpuroute.SlotNoticeHeader, gpuroute.SlotReleased)
	w.WriteHeader(gpuroute.SlotNoticeStatus)
	clear(h)
	maps.Copy(h, kept)
}

// hostFull marks the answer of a request refused because every slot and the
// wait queue were busy with gpuroute.HostFullHeader, so the proxy may send
// it to another host.
func hostFull(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		err := next(c)
		if errors.Is(err, capacity.ErrFull) {
			c.Response().Header().Set(gpuroute.HostFullHeader, "1")
		}
		return err
	}
}
