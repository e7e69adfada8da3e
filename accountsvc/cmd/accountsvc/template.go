package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// maxTemplateImage bounds the image the template command reads.
const maxTemplateImage = 32 << 20

// runTemplate runs `accountsvc template create --user ID --image PATH_OR_URL`:
// what the legacy scripts/make_template.py did. It stores the image in the
// user's library (objects first, then the row) with metadata marking it a
// template, so that GET /templates/<cdn_id> serves it, and prints the
// cdn_id. An image the user already has (same bytes) is marked instead.
func runTemplate(ctx context.Context, args []string, cfg app.Config, log *zap.Logger, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return errors.New("usage: accountsvc template create --user ID --image PATH_OR_URL")
	}
	fs := flag.NewFlagSet("template create", flag.ContinueOnError)
	userID := fs.Int64("user", 0, "id of the user who owns the template image")
	src := fs.String("image", "", "path or http(s) URL of the image")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *userID <= 0 || *src == "" || fs.NArg() > 0 {
		return errors.New("usage: accountsvc template create --user ID --image PATH_OR_URL")
	}
	data, err := readImageSource(ctx, *src)
	if err != nil {
		return err
	}
	side := cfg.Library.ImageMaxSide
	img, _, err := media.Decode(data, media.Limits{MaxWidth: side, MaxHeight: side})
	if err != nil {
		return fmt.Errorf("image %s: %w", *src, err)
	}

	pool, err := db.Open(ctx, cfg.DatabaseURL, db.Options{})
	if err != nil {
		return err
	}
	defer pool.Close()
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM users WHERE id = $1)`, *userID).Scan(&exists); err != nil {
		return fmt.Errorf("look up user %d: %w", *userID, err)
	}
	if !exists {
		return fmt.Errorf("user %d does not exist", *userID)
	}
	st, err := storage.New(cfg.Storage)
	if err != nil {
		return err
	}
	images := library.NewImages(pool, st, log)
	parent := int64(-1)
	im, created, err := images.Create(ctx, library.NewImage{
		UserID: *userID, Data: data, Decoded: img, ParentID: &parent,
		Metadata: map[string]any{"base_64": nil, "template": true, "user_uploaded": true},
	})
	if err != nil {
		return fmt.Errorf("store template image: %w", err)
	}
	if !created {
		if err := images.MarkTemplate(ctx, *userID, im.ID); err != nil {
			return fmt.Errorf("mark image %d as template: %w", im.ID, err)
		}
	}
	log.Info("template created", zap.Int64("user_id", *userID), zap.Int64("image_id", im.ID), zap.String("cdn_id", im.CDNID), zap.Bool("new_image", created))
	_, err = fmt.Fprintf(stdout, "template image %d, cdn_id %s\nGET /templates/%s\nimage: %s\n",
		im.ID, im.CDNID, im.CDNID, st.URL(storage.KindImage, storage.ImageKey(*userID, im.CDNID)))
	return err
}

// readImageSource reads a local file or downloads an http(s) URL, at most
// maxTemplateImage bytes.
func readImageSource(ctx context.Context, src string) ([]byte, error) {
	if u, err := url.Parse(src); err == nil && (u.Scheme == "http" || u.Scheme == "https") {
		ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", src, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, fmt.Errorf("download %s: %w", src, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("download %s: status %d", src, resp.StatusCode)
		}
		return readLimited(resp.Body, src)
	}
	if strings.Contains(src, "://") {
		return nil, fmt.Errorf("image %s: only local paths and http(s) URLs are supported", src)
	}
	f, err := os.Open(src)
	if err != nil {
		return nil, fmt.Errorf("open image: %w", err)
	}
	defer f.Close()
	return readLimited(f, src)
}

func readLimited(r io.Reader, src string) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxTemplateImage+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", src, err)
	}
	if len(data) > maxTemplateImage {
		return nil, fmt.Errorf("image %s is larger than %d bytes", src, maxTemplateImage)
	}
	return data, nil
}
