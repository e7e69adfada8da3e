package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// ErrorHandler returns the one echo HTTPErrorHandler: it maps an error to a
// status and a JSON body in the legacy shape, logs 5xx with their cause,
// and never sends the cause. It also turns echo's own 404/405 and
// http.MaxBytesError into JSON.
func ErrorHandler(log *zap.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		ae := Classify(err)
		status := ae.Kind.Status()
		if status >= 500 {
			if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
				// The client went away; nobody reads the answer.
				status = 499
			} else {
				log.Error("request failed",
					zap.String("request_id", RequestID(c.Request().Context())),
					zap.String("method", c.Request().Method),
					zap.String("route", c.Path()),
					zap.Int("status", status),
					zap.Error(err))
			}
		}
		body := make(map[string]any, 1+len(ae.Fields))
		for k, v := range ae.Fields {
			body[k] = v
		}
		key := ae.Key
		if key == "" {
			key = "message"
		}
		body[key] = ae.Message
		if ae.RetryAfter > 0 {
			c.Response().Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(ae.RetryAfter.Seconds()))))
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(status)
			return
		}
		_ = c.JSON(status, body)
	}
}

// Classify maps any error to the *apperr.Error that decides the response.
// Unknown errors become a generic Internal error.
func Classify(err error) *apperr.Error {
	if ae, ok := apperr.As(err); ok {
		if ae.Kind == apperr.KindInternal {
			return apperr.New(apperr.KindInternal, "Internal server error")
		}
		return ae
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return apperr.TooLarge(TooLargeMessage).WithKey("error")
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		switch he.Code {
		case http.StatusNotFound:
			return apperr.NotFound("Not Found")
		case http.StatusMethodNotAllowed:
			return apperr.New(apperr.KindMethodNotAllowed, "Method Not Allowed")
		case http.StatusRequestEntityTooLarge:
			return apperr.TooLarge(TooLargeMessage).WithKey("error")
		case http.StatusUnauthorized:
			return apperr.Unauthorized(fmt.Sprint(he.Message))
		}
		if he.Code >= 400 && he.Code < 500 {
			msg := http.StatusText(he.Code)
			if s, ok := he.Message.(string); ok && s != "" {
				msg = s
			}
			return &apperr.Error{Kind: apperr.KindInvalid, Message: msg}
		}
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return apperr.Timeout("The operation timed out")
	}
	if db.ConnectionLost(err) {
		// A database blip (pg_terminate_backend, a failover): the next
		// try runs on a fresh connection, so say so instead of a 500.
		return apperr.Unavailable("The database connection was lost, retry").WithRetryAfter(time.Second)
	}
	return apperr.New(apperr.KindInternal, "Internal server error")
}

// DecodeJSON decodes the request body into v whatever the Content-Type (as
// the legacy API did). An empty, malformed or oversized body is a 4xx
// *apperr.Error. Unknown fields are ignored, as the legacy frontend sends
// extra ones.
func DecodeJSON(c echo.Context, v any) error {
	body := c.Request().Body
	if body == nil {
		return apperr.Invalid("Invalid data!")
	}
	dec := json.NewDecoder(body)
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.As(err, &mbe):
			return apperr.TooLarge(TooLargeMessage).WithKey("error")
		case errors.Is(err, io.EOF):
			return apperr.Invalid("Request body must be JSON")
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			field := te.Field
			if field == "" {
				field = "body"
			}
			return apperr.Wrap(apperr.KindInvalid, fmt.Sprintf("Invalid type for %s", field), err)
		}
		return apperr.Wrap(apperr.KindInvalid, "Invalid JSON body", err)
	}
	// Anything after the first value other than white space is malformed.
	if dec.More() {
		return apperr.Invalid("Invalid JSON body")
	}
	if _, err := io.Copy(io.Discard, io.LimitReader(body, 1)); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return apperr.TooLarge(TooLargeMessage).WithKey("error")
		}
	}
	return nil
}

// PathInt64 parses the named path parameter as a positive int64, or returns
// a NotFound error (an unparsable id names no row).
func PathInt64(c echo.Context, name, what string) (int64, error) {
	s := c.Param(name)
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n <= 0 {
		return 0, apperr.NotFound(what + " not found")
	}
	return n, nil
}
