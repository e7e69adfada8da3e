package library

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Conn is a pool or a transaction: the row functions of this package take
// one, so the same code runs on its own or inside a caller's transaction
// (where Begin opens a savepoint). *pgxpool.Pool and pgx.Tx implement it.
type Conn interface {
	db.Querier
	db.Beginner
}

// The legacy state column of audio rows and video projects (NULL for
// uploads and projects never queued).
const (
	StateQueued     = "QUEUED"
	StateProcessing = "PROCESSING"
	StateCompleted  = "COMPLETED"
	StateUnfinished = "UNFINISHED"
)

// rowErr maps the error of a query for one of the caller's rows: no row is
// notFound (the route's legacy 404), anything else is wrapped naming op.
// err must not be nil.
func rowErr(err, notFound error, op string) error {
	if errors.Is(err, pgx.ErrNoRows) {
		return notFound
	}
	return fmt.Errorf("%s: %w", op, err)
}

// scanAll reads every row of rows with scan and closes rows. No rows is an
// empty, non-nil slice.
func scanAll[T any](rows pgx.Rows, scan func(pgx.Row) (T, error)) ([]T, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (T, error) { return scan(r) })
}

// Busy reports whether state is one a job is working on (QUEUED or
// PROCESSING): such rows must not change under the job or lose their row.
func Busy(state *string) bool {
	return state != nil && (*state == StateQueued || *state == StateProcessing)
}

// errBusy is the 409 for a change to a row (what: "Audio", "Video
// project") whose job is QUEUED or PROCESSING.
func errBusy(what string, state *string) *apperr.Error {
	st := StateQueued
	if state != nil {
		st = *state
	}
	return apperr.Conflict(what+" is "+strings.ToLower(st)+
		"; cancel its job first (DELETE /v1/jobs/<id>)").WithField("state", st)
}

// Truncate cuts s to at most n bytes on a rune boundary.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}
