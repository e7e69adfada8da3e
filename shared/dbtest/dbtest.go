// Package dbtest gives tests their own real PostgreSQL databases and Redis key
// spaces, and removes them when the test ends.
//
// Migrated databases are copied from a template database that is built once
// per migration set (see migrate.Fingerprint) and shared by every test process
// on the server, so New costs one CREATE DATABASE. A missing server fails the
// test; it never skips. This package is for tests only: it must never be
// imported by production code.
package dbtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/migrate"
)

const (
	defaultAdminURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

	// templateLockID is the session advisory lock key held while a template
	// database is checked or built ("nounstpl" in ASCII).
	templateLockID int64 = 0x6e6f756e7374706c
	// templateComplete marks, as the database comment, a template whose
	// migrations all succeeded. It is written last.
	templateComplete = "nounsai dbtest template: complete"

	// staleAfter is the age after which a leftover t_* database from a crashed
	// run is dropped.
	staleAfter = time.Hour
	opTimeout  = 2 * time.Minute
)

// The template is built at most once per test process.
var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// AdminURL returns the URL of the maintenance database tests connect to for
// creating and dropping databases: $TEST_DATABASE_URL, or
// postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable. It must be in
// URL form, since the database name is swapped in its path.
func AdminURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return defaultAdminURL
}

// New returns a pool on a fresh database with every migration applied. The pool
// is closed and the database dropped when the test ends.
func New(tb testing.TB) *pgxpool.Pool {
	tb.Helper()
	dbURL := NewURL(tb)
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		tb.Fatalf("dbtest: open pool: %v", err)
	}
	// Registered after the drop, so it runs first.
	tb.Cleanup(pool.Close)
	return pool
}

// NewURL is like New but returns the database's URL, for tests that start real
// processes. The database is dropped, with any connections still open, when the
// test ends.
func NewURL(tb testing.TB) string {
	tb.Helper()
	templateOnce.Do(func() { templateName, templateErr = ensureTemplate() })
	if templateErr != nil {
		tb.Fatalf("dbtest: %v", templateErr)
	}
	return createDatabase(tb, templateName)
}

// Empty returns the URL of a fresh database without any tables, for tests that
// build a legacy schema themselves. It is dropped when the test ends.
func Empty(tb testing.TB) string {
	tb.Helper()
	return createDatabase(tb, "template0")
}

func createDatabase(tb testing.TB, template string) string {
	tb.Helper()
	name := fmt.Sprintf("t_%d_%s", time.Now().Unix(), randomHex(6))
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()

	conn := connectAdmin(ctx, tb)
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+pgx.Identifier{template}.Sanitize()); err != nil {
		tb.Fatalf("dbtest: create database %s from %s: %v", name, template, err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
		defer cancel()
		conn, err := pgx.Connect(ctx, AdminURL())
		if err != nil {
			tb.Errorf("dbtest: drop database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("dbtest: drop database %s: %v", name, err)
		}
	})
	return databaseURL(tb, name)
}

func connectAdmin(ctx context.Context, tb testing.TB) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		tb.Fatalf("dbtest: PostgreSQL is unreachable at %s (set TEST_DATABASE_URL): %v", redact(AdminURL()), err)
	}
	return conn
}

// ensureTemplate returns the name of the complete template database for the
// current migration set, building it if needed. Test processes running in
// parallel serialize on an advisory lock; the first one builds, the others
// wait and reuse.
func ensureTemplate() (string, error) {
	fp, err := migrate.Fingerprint()
	if err != nil {
		return "", err
	}
	name := "nounsai_tmpl_" + fp[:12]

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, AdminURL())
	if err != nil {
		return "", fmt.Errorf("PostgreSQL is unreachable at %s (set TEST_DATABASE_URL): %w", redact(AdminURL()), err)
	}
	defer conn.Close(ctx)

	dropStale(ctx, conn)

	if ok, err := templateReady(ctx, conn, name); err != nil || ok {
		return name, err
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", templateLockID); err != nil {
		return "", fmt.Errorf("lock template %s: %w", name, err)
	}
	defer conn.Exec(context.Background(), "SELECT pg_advisory_unlock($1)", templateLockID) //nolint:errcheck // the lock also ends with the session

	// Another process may have finished it while we waited.
	if ok, err := templateReady(ctx, conn, name); err != nil || ok {
		return name, err
	}
	// A template without the marker is the remains of a crashed build.
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop incomplete template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE template0"); err != nil {
		return "", fmt.Errorf("create template %s: %w", name, err)
	}
	tmplURL, err := withDatabase(AdminURL(), name)
	if err != nil {
		return "", err
	}
	if err := migrate.Up(ctx, tmplURL, zap.NewNop()); err != nil {
		return "", fmt.Errorf("migrate template %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "COMMENT ON DATABASE "+name+" IS '"+templateComplete+"'"); err != nil {
		return "", fmt.Errorf("mark template %s complete: %w", name, err)
	}
	return name, nil
}

func templateReady(ctx context.Context, conn *pgx.Conn, name string) (bool, error) {
	var comment *string
	err := conn.QueryRow(ctx,
		"SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", name).Scan(&comment)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check template %s: %w", name, err)
	}
	return comment != nil && *comment == templateComplete, nil
}

// dropStale drops t_<unix seconds>_<hex> databases older than staleAfter, left
// behind by test processes that died before their cleanup ran. Best effort:
// errors are ignored, since another process may be dropping the same ones.
func dropStale(ctx context.Context, conn *pgx.Conn) {
	rows, err := conn.Query(ctx, `SELECT datname FROM pg_database WHERE datname LIKE 't\_%\_%'`)
	if err != nil {
		return
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	for _, name := range names {
		parts := strings.SplitN(name, "_", 3)
		created, err := strconv.ParseInt(parts[1], 10, 64)
		if err != nil || time.Since(time.Unix(created, 0)) < staleAfter {
			continue
		}
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
	}
}

// databaseURL returns the URL of database name for tests. Its sessions
// run in UTC, as db.Open's do, whatever the server's TimeZone: legacy
// TIMESTAMP columns hold UTC and tests compare them with Go clocks.
func databaseURL(tb testing.TB, name string) string {
	tb.Helper()
	raw, err := withDatabase(AdminURL(), name)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	u, err := url.Parse(raw)
	if err != nil {
		tb.Fatalf("dbtest: %v", err)
	}
	q := u.Query()
	q.Set("timezone", "UTC")
	u.RawQuery = q.Encode()
	return u.String()
}

func withDatabase(adminURL, name string) (string, error) {
	u, err := url.Parse(adminURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", errors.New("TEST_DATABASE_URL must be a postgres:// URL")
	}
	u.Path = "/" + name
	return u.String(), nil
}

func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails
	return hex.EncodeToString(b)
}
