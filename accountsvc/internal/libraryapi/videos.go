package libraryapi

import (
	"encoding/json"
	"math"
	"net/http"
	"strconv"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// videoRow is a videos row (legacy keys, sorted).
type videoRow struct {
	CDNID           *string         `json:"cdn_id"`
	CreatedAt       epochMS         `json:"created_at"`
	Duration        *int64          `json:"duration"`
	EndFrameCDNID   *string         `json:"end_frame_cdn_id"`
	EndFrameID      *int64          `json:"end_frame_id"`
	ID              int64           `json:"id"`
	Metadata        json.RawMessage `json:"metadata"`
	Name            *string         `json:"name"`
	StartFrameCDNID *string         `json:"start_frame_cdn_id"`
	StartFrameID    *int64          `json:"start_frame_id"`
	UpdatedAt       epochMS         `json:"updated_at"`
	UserID          int64           `json:"user_id"`
}

func toVideoRow(v library.Video) videoRow {
	return videoRow{CDNID: v.CDNID, CreatedAt: epochMS(v.CreatedAt), Duration: v.Duration, EndFrameCDNID: v.EndFrameCDNID,
		EndFrameID: v.EndFrameID, ID: v.ID, Metadata: jsonOrNull(v.Metadata), Name: v.Name,
		StartFrameCDNID: v.StartFrameCDNID, StartFrameID: v.StartFrameID, UpdatedAt: epochMS(v.UpdatedAt), UserID: v.UserID}
}

// handleVideoUpload serves POST /users/videos (multipart `video`, within
// the body limit). ffprobe reads the duration and ffmpeg the first and last
// frames, which are stored as images (legacy metadata, dedup as usual);
// then the clip is uploaded and the row inserted. A failure on the way
// removes what was stored for this request.
func (a *API) handleVideoUpload(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	// Legacy message and key; the status is 400, not legacy's 404 (C12).
	data, filename, err := formFile(c, "video", "file not found", maxUpload)
	if err != nil {
		return err
	}
	if _, err := media.SniffVideo(data); err != nil {
		return err
	}
	ctx := c.Request().Context()
	info, err := a.opts.FFmpeg.Probe(ctx, data, a.opts.ImageLimits)
	if err != nil {
		return err
	}
	duration := math.Round(info.Duration*10) / 10
	cdnID := uuid.NewString()
	videoObj := storage.Object{Kind: storage.KindVideo, Key: storage.VideoKey(uid, cdnID)}
	var created []int64
	undo := func() {
		for _, id := range created {
			if err := a.opts.Images.Delete(ctx, uid, id); err != nil {
				a.log.Warn("undo video frame failed", zap.Int64("image_id", id), zap.Error(err))
			}
		}
		a.cleanup.now(ctx, []storage.Object{videoObj})
	}
	parent := int64(-1)
	var frames [2]library.Image
	for i, png := range [][]byte{info.First, info.Last} {
		im, isNew, err := a.opts.Images.Create(ctx, library.NewImage{UserID: uid, Data: png, IsLiked: true, ParentID: &parent,
			Metadata: map[string]any{"user_uploaded": true, "video_cdn_id": cdnID, "video_duration": duration}})
		if err != nil {
			undo()
			return err
		}
		if isNew {
			created = append(created, im.ID)
		}
		frames[i] = im
	}
	if err := a.opts.Storage.Put(ctx, videoObj.Kind, videoObj.Key, data); err != nil {
		undo()
		return err
	}
	name := media.SanitizeFilename(filename, "upload.mp4")
	v, err := library.InsertVideo(ctx, a.opts.Pool, library.NewVideo{UserID: uid, Now: a.opts.Now(), CDNID: cdnID, StartFrameID: frames[0].ID, EndFrameID: frames[1].ID,
		StartFrameCDNID: frames[0].CDNID, EndFrameCDNID: frames[1].CDNID, Duration: duration, Name: name})
	if err != nil {
		undo()
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{
		"id": v.ID, "cdn_id": cdnID, "start_frame_id": frames[0].ID, "start_frame_cdn_id": frames[0].CDNID,
		"end_frame_id": frames[1].ID, "end_frame_cdn_id": frames[1].CDNID, "duration": duration,
		"user_id": strconv.FormatInt(uid, 10), "name": name,
	})
}

// handleVideoList serves GET /users/<id>/videos, newest first, paged.
func (a *API) handleVideoList(c echo.Context) error {
	return listUserRows(c, listOn(a.opts.Pool, library.ListVideos), toVideoRow)
}

// handleVideoGet serves GET /users/<id>/videos/<video_id> (legacy C9/C10:
// it always failed).
func (a *API) handleVideoGet(c echo.Context) error {
	uid, id, err := pathUserID(c, "video_id", library.ErrVideoNotFound)
	if err != nil {
		return err
	}
	v, err := library.GetVideo(c.Request().Context(), a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toVideoRow(v))
}

// handleVideoUpdate serves PUT /users/<id>/videos/<video_id> {"metadata"}.
func (a *API) handleVideoUpdate(c echo.Context) error {
	uid, id, err := pathUserID(c, "video_id", library.ErrVideoNotFound)
	if err != nil {
		return err
	}
	meta, err := decodeMetadata(c, maxLinkMetadata)
	if err != nil {
		return err
	}
	if err := library.UpdateVideo(c.Request().Context(), a.opts.Pool, uid, id, meta, a.opts.Now()); err != nil {
		return err
	}
	return statusOK(c)
}

// handleVideoDelete serves DELETE /users/<id>/videos/<video_id>: the
// caller's row (legacy S5) and its clip.
func (a *API) handleVideoDelete(c echo.Context) error {
	uid, id, err := pathUserID(c, "video_id", library.ErrVideoNotFound)
	if err != nil {
		return err
	}
	objs, err := library.DeleteVideo(c.Request().Context(), a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	a.cleanup.now(c.Request().Context(), objs)
	return statusOK(c)
}
