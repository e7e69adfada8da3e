// Package library owns the user's library tables: images, audio, videos,
// links and video_projects. It is the only package with SQL for them
// (`make lint` checks this); accountsvc (uploads, the gallery, the library
// routes), gpusvc (generated images, the audio and video jobs) and
// shared/jobs (the legacy state column) call its functions. Images are
// stored together with their objects in media storage, so that there is
// one implementation of "upload the objects, then insert the row",
// per-user dedup by hash, and "delete the row, then its objects". The row
// functions of the other tables take a Conn or db.Querier, so they run on
// their own or inside the caller's transaction (a row set QUEUED and its
// job commit together).
//
// Invariant: a row is inserted only after its objects were uploaded, and
// objects are deleted only after their row is gone, so no row ever points
// at a missing object (legacy C14). A failed upload fails the call and
// leaves no row.
//
// This package must never know about HTTP requests or JWTs; callers pass
// the user id they authenticated.
package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// Image is one row of the images table. Times are UTC.
type Image struct {
	ID     int64
	UserID int64
	// Base64 and ThumbBase64 are the legacy inline columns; "0" since the
	// images moved to the CDN.
	Base64, ThumbBase64 string
	// Hash is the hex SHA-256 of the stored full object.
	Hash string
	// Metadata is the JSON column as stored (the generation request, or
	// upload markers such as {"user_uploaded": true}).
	Metadata json.RawMessage
	// CDNID is the object id in the keys; "" when NULL (very old rows).
	CDNID     string
	IsPublic  bool
	IsLiked   bool
	ParentID  *int64
	CreatedAt time.Time
	UpdatedAt time.Time
}

// NewImage describes an image to create.
type NewImage struct {
	// UserID owns the image. Required.
	UserID int64
	// Data is stored as is under ImageKey (any image format). Required.
	Data []byte
	// Thumbnail is the PNG stored under ThumbnailKey. Nil means it is made
	// from Decoded, or else by decoding Data within media.DefaultLimits.
	Thumbnail []byte
	// Decoded is Data already decoded (optional; saves a decode).
	Decoded image.Image
	// Hash is the dedup key; "" means media.Hash(Data).
	Hash string
	// Metadata is marshalled into the JSON column; nil means {}.
	Metadata any
	// IsPublic and IsLiked are the initial flags.
	IsPublic, IsLiked bool
	// ParentID is the parent image (legacy -1 for none); nil stores NULL.
	ParentID *int64
}

// Images is the image store. It is safe for concurrent use.
type Images struct {
	pool    *pgxpool.Pool
	storage storage.Store
	log     *zap.Logger
	// Now is the clock (UTC is stored); NewImages sets time.Now.
	Now func() time.Time
	// NewID returns a new cdn_id; NewImages sets a random UUID v4.
	NewID func() string
}

// NewImages returns a store over pool and st. log receives failures of
// object deletions that happen after a row is gone (they cannot fail the
// call any more).
func NewImages(pool *pgxpool.Pool, st storage.Store, log *zap.Logger) *Images {
	return &Images{pool: pool, storage: st, log: log.Named("library"), Now: time.Now, NewID: func() string { return uuid.NewString() }}
}

// ErrImageNotFound is the legacy not-found error of the image routes
// (404 {"error": "Image not found"}).
var ErrImageNotFound = apperr.NotFound("Image not found").WithKey("error")

const imageColumns = `id, user_id, base_64, thumb_base_64, hash, metadata, COALESCE(cdn_id, ''), is_public, is_liked, parent_id, created_at, updated_at`

func scanImage(row pgx.Row) (Image, error) {
	var im Image
	var meta []byte
	err := row.Scan(&im.ID, &im.UserID, &im.Base64, &im.ThumbBase64, &im.Hash, &meta, &im.CDNID,
		&im.IsPublic, &im.IsLiked, &im.ParentID, &im.CreatedAt, &im.UpdatedAt)
	if err != nil {
		return Image{}, err
	}
	im.Metadata = json.RawMessage(meta)
	im.CreatedAt, im.UpdatedAt = im.CreatedAt.UTC(), im.UpdatedAt.UTC()
	return im, nil
}

func collectImages(rows pgx.Rows) ([]Image, error) {
	defer rows.Close()
	out := []Image{}
	for rows.Next() {
		im, err := scanImage(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, im)
	}
	return out, rows.Err()
}

