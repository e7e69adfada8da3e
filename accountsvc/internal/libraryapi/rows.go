package libraryapi

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
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
