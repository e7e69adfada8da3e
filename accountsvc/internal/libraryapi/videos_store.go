package libraryapi

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/storage"
)

// video is one videos row (an uploaded clip).
type video struct {
	ID              int64
	UserID          int64
	Metadata        json.RawMessage
	CDNID           *string
	StartFrameID    *int64
	EndFrameID      *int64
	StartFrameCDNID *string
	EndFrameCDNID   *string
	Duration        *int64
	Name            *string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

var errVideoNotFound = apperr.NotFound("Video not found").WithKey("error")

type videoStore struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

const videoColumns = `id, user_id, metadata, cdn_id, start_frame_id, end_frame_id, start_frame_cdn_id, end_frame_cdn_id, duration, name, created_at, updated_at`

func scanVideo(row pgx.Row) (video, error) {
	var v video
	var meta []byte
	if err := row.Scan(&v.ID, &v.UserID, &meta, &v.CDNID, &v.StartFrameID, &v.EndFrameID, &v.StartFrameCDNID,
		&v.EndFrameCDNID, &v.Duration, &v.Name, &v.CreatedAt, &v.UpdatedAt); err != nil {
		return video{}, err
	}
	v.Metadata = meta
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, nil
}

// newVideo is a row to insert; its objects are already stored.
type newVideo struct {
	UserID                         int64
	CDNID                          string
	StartFrameID, EndFrameID       int64
	StartFrameCDNID, EndFrameCDNID string
	Duration                       float64
	Name                           string
}

func (s *videoStore) create(ctx context.Context, n newVideo) (video, error) {
	v, err := scanVideo(s.pool.QueryRow(ctx, `INSERT INTO videos (user_id, metadata, cdn_id, start_frame_id, end_frame_id,
			start_frame_cdn_id, end_frame_cdn_id, duration, name, created_at, updated_at)
		VALUES ($1, '{}', $2, $3, $4, $5, $6, round($7::numeric)::int, $8, $9, $9) RETURNING `+videoColumns,
		n.UserID, n.CDNID, n.StartFrameID, n.EndFrameID, n.StartFrameCDNID, n.EndFrameCDNID, n.Duration, truncate(n.Name, 256), s.now().UTC()))
	if err != nil {
		return video{}, db.Interpret(fmt.Errorf("insert video for user %d: %w", n.UserID, err), "video")
	}
	return v, nil
}

func (s *videoStore) get(ctx context.Context, userID, id int64) (video, error) {
	v, err := scanVideo(s.pool.QueryRow(ctx, `SELECT `+videoColumns+` FROM videos WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return video{}, rowErr(err, errVideoNotFound, fmt.Sprintf("get video %d of user %d", id, userID))
	}
	return v, nil
}

func (s *videoStore) list(ctx context.Context, userID int64, offset, limit int) ([]video, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+videoColumns+` FROM videos WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
		userID, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list videos of user %d: %w", userID, err)
	}
	out, err := scanAll(rows, scanVideo)
	if err != nil {
		return nil, fmt.Errorf("list videos of user %d: %w", userID, err)
	}
	return out, nil
}

func (s *videoStore) update(ctx context.Context, userID, id int64, meta json.RawMessage) error {
	tag, err := s.pool.Exec(ctx, `UPDATE videos SET metadata = $3::json, updated_at = $4 WHERE id = $1 AND user_id = $2`,
		id, userID, string(meta), s.now().UTC())
	if err != nil {
		return fmt.Errorf("update video %d of user %d: %w", id, userID, err)
	}
	if tag.RowsAffected() == 0 {
		return errVideoNotFound
	}
	return nil
}

// delete deletes the user's video row and returns its object. The frame
// images stay in the library (legacy): they are images of their own.
func (s *videoStore) delete(ctx context.Context, userID, id int64) ([]storage.Object, error) {
	var cdnID *string
	err := s.pool.QueryRow(ctx, `DELETE FROM videos WHERE id = $1 AND user_id = $2 RETURNING cdn_id`, id, userID).Scan(&cdnID)
	if err != nil {
		return nil, rowErr(err, errVideoNotFound, fmt.Sprintf("delete video %d of user %d", id, userID))
	}
	return videoObjects(userID, cdnID), nil
}

// videoObjects is the stored clip (an upload or a project's render) named
// by cdnID; nil or "" means none.
func videoObjects(userID int64, cdnID *string) []storage.Object {
	if cdnID == nil || *cdnID == "" {
		return nil
	}
	return []storage.Object{{Kind: storage.KindVideo, Key: storage.VideoKey(userID, *cdnID)}}
}
