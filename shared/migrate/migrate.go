// Package migrate applies the database schema: the embedded goose sequence in
// shared/migrations, then River's own migrations, so that every table the
// services use exists.
//
// It never runs Down migrations and never touches data beyond what the SQL
// files say. Concurrent Up calls against the same database (several services
// starting at once) are serialized with PostgreSQL advisory locks.
package migrate

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"path"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/migrations"
)

// riverLockID is the session advisory lock key held while River's
// migrations run ("nounsriv" in ASCII). goose uses its own key
// (lock.DefaultLockID).
const riverLockID int64 = 0x6e6f756e73726976

// MigrationStatus is the state of one goose migration file.
type MigrationStatus struct {
	// Version is the number the file name starts with.
	Version int64
	// Name is the file name, e.g. "00001_legacy_schema.sql".
	Name string
	// Applied reports whether the version is recorded in goose_db_version.
	Applied bool
	// AppliedAt is when it was applied; zero while pending.
	AppliedAt time.Time
}

// Up applies every pending goose migration and then River's migrations to the
// database at databaseURL (a postgres:// URL or key/value DSN). Each applied
// migration is logged at info level. It is safe to call concurrently from
// several processes; it returns nil when there was nothing to do.
func Up(ctx context.Context, databaseURL string, log *zap.Logger) error {
	log = log.Named("migrate")
	if err := gooseUp(ctx, databaseURL, log); err != nil {
		return err
	}
	return riverUp(ctx, databaseURL, log)
}

// Status lists every embedded goose migration in version order with whether it
// has been applied to the database at databaseURL. River's migrations are not
// listed; Up applies them all.
func Status(ctx context.Context, databaseURL string) ([]MigrationStatus, error) {
	provider, db, err := newProvider(databaseURL)
	if err != nil {
		return nil, err
	}
	defer db.Close()

	list, err := provider.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("read migration status: %w", err)
	}
	out := make([]MigrationStatus, 0, len(list))
	for _, s := range list {
		out = append(out, MigrationStatus{
			Version:   s.Source.Version,
			Name:      path.Base(s.Source.Path),
			Applied:   s.State == goose.StateApplied,
			AppliedAt: s.AppliedAt,
		})
	}
	return out, nil
}

// Fingerprint returns a hex SHA-256 over everything Up applies: the names and
// contents of the embedded goose files and River's bundled migrations. Two
// databases migrated by builds with the same fingerprint have the same schema.
func Fingerprint() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(migrations.FS, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(migrations.FS, name)
		if err != nil {
			return err
		}
		fmt.Fprintf(h, "%s\x00%d\x00", name, len(b))
		h.Write(b)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("hash migration files: %w", err)
	}
	migrator, err := newRiverMigrator(nil)
	if err != nil {
		return "", err
	}
	for _, m := range migrator.AllVersions() {
		fmt.Fprintf(h, "river\x00%d\x00%d\x00", m.Version, len(m.SQLUp))
		h.Write([]byte(m.SQLUp))
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func gooseUp(ctx context.Context, databaseURL string, log *zap.Logger) error {
	provider, db, err := newProvider(databaseURL)
	if err != nil {
		return err
	}
	defer db.Close()

	results, err := provider.Up(ctx)
	var partial *goose.PartialError
	if errors.As(err, &partial) {
		results = partial.Applied
	}
	for _, r := range results {
		log.Info("applied migration",
			zap.Int64("version", r.Source.Version),
			zap.String("name", path.Base(r.Source.Path)),
			zap.Duration("duration", r.Duration))
	}
	if partial != nil {
		return fmt.Errorf("apply migration %s: %w", path.Base(partial.Failed.Source.Path), partial.Err)
	}
	if err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// newProvider returns a goose provider over the embedded files and the
// database/sql handle it uses, which the caller closes.
func newProvider(databaseURL string) (*goose.Provider, *sql.DB, error) {
	cfg, err := pgx.ParseConfig(databaseURL)
	if err != nil {
		return nil, nil, fmt.Errorf("parse database url: %w", err)
	}
	db := stdlib.OpenDB(*cfg)

	// Poll every second (not goose's default five) so a second starter waits
	// only as long as the first one needs; give up after five minutes.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("create migration locker: %w", err)
	}
	// Out-of-order application is allowed: migrations written on parallel
	// branches get numbers below one a developer database already has.
	// Every file is idempotent, so applying a lower number later is safe.
	provider, err := goose.NewProvider(goose.DialectPostgres, db, migrations.FS,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
		goose.WithAllowOutofOrder(true),
	)
	if err != nil {
		db.Close()
		return nil, nil, fmt.Errorf("create migration provider: %w", err)
	}
	return provider, db, nil
}

func riverUp(ctx context.Context, databaseURL string, log *zap.Logger) error {
	pool, err := pgxpool.New(ctx, databaseURL)
	if err != nil {
		return fmt.Errorf("open river migration pool: %w", err)
	}
	defer pool.Close()

	migrator, err := newRiverMigrator(pool)
	if err != nil {
		return err
	}
	// River's versions cannot share one transaction (one adds an enum value
	// the next uses), so the lock is a session lock on a connection held
	// aside while the migrator works through the pool.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire river migration lock connection: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", riverLockID); err != nil {
		return fmt.Errorf("lock river migration: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", riverLockID) //nolint:errcheck // the lock also ends with the session

	res, err := migrator.Migrate(ctx, rivermigrate.DirectionUp, nil)
	if err != nil {
		return fmt.Errorf("apply river migrations: %w", err)
	}
	for _, v := range res.Versions {
		log.Info("applied river migration",
			zap.Int("version", v.Version),
			zap.String("name", v.Name),
			zap.Duration("duration", v.Duration))
	}
	return nil
}

// newRiverMigrator builds River's migrator; pool may be nil when only the
// bundled migrations are read.
func newRiverMigrator(pool *pgxpool.Pool) (*rivermigrate.Migrator[pgx.Tx], error) {
	// River logs through slog to stdout by default; Up logs the results itself.
	m, err := rivermigrate.New(riverpgxv5.New(pool), &rivermigrate.Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, fmt.Errorf("create river migrator: %w", err)
	}
	return m, nil
}