// Create stores a new image: when the user already has an image with the
// same hash it returns that one with created false and keeps nothing new
// (legacy dedup). Otherwise it uploads the full object and the thumbnail
// under a new cdn_id, outside any transaction (a storage PUT can take a
// minute), then inserts the row in a short transaction; an upload failure
// returns its error (502/503) and leaves no row, and a failed insert
// deletes the uploaded objects again. The dedup check and the insert run
// under a per-(user, hash) lock, so dedup holds under races: a create that
// loses the race returns the winner's image and deletes its own objects.
func (s *Images) Create(ctx context.Context, n NewImage) (Image, bool, error) {
	if n.UserID <= 0 || len(n.Data) == 0 {
		return Image{}, false, errors.New("create image: user id and data are required")
	}
	if n.Hash == "" {
		n.Hash = media.Hash(n.Data)
	}
	meta, err := marshalMetadata(n.Metadata)
	if err != nil {
		return Image{}, false, err
	}
	thumb := n.Thumbnail
	if thumb == nil {
		img := n.Decoded
		if img == nil {
			if img, _, err = media.Decode(n.Data, media.DefaultLimits); err != nil {
				return Image{}, false, err
			}
		}
		if thumb, err = media.ThumbnailPNG(img); err != nil {
			return Image{}, false, fmt.Errorf("create image: %w", err)
		}
	}

	// The usual repeat upload is found here, before anything is uploaded.
	existing, err := scanImage(s.pool.QueryRow(ctx,
		`SELECT `+imageColumns+` FROM images WHERE user_id = $1 AND hash = $2 ORDER BY id LIMIT 1`, n.UserID, n.Hash))
	if err == nil {
		return existing, false, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return Image{}, false, fmt.Errorf("find image by hash for user %d: %w", n.UserID, err)
	}

	// Upload with no connection or lock held.
	cdnID := s.NewID()
	objs := storage.ImageObjects(n.UserID, cdnID)
	var uploaded []storage.Object
	for i, data := range [][]byte{n.Data, thumb} {
		if err := s.storage.Put(ctx, objs[i].Kind, objs[i].Key, data); err != nil {
			s.deleteObjects(ctx, uploaded)
			return Image{}, false, err
		}
		uploaded = append(uploaded, objs[i])
	}

	var (
		out     Image
		created bool
	)
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		existing, found, err := lockAndFind(ctx, tx, n.UserID, n.Hash)
		if err != nil {
			return err
		}
		if found {
			out = existing
			return nil
		}
		if out, err = insertImage(ctx, tx, n, meta, cdnID, s.Now().UTC()); err != nil {
			return err
		}
		created = true
		return nil
	})
	if !created {
		// A failed insert, or a concurrent create of the same image won:
		// the objects just uploaded belong to no row.
		s.deleteObjects(ctx, uploaded)
	}
	if err != nil {
		return Image{}, false, err
	}
	return out, created, nil
}

// insertImage inserts the row of an image whose objects are uploaded under
// cdnID.
func insertImage(ctx context.Context, tx pgx.Tx, n NewImage, meta []byte, cdnID string, now time.Time) (Image, error) {
	im, err := scanImage(tx.QueryRow(ctx, `
		INSERT INTO images (user_id, base_64, thumb_base_64, hash, metadata, cdn_id, is_public, is_liked, parent_id, created_at, updated_at)
		VALUES ($1, '0', '0', $2, $3::json, $4, $5, $6, $7, $8, $8)
		RETURNING `+imageColumns,
		n.UserID, n.Hash, string(meta), cdnID, n.IsPublic, n.IsLiked, n.ParentID, now))
	if err != nil {
		return Image{}, db.Interpret(fmt.Errorf("insert image for user %d: %w", n.UserID, err), "image")
	}
	return im, nil
}

