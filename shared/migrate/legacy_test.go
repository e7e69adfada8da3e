package migrate_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/migrate"
)

// legacyColumns lists every column of every legacy table as production has
// it. Columns named metadata hold JSON and are compared as jsonb, so a later
// migration may change their type but not their content.
var legacyColumns = map[string][]string{
	"users":             {"id", "email", "password", "is_verified", "verify_key", "referral_token", "metadata", "created_at"},
	"password_recovery": {"id", "user_id", "reset_key", "created_at"},
	"images":            {"id", "user_id", "base_64", "thumb_base_64", "hash", "metadata", "cdn_id", "is_public", "is_liked", "parent_id", "created_at", "updated_at"},
	"audio":             {"id", "user_id", "name", "cdn_id", "size", "metadata", "created_at", "updated_at", "state"},
	"videos":            {"id", "user_id", "metadata", "created_at", "updated_at", "cdn_id", "start_frame_id", "end_frame_id", "start_frame_cdn_id", "end_frame_cdn_id", "duration", "name"},
	"links":             {"id", "user_id", "metadata", "created_at", "updated_at"},
	"models":            {"id", "model_id", "created_at"},
	"api_hosts":         {"id", "address"},
	"referrals":         {"id", "referrer_id", "referred_id", "metadata", "created_at", "updated_at"},
	"rewards":           {"id", "name", "sql", "metadata", "created_at", "updated_at"},
	"transactions":      {"id", "metadata", "created_at", "updated_at", "expires_at", "user_id", "type", "amount", "amount_remaining", "memo"},
	"video_projects":    {"id", "user_id", "audio_id", "metadata", "created_at", "updated_at", "state", "cdn_id"},
}

func TestUpKeepsLegacyRows(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.Empty(t)
	conn := connect(t, dbURL)
	execFile(t, conn, "testdata/legacy_schema.sql")
	execFile(t, conn, "testdata/legacy_rows.sql")

	before := dump(t, conn)
	for table, rows := range before {
		require.NotEmpty(t, rows, "table %s has no rows to check", table)
	}

	require.NoError(t, migrate.Up(ctx, dbURL, zaptest.NewLogger(t)))
	requireRowsKept(t, before, dump(t, conn), "first Up")

	require.NoError(t, migrate.Up(ctx, dbURL, zaptest.NewLogger(t)), "second Up")
	requireRowsKept(t, before, dump(t, conn), "second Up")

	status, err := migrate.Status(ctx, dbURL)
	require.NoError(t, err)
	require.NotEmpty(t, status)
	for _, s := range status {
		require.True(t, s.Applied, "migration %s pending after Up", s.Name)
	}

	// The 00002 fixes are in place and the identity sequences continue.
	require.True(t, exists(t, conn, `SELECT 1 FROM pg_constraint WHERE conrelid = 'links'::regclass AND contype = 'p'`), "links has no primary key")
	require.True(t, exists(t, conn, `SELECT 1 FROM pg_indexes WHERE indexname = 'users_email_lower_uniq'`), "no unique index on lower(email)")
	require.True(t, exists(t, conn, `SELECT 1 FROM pg_indexes WHERE indexname = 'audio_user_id_name_cdn_id_uniq'`), "no unique index on audio")
	var linkID int
	require.NoError(t, conn.QueryRow(ctx, `INSERT INTO links (user_id, metadata) VALUES (1, '{}') RETURNING id`).Scan(&linkID))
	require.Equal(t, len(before["links"])+1, linkID)
	_, err = conn.Exec(ctx, `INSERT INTO users (email, password, metadata) VALUES ('ALICE@example.com', 'x', '{}')`)
	require.ErrorContains(t, err, "users_email_lower_uniq")
}

func TestUpOnEmptyDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.Empty(t)

	// Concurrent starters must serialize, not fail.
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() { errs[i] = migrate.Up(ctx, dbURL, zaptest.NewLogger(t)) })
	}
	wg.Wait()
	for _, err := range errs {
		require.NoError(t, err)
	}

	conn := connect(t, dbURL)
	for table := range legacyColumns {
		require.True(t, exists(t, conn, `SELECT 1 FROM pg_tables WHERE tablename = $1`, table), "table %s missing", table)
	}
	require.True(t, exists(t, conn, `SELECT 1 FROM pg_tables WHERE tablename = 'river_job'`), "river_job missing")
	require.True(t, exists(t, conn, `SELECT 1 FROM pg_constraint WHERE conrelid = 'links'::regclass AND contype = 'p'`), "links has no primary key")
}

func TestLegacyFixesToleratesCaseDuplicateEmails(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	dbURL := dbtest.Empty(t)
	conn := connect(t, dbURL)
	execFile(t, conn, "testdata/legacy_schema.sql")
	_, err := conn.Exec(ctx, `INSERT INTO users (email, password, metadata) VALUES
		('Carol@example.com', 'x', '{}'), ('carol@example.com', 'y', '{}')`)
	require.NoError(t, err)

	require.NoError(t, migrate.Up(ctx, dbURL, zaptest.NewLogger(t)))

	require.True(t, exists(t, conn, `SELECT 1 FROM pg_indexes WHERE indexname = 'users_email_lower_idx'`), "no plain index on lower(email)")
	require.False(t, exists(t, conn, `SELECT 1 FROM pg_indexes WHERE indexname = 'users_email_lower_uniq'`))
	var n int
	require.NoError(t, conn.QueryRow(ctx, `SELECT count(*) FROM users WHERE lower(email) = 'carol@example.com'`).Scan(&n))
	require.Equal(t, 2, n)
}

func TestFingerprintIsStable(t *testing.T) {
	t.Parallel()
	a, err := migrate.Fingerprint()
	require.NoError(t, err)
	b, err := migrate.Fingerprint()
	require.NoError(t, err)
	require.Len(t, a, 64)
	require.Equal(t, a, b)
}

func connect(tb testing.TB, dbURL string) *pgx.Conn {
	tb.Helper()
	conn, err := pgx.Connect(context.Background(), dbURL)
	require.NoError(tb, err)
	tb.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func execFile(tb testing.TB, conn *pgx.Conn, path string) {
	tb.Helper()
	sql, err := os.ReadFile(path)
	require.NoError(tb, err)
	// The simple protocol runs a multi-statement script in one call.
	_, err = conn.Exec(context.Background(), string(sql), pgx.QueryExecModeSimpleProtocol)
	require.NoError(tb, err, "exec %s", path)
}

// dump returns, per legacy table, every row's legacy columns as text, in id
// order.
func dump(tb testing.TB, conn *pgx.Conn) map[string][]string {
	tb.Helper()
	out := make(map[string][]string, len(legacyColumns))
	for table, cols := range legacyColumns {
		exprs := make([]string, len(cols))
		for i, c := range cols {
			exprs[i] = pgx.Identifier{c}.Sanitize()
			if c == "metadata" {
				exprs[i] += "::jsonb"
			}
		}
		q := fmt.Sprintf("SELECT ROW(%s)::text FROM %s ORDER BY id", strings.Join(exprs, ", "), table)
		rows, err := conn.Query(context.Background(), q)
		require.NoError(tb, err, "read %s", table)
		out[table], err = pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(tb, err, "read %s", table)
	}
	return out
}

// requireRowsKept fails unless every legacy row of before is in after,
// unchanged. Migrations may add rows of their own (seeded models, the
// declarative rewards) but never change or drop existing ones.
func requireRowsKept(tb testing.TB, before, after map[string][]string, step string) {
	tb.Helper()
	for table, rows := range before {
		have := make(map[string]bool, len(after[table]))
		for _, r := range after[table] {
			have[r] = true
		}
		for _, r := range rows {
			require.True(tb, have[r], "%s: %s row changed or lost: %s", step, table, r)
		}
	}
}

func exists(tb testing.TB, conn *pgx.Conn, query string, args ...any) bool {
	tb.Helper()
	var ok bool
	require.NoError(tb, conn.QueryRow(context.Background(), "SELECT EXISTS ("+query+")", args...).Scan(&ok))
	return ok
}
