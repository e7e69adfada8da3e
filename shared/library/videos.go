package library

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/storage"
)

// Video is one videos row (an uploaded clip). Times are UTC.
type Video struct {
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

// ErrVideoNotFound is the legacy not-found error of the video routes.
var ErrVideoNotFound = apperr.NotFound("Video not found").WithKey("error")

const videoColumns = `id, user_id, metadata, cdn_id, start_frame_id, end_frame_id, start_frame_cdn_id, end_frame_cdn_id, duration, name, created_at, updated_at`

func scanVideo(row pgx.Row) (Video, error) {
	var v Video
	var meta []byte
	if err := row.Scan(&v.ID, &v.UserID, &meta, &v.CDNID, &v.StartFrameID, &v.EndFrameID, &v.StartFrameCDNID,
		&v.EndFrameCDNID, &v.Duration, &v.Name, &v.CreatedAt, &v.UpdatedAt); err != nil {
		return Video{}, err
	}
	v.Metadata = meta
	v.CreatedAt, v.UpdatedAt = v.CreatedAt.UTC(), v.UpdatedAt.UTC()
	return v, nil
}

// NewVideo is a videos row to insert; its objects (the clip and both frame
// images) are stored already.
type NewVideo struct {
	UserID                         int64
	CDNID                          string
	StartFrameID, EndFrameID       int64
	StartFrameCDNID, EndFrameCDNID string
	// Duration is in seconds, stored rounded.
	Duration float64
	// Name is cut to 256 bytes.
	Name string
	// Now is created_at and updated_at.
	Now time.Time
}

// InsertVideo inserts the row n.
func InsertVideo(ctx context.Context, q db.Querier, n NewVideo) (Video, error) {
	v, err := scanVideo(q.QueryRow(ctx, `INSERT INTO videos (user_id, metadata, cdn_id, start_frame_id, end_frame_id,
			start_frame_cdn_id, end_frame_cdn_id, duration, name, created_at, updated_at)
		VALUES ($1, '{}', $2, $3, $4, $5, $6, round($7::numeric)::int, $8, $9, $9) RETURNING `+videoColumns,
		n.UserID, n.CDNID, n.StartFrameID, n.EndFrameID, n.StartFrameCDNID, n.EndFrameCDNID, n.Duration, Truncate(n.Name, 256), n.Now.UTC()))
	if err != nil {
		return Video{}, db.Interpret(fmt.Errorf("insert video for user %d: %w", n.UserID, err), "video")
	}
	return v, nil
}

// GetVideo returns the user's video id, or ErrVideoNotFound.
func GetVideo(ctx context.Context, q db.Querier, userID, id int64) (Video, error) {
	v, err := scanVideo(q.QueryRow(ctx, `SELECT `+videoColumns+` FROM videos WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return Video{}, rowErr(err, ErrVideoNotFound, fmt.Sprintf("get video %d of user %d", id, userID))
	}
	return v, nil
}

// ListVideos returns a page of the user's videos, newest first.
func ListVideos(ctx context.Context, q db.Querier, userID int64, offset, limit int) ([]Video, error) {
	rows, err := q.Query(ctx, `SELECT `+videoColumns+` FROM videos WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
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

// UpdateVideo sets the metadata of the user's video.
func UpdateVideo(ctx context.Context, q db.Querier, userID, id int64, meta json.RawMessage, now time.Time) error {
	tag, err := q.Exec(ctx, `UPDATE videos SET metadata = $3::json, updated_at = $4 WHERE id = $1 AND user_id = $2`,
		id, userID, string(meta), now.UTC())
	if err != nil {
		return fmt.Errorf("update video %d of user %d: %w", id, userID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrVideoNotFound
	}
	return nil
}

// DeleteVideo deletes the user's video row and returns its object. The
// frame images stay in the library (legacy): they are images of their own.
func DeleteVideo(ctx context.Context, q db.Querier, userID, id int64) ([]storage.Object, error) {
	var cdnID *string
	err := q.QueryRow(ctx, `DELETE FROM videos WHERE id = $1 AND user_id = $2 RETURNING cdn_id`, id, userID).Scan(&cdnID)
	if err != nil {
		return nil, rowErr(err, ErrVideoNotFound, fmt.Sprintf("delete video %d of user %d", id, userID))
	}
	return VideoObjects(userID, cdnID), nil
}

// VideoObjects is the stored clip (an upload or a project's render) named
// by cdnID; nil or "" means none.
func VideoObjects(userID int64, cdnID *string) []storage.Object {
	if cdnID == nil || *cdnID == "" {
		return nil
	}
	return []storage.Object{{Kind: storage.KindVideo, Key: storage.VideoKey(userID, *cdnID)}}
}
