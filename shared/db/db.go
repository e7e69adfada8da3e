// Package db opens the PostgreSQL pool and holds the transaction helper,
// the retry of reads on lost connections and the translation of driver
// errors into apperr kinds.
//
// Database blips (pg_terminate_backend, a failover, a restart) are absorbed
// in two places: the pool never hands out a connection the server has
// already closed (see Open), and Read repeats a read whose connection was
// lost while the statement was in flight. Writes are never repeated
// blindly.
//
// This package must never contain domain SQL; stores live next to their
// domain in each service (or in shared domain packages).
package db

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
)

// Querier is satisfied by *pgxpool.Pool, *pgxpool.Conn and pgx.Tx, so store
// helpers run the same inside or outside a transaction.
type Querier interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Options tune the pool. Zero values take the defaults noted.
type Options struct {
	MaxConns          int32         // default: pgx's (max(4, NumCPU))
	ConnectTimeout    time.Duration // default 5s
	StatementTimeout  time.Duration // server-side statement_timeout; default 30s; <0 disables
	HealthCheckPeriod time.Duration // default 30s
}

// Open connects a pool to url and pings it. The pool has a connect
// timeout and a server-side statement timeout so that no query can hang
// forever, and it checks each connection it hands out for a server-side
// close (see shouldPing).
func Open(ctx context.Context, url string, opts Options) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	if opts.ConnectTimeout == 0 {
		opts.ConnectTimeout = 5 * time.Second
	}
	if opts.StatementTimeout == 0 {
		opts.StatementTimeout = 30 * time.Second
	}
	if opts.HealthCheckPeriod == 0 {
		opts.HealthCheckPeriod = 30 * time.Second
	}
	cfg.ConnConfig.ConnectTimeout = opts.ConnectTimeout
	if opts.StatementTimeout > 0 {
		cfg.ConnConfig.RuntimeParams["statement_timeout"] = fmt.Sprint(opts.StatementTimeout.Milliseconds())
	}
	cfg.ConnConfig.RuntimeParams["timezone"] = "UTC"
	if opts.MaxConns > 0 {
		cfg.MaxConns = opts.MaxConns
	}
	cfg.HealthCheckPeriod = opts.HealthCheckPeriod
	cfg.ShouldPing = shouldPing
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	pctx, cancel := context.WithTimeout(ctx, opts.ConnectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("ping database: %w", err)
	}
	return pool, nil
}

// shouldPing decides whether pgxpool pings a connection before handing it
// out: when it has been idle over a second (pgxpool's own rule), and when
// the server has already closed it. The second catches the connections of a
// pg_terminate_backend, a failover or a server restart at once, so the next
// statement runs on a fresh connection instead of failing on a dead one
// (nothing has been sent on it, so this is safe for writes too). The ping
// reads the server's FATAL message, fails, and pgxpool destroys the
// connection and takes or opens another.
func shouldPing(_ context.Context, p pgxpool.ShouldPingParams) bool {
	return p.IdleDuration > time.Second || peerClosed(p.Conn.PgConn().Conn())
}

// Beginner starts transactions; *pgxpool.Pool satisfies it.
type Beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// InTx runs fn in a transaction: committed when fn returns nil, rolled back
// otherwise (and on panic).
func InTx(ctx context.Context, b Beginner, fn func(tx pgx.Tx) error) error {
	tx, err := b.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// IsUniqueViolation reports whether err is a unique_violation (23505),
// optionally of the named constraint (empty matches any).
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" {
		return constraint == "" || pe.ConstraintName == constraint
	}
	return false
}

// IsForeignKeyViolation reports whether err is a foreign_key_violation.
func IsForeignKeyViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23503"
}

// ConnectionLost reports whether err means the connection, not the
// statement, failed: pgconn says nothing was sent (SafeToRetry), the server
// ended the session (admin_shutdown 57P01 from pg_terminate_backend or a
// fast shutdown, crash_shutdown 57P02, cannot_connect_now 57P03, or any
// connection exception, class 08), or the stream broke. A context's
// cancellation or deadline is never a lost connection.
func ConnectionLost(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03" || strings.HasPrefix(pe.Code, "08")
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// NotApplied reports whether err means the statement provably took no
// effect because its connection was lost: pgconn says nothing was sent
// (SafeToRetry), or the server ended the session before the statement
// completed (admin_shutdown 57P01 from pg_terminate_backend or a fast
// shutdown, crash_shutdown 57P02, cannot_connect_now 57P03; a statement
// interrupted this way is rolled back). A stream cut mid-statement is
// ConnectionLost but not NotApplied: the server may have committed it.
func NotApplied(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	if pgconn.SafeToRetry(err) {
		return true
	}
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "57P01" || pe.Code == "57P02" || pe.Code == "57P03")
}

// Read runs fn, which must only read, and runs it once more when it failed
// with a lost connection (ConnectionLost): a statement in flight when the
// server terminated its backend is answered from a fresh connection instead
// of becoming a 503. A read can be repeated safely whether or not the server
// saw the first attempt. Writes must not go through Read: the first attempt
// may have committed. fn should do all its reading (QueryRow...Scan, or
// Query to the end of the rows) inside, so that the error it returns is the
// statement's.
func Read(ctx context.Context, fn func(ctx context.Context) error) error {
	err := fn(ctx)
	if err == nil || ctx.Err() != nil || !ConnectionLost(err) {
		return err
	}
	return fn(ctx)
}

// Interpret translates driver errors into apperr kinds once, at the
// adapter: no rows → NotFound ("<what> not found"), unique violation →
// Conflict, foreign-key violation → Invalid. Other errors pass through
// unchanged (they become Internal at the edge). nil stays nil.
func Interpret(err error, what string) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, pgx.ErrNoRows):
		return apperr.Wrap(apperr.KindNotFound, what+" not found", err)
	case IsUniqueViolation(err, ""):
		return apperr.Wrap(apperr.KindConflict, what+" already exists", err)
	case IsForeignKeyViolation(err):
		return apperr.Wrap(apperr.KindInvalid, what+" refers to a missing row", err)
	}
	return err
}