// lockAndFind takes the transaction-scoped lock on (userID, hash) and then
// returns the user's oldest image with that hash, in one round trip. The
// lookup is a statement of its own, run after the lock is granted, so under
// READ COMMITTED it sees every image committed by an earlier holder.
func lockAndFind(ctx context.Context, tx pgx.Tx, userID int64, hash string) (Image, bool, error) {
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_xact_lock(hashtextextended('image:' || $1::bigint || ':' || $2::text, 0))`, userID, hash)
	b.Queue(`SELECT `+imageColumns+` FROM images WHERE user_id = $1 AND hash = $2 ORDER BY id LIMIT 1`, userID, hash)
	br := tx.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return Image{}, false, fmt.Errorf("lock image hash for user %d: %w", userID, err)
	}
	im, err := scanImage(br.QueryRow())
	found := err == nil
	if errors.Is(err, pgx.ErrNoRows) {
		err = nil
	}
	if err == nil {
		err = br.Close()
	}
	if err != nil {
		return Image{}, false, fmt.Errorf("find image by hash for user %d: %w", userID, err)
	}
	return im, found, nil
}

func marshalMetadata(v any) ([]byte, error) {
	switch m := v.(type) {
	case nil:
		return []byte("{}"), nil
	case json.RawMessage:
		if !json.Valid(m) {
			return nil, apperr.Invalid("metadata must be valid JSON")
		}
		return m, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("marshal image metadata: %w", err)
	}
	return b, nil
}

// deleteObjects deletes objects after their row is gone (or was never
// inserted) with storage.DeleteOrphans.
func (s *Images) deleteObjects(ctx context.Context, objs []storage.Object) {
	storage.DeleteOrphans(ctx, s.storage, objs, s.log)
}

// Get returns the user's image id, or ErrImageNotFound.
func (s *Images) Get(ctx context.Context, userID, id int64) (Image, error) {
	im, err := scanImage(s.pool.QueryRow(ctx, `SELECT `+imageColumns+` FROM images WHERE id = $1 AND user_id = $2`, id, userID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Image{}, ErrImageNotFound
	}
	if err != nil {
		return Image{}, fmt.Errorf("get image %d of user %d: %w", id, userID, err)
	}
	return im, nil
}

// ListOptions select a page of a user's images.
type ListOptions struct {
	UserID int64
	// FavoritedOnly keeps only liked images.
	FavoritedOnly bool
	// Offset and Limit page the rows (newest first); Limit must be > 0.
	Offset, Limit int
}

// List returns a page of the user's images, newest (highest id) first.
func (s *Images) List(ctx context.Context, o ListOptions) ([]Image, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+imageColumns+` FROM images
		WHERE user_id = $1 AND (NOT $2 OR is_liked) ORDER BY id DESC OFFSET $3 LIMIT $4`,
		o.UserID, o.FavoritedOnly, o.Offset, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("list images of user %d: %w", o.UserID, err)
	}
	out, err := collectImages(rows)
	if err != nil {
		return nil, fmt.Errorf("list images of user %d: %w", o.UserID, err)
	}
	return out, nil
}

// ListIDs returns a page of the ids of the user's images, newest first.
func (s *Images) ListIDs(ctx context.Context, o ListOptions) ([]int64, error) {
	rows, err := s.pool.Query(ctx, `SELECT id::bigint FROM images
		WHERE user_id = $1 AND (NOT $2 OR is_liked) ORDER BY id DESC OFFSET $3 LIMIT $4`,
		o.UserID, o.FavoritedOnly, o.Offset, o.Limit)
	if err != nil {
		return nil, fmt.Errorf("list image ids of user %d: %w", o.UserID, err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("list image ids of user %d: %w", o.UserID, err)
	}
	if ids == nil {
		ids = []int64{}
	}
	return ids, nil
}

// Public returns a page of public images of every user, newest first.
func (s *Images) Public(ctx context.Context, offset, limit int) ([]Image, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+imageColumns+` FROM images WHERE is_public ORDER BY id DESC OFFSET $1 LIMIT $2`, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list public images: %w", err)
	}
	out, err := collectImages(rows)
	if err != nil {
		return nil, fmt.Errorf("list public images: %w", err)
	}
	return out, nil
}

// Template returns the image with cdn_id cdnID whose metadata marks it a
// template (`"template": true`), or NotFound {"error": "Template not
// found"}. No other image is ever returned (legacy S6).
func (s *Images) Template(ctx context.Context, cdnID string) (Image, error) {
	im, err := scanImage(s.pool.QueryRow(ctx, `SELECT `+imageColumns+` FROM images
		WHERE cdn_id = $1 AND json_typeof(metadata) = 'object' AND metadata->>'template' = 'true'
		ORDER BY id LIMIT 1`, cdnID))
	if errors.Is(err, pgx.ErrNoRows) {
		return Image{}, apperr.NotFound("Template not found").WithKey("error")
	}
	if err != nil {
		return Image{}, fmt.Errorf("get template %q: %w", cdnID, err)
	}
	return im, nil
}

// MarkTemplate adds `"template": true` to the metadata of the user's image
// id (keeping the other keys; a non-object metadata becomes an object).
func (s *Images) MarkTemplate(ctx context.Context, userID, id int64) error {
	tag, err := s.pool.Exec(ctx, `UPDATE images SET
		metadata = (CASE WHEN json_typeof(metadata) = 'object' THEN metadata::jsonb ELSE '{}'::jsonb END || '{"template": true}'::jsonb)::json,
		updated_at = $3
		WHERE id = $1 AND user_id = $2`, id, userID, s.Now().UTC())
	if err != nil {
		return fmt.Errorf("mark image %d as template: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrImageNotFound
	}
	return nil
}

// Update sets is_public and is_liked of the user's image id; a nil pointer
// leaves that flag unchanged. A missing image is ErrImageNotFound.
func (s *Images) Update(ctx context.Context, userID, id int64, isPublic, isLiked *bool) error {
	tag, err := s.pool.Exec(ctx, `UPDATE images SET
		is_public = COALESCE($3, is_public), is_liked = COALESCE($4, is_liked), updated_at = $5
		WHERE id = $1 AND user_id = $2`, id, userID, isPublic, isLiked, s.Now().UTC())
	if err != nil {
		return fmt.Errorf("update image %d of user %d: %w", id, userID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrImageNotFound
	}
	return nil
}

// Delete deletes the user's image id and then its objects (full image and
// thumbnail). Uploaded videos whose first or last frame it is go with it
// (foreign-key cascade), and so do their video objects. A missing image is
// ErrImageNotFound.
func (s *Images) Delete(ctx context.Context, userID, id int64) error {
	var objs []storage.Object
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		// The videos this image is a frame of are deleted by the cascade;
		// read their keys first.
		rows, err := tx.Query(ctx, `SELECT cdn_id FROM videos
			WHERE user_id = $2 AND (start_frame_id = $1 OR end_frame_id = $1) AND cdn_id IS NOT NULL FOR UPDATE`, id, userID)
		if err != nil {
			return fmt.Errorf("find videos of frame %d: %w", id, err)
		}
		videos, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return fmt.Errorf("find videos of frame %d: %w", id, err)
		}
		for _, v := range videos {
			objs = append(objs, storage.Object{Kind: storage.KindVideo, Key: storage.VideoKey(userID, v)})
		}
		var cdnID string
		err = tx.QueryRow(ctx, `DELETE FROM images WHERE id = $1 AND user_id = $2 RETURNING COALESCE(cdn_id, '')`, id, userID).Scan(&cdnID)
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrImageNotFound
		}
		if err != nil {
			return fmt.Errorf("delete image %d of user %d: %w", id, userID, err)
		}
		if cdnID != "" {
			objs = append(objs, storage.ImageObjects(userID, cdnID)...)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.deleteObjects(ctx, objs)
	return nil
}

// MissingImageIDs returns those of ids that are not images of userID (in
// the order given), using q (a pool or a transaction).
func MissingImageIDs(ctx context.Context, q db.Querier, userID int64, ids []int64) (missing []int64, err error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := q.Query(ctx, `SELECT id::bigint FROM images WHERE user_id = $1 AND id = ANY($2::bigint[])`, userID, ids)
	if err != nil {
		return nil, fmt.Errorf("check image owners for user %d: %w", userID, err)
	}
	found, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("check image owners for user %d: %w", userID, err)
	}
	have := make(map[int64]bool, len(found))
	for _, id := range found {
		have[id] = true
	}
	for _, id := range ids {
		if !have[id] {
			missing = append(missing, id)
		}
	}
	return missing, nil
}

// VisibleImageID reports whether image id is one userID may see (their own
// or a public one); found is false when it is not.
func VisibleImageID(ctx context.Context, q db.Querier, userID, id int64) (found bool, err error) {
	var got int64
	err = q.QueryRow(ctx, `SELECT id::bigint FROM images WHERE id = $1 AND (user_id = $2 OR is_public)`, id, userID).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("check image %d for user %d: %w", id, userID, err)
	}
	return true, nil
}

// ImageIDByHash returns the id of an image userID may see whose stored
// bytes have the hex SHA-256 hash: their own oldest, or failing that the
// oldest public one; found is false when there is none.
func ImageIDByHash(ctx context.Context, q db.Querier, userID int64, hash string) (id int64, found bool, err error) {
	err = q.QueryRow(ctx, `SELECT id::bigint FROM images
		WHERE hash = $2 AND (user_id = $1 OR is_public)
		ORDER BY (user_id = $1) DESC, id LIMIT 1`, userID, hash).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("find image by hash for user %d: %w", userID, err)
	}
	return id, true, nil
}

// ImageCDNID returns the cdn_id of the user's image id ("" when the row
// has none, very old rows), or ErrImageNotFound.
func ImageCDNID(ctx context.Context, q db.Querier, userID, id int64) (string, error) {
	var cdnID *string
	err := q.QueryRow(ctx, `SELECT cdn_id FROM images WHERE id = $1 AND user_id = $2`, id, userID).Scan(&cdnID)
	if err != nil {
		return "", rowErr(err, ErrImageNotFound, fmt.Sprintf("read image %d of user %d", id, userID))
	}
	if cdnID == nil {
		return "", nil
	}
	return *cdnID, nil
}
