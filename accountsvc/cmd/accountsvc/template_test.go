package main

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
)

func TestTemplateCreate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dbURL := dbtest.NewURL(t)
	pool, err := pgxpool.New(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var userID int64
	require.NoError(t, pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ('t@example.com', 'x', '{}') RETURNING id`).Scan(&userID))

	dir := t.TempDir()
	cfg := app.Config{
		Common:  config.Common{DatabaseURL: dbURL},
		Storage: storage.Config{Backend: storage.BackendLocal, Dir: filepath.Join(dir, "storage"), LocalURL: "http://127.0.0.1:8080/media"},
		Library: app.LibraryConfig{ImageMaxSide: 4096},
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, image.NewGray(image.Rect(0, 0, 40, 30))))
	path := filepath.Join(dir, "t.png")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o600))

	var out bytes.Buffer
	require.NoError(t, runTemplate(ctx, []string{"create", "--user", strconv.FormatInt(userID, 10), "--image", path}, cfg, zap.NewNop(), &out))
	require.Contains(t, out.String(), "GET /templates/")
	var cdnID string
	require.NoError(t, pool.QueryRow(ctx, `SELECT cdn_id FROM images WHERE user_id = $1`, userID).Scan(&cdnID))
	_, err = os.Stat(filepath.Join(dir, "storage", storage.ImageKey(userID, cdnID)))
	require.NoError(t, err)
	st, err := storage.New(cfg.Storage)
	require.NoError(t, err)
	im, err := library.NewImages(pool, st, zap.NewNop()).Template(ctx, cdnID)
	require.NoError(t, err)
	require.JSONEq(t, `{"base_64": null, "template": true, "user_uploaded": true}`, string(im.Metadata))

	// From a URL; the same bytes again only mark the existing image.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write(buf.Bytes()) }))
	defer srv.Close()
	out.Reset()
	require.NoError(t, runTemplate(ctx, []string{"create", "--user", strconv.FormatInt(userID, 10), "--image", srv.URL + "/t.png"}, cfg, zap.NewNop(), &out))
	require.Contains(t, out.String(), cdnID)

	// Bad input.
	require.Error(t, runTemplate(ctx, []string{"create", "--user", strconv.FormatInt(userID, 10)}, cfg, zap.NewNop(), &out))
	require.Error(t, runTemplate(ctx, []string{"create", "--user", "999", "--image", path}, cfg, zap.NewNop(), &out))
	require.NoError(t, os.WriteFile(path, []byte("not an image"), 0o600))
	require.Error(t, runTemplate(ctx, []string{"create", "--user", strconv.FormatInt(userID, 10), "--image", path}, cfg, zap.NewNop(), &out))
}
