package web

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/db"
)

// retryReads runs a GET or HEAD handler once more when it failed because
// its database connection was lost before its statement took effect
// (db.NotApplied: pg_terminate_backend, a failover, a restart) and nothing
// has been written to the client yet. GET and HEAD only read (RFC 9110
// safe methods) and carry no body, so the second run sees the same request
// on a fresh connection; the pool hands out no dead connection (db.Open).
// Statements whose fate is unknown (a stream cut mid-statement) are not
// repeated, so a GET that consumes a one-time token cannot run twice.
// Writes (POST, PUT, PATCH, DELETE) are never repeated here.
func retryReads() echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			err := next(c)
			method := c.Request().Method
			if err == nil || (method != http.MethodGet && method != http.MethodHead) ||
				c.Response().Committed || c.Request().Context().Err() != nil || !db.NotApplied(err) {
				return err
			}
			return next(c)
		}
	}
}
