package libraryapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"mime/multipart"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/web"
)

// epochMS marshals a time as legacy epoch milliseconds (an integer).
type epochMS time.Time

// MarshalJSON implements json.Marshaler.
func (t epochMS) MarshalJSON() ([]byte, error) {
	return strconv.AppendInt(nil, time.Time(t).UnixMilli(), 10), nil
}

// jsonOrNull returns raw, or null when it is empty.
func jsonOrNull(raw []byte) json.RawMessage {
	if len(bytes.TrimSpace(raw)) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(raw)
}

// Paging: legacy defaults (page 1, limit 20), values that do not parse fall
// back to the default, and limits are capped (legacy had none).
const (
	defaultLimit = 20
	maxLimit     = 100
	maxPage      = 1_000_000
)

// paging returns OFFSET and LIMIT from ?page and ?limit.
func paging(c echo.Context, def, max int) (offset, limit int) {
	page := 1
	if n, err := strconv.Atoi(c.QueryParam("page")); err == nil && n >= 1 {
		page = min(n, maxPage)
	}
	limit = def
	if n, err := strconv.Atoi(c.QueryParam("limit")); err == nil && n >= 1 {
		limit = min(n, max)
	}
	return (page - 1) * limit, limit
}

// listFunc reads one page of a user's rows, newest first.
type listFunc[T any] func(ctx context.Context, userID int64, offset, limit int) ([]T, error)

// listUserRows serves GET /users/<id>/<rows>: the caller's rows (after the
// path check), paged with the default limits, each mapped by toRow.
func listUserRows[T, R any](c echo.Context, list listFunc[T], toRow func(T) R) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	offset, limit := paging(c, defaultLimit, maxLimit)
	rows, err := list(c.Request().Context(), uid, offset, limit)
	if err != nil {
		return err
	}
	out := make([]R, len(rows))
	for i, r := range rows {
		out[i] = toRow(r)
	}
	return c.JSON(http.StatusOK, out)
}

// errWrongUser is the legacy answer to a path user id that is not the
// caller's.
var errWrongUser = apperr.Invalid("Wrong user!")

// caller returns the JWT user id.
func caller(c echo.Context) (int64, error) {
	id, ok := auth.UserID(c.Request().Context())
	if !ok {
		return 0, apperr.Unauthorized(auth.MsgTokenMissing)
	}
	return id, nil
}

// pathUser returns the caller's id after checking that the :user_id path
// parameter names the caller (compared as text, as legacy).
func pathUser(c echo.Context) (int64, error) {
	id, err := caller(c)
	if err != nil {
		return 0, err
	}
	if c.Param("user_id") != strconv.FormatInt(id, 10) {
		return 0, errWrongUser
	}
	return id, nil
}

// pathID parses the named path parameter as a positive id, or returns
// notFound.
func pathID(c echo.Context, name string, notFound error) (int64, error) {
	n, err := strconv.ParseInt(c.Param(name), 10, 64)
	if err != nil || n <= 0 || n > 1<<31-1 {
		return 0, notFound
	}
	return n, nil
}

// pathUserID reads the path of a /users/<user_id>/<kind>/<id> route: the
// caller's id after the pathUser check, then the named id parameter as
// pathID parses it (notFound when it is not an id).
func pathUserID(c echo.Context, name string, notFound error) (userID, id int64, err error) {
	if userID, err = pathUser(c); err != nil {
		return 0, 0, err
	}
	if id, err = pathID(c, name, notFound); err != nil {
		return 0, 0, err
	}
	return userID, id, nil
}

// formFile reads the multipart file field, within the body limit. A
// request that carries no such file is the legacy 400 {"error": missing}.
// Malformed bodies are 400; oversized ones 413.
func formFile(c echo.Context, field, missing string, max int64) (data []byte, filename string, err error) {
	fh, err := c.FormFile(field)
	if err != nil {
		var mbe *http.MaxBytesError
		switch {
		case errors.Is(err, http.ErrMissingFile):
			return nil, "", apperr.Invalid(missing).WithKey("error")
		case errors.As(err, &mbe):
			return nil, "", apperr.TooLarge(web.TooLargeMessage).WithKey("error")
		case errors.Is(err, http.ErrNotMultipart), errors.Is(err, multipart.ErrMessageTooLarge):
			return nil, "", apperr.Invalid(missing).WithKey("error")
		}
		return nil, "", apperr.Wrap(apperr.KindInvalid, "Invalid multipart body", err)
	}
	f, err := fh.Open()
	if err != nil {
		return nil, "", apperr.Wrap(apperr.KindInvalid, "Invalid multipart body", err)
	}
	defer f.Close()
	data, err = media.ReadAllLimit(f, max)
	if err != nil {
		return nil, "", err
	}
	return data, fh.Filename, nil
}

// imageRow is an images row as the owner sees it (legacy keys, sorted).
type imageRow struct {
	Base64      string          `json:"base_64"`
	CDNID       *string         `json:"cdn_id"`
	CreatedAt   epochMS         `json:"created_at"`
	Hash        string          `json:"hash"`
	ID          int64           `json:"id"`
	IsLiked     bool            `json:"is_liked"`
	IsPublic    bool            `json:"is_public"`
	Metadata    json.RawMessage `json:"metadata"`
	ParentID    *int64          `json:"parent_id"`
	ThumbBase64 string          `json:"thumb_base_64"`
	UpdatedAt   epochMS         `json:"updated_at"`
	UserID      int64           `json:"user_id"`
}

func strOrNull(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func toImageRow(im library.Image) imageRow {
	return imageRow{
		Base64: im.Base64, CDNID: strOrNull(im.CDNID), CreatedAt: epochMS(im.CreatedAt), Hash: im.Hash, ID: im.ID,
		IsLiked: im.IsLiked, IsPublic: im.IsPublic, Metadata: jsonOrNull(im.Metadata), ParentID: im.ParentID,
		ThumbBase64: im.ThumbBase64, UpdatedAt: epochMS(im.UpdatedAt), UserID: im.UserID,
	}
}

// publicImageRow is an image as anyone may see it (gallery, templates):
// the legacy keys minus hash, with the inline columns blanked to "0" and
// the metadata as library.PublicMetadata shows it (no input images, masks
// or references to private objects; legacy S1). user_id
// stays: the frontend builds the CDN URL <user_id>/<cdn_id>-full.png.
type publicImageRow struct {
	Base64      string          `json:"base_64"`
	CDNID       *string         `json:"cdn_id"`
	CreatedAt   epochMS         `json:"created_at"`
	ID          int64           `json:"id"`
	IsLiked     bool            `json:"is_liked"`
	IsPublic    bool            `json:"is_public"`
	Metadata    json.RawMessage `json:"metadata"`
	ParentID    *int64          `json:"parent_id"`
	ThumbBase64 string          `json:"thumb_base_64"`
	UpdatedAt   epochMS         `json:"updated_at"`
	UserID      int64           `json:"user_id"`
}

func toPublicImageRow(im library.Image) publicImageRow {
	return publicImageRow{
		Base64: "0", CDNID: strOrNull(im.CDNID), CreatedAt: epochMS(im.CreatedAt), ID: im.ID,
		IsLiked: im.IsLiked, IsPublic: im.IsPublic, Metadata: library.PublicMetadata(im.Metadata), ParentID: im.ParentID,
		ThumbBase64: "0", UpdatedAt: epochMS(im.UpdatedAt), UserID: im.UserID,
	}
}

// statusOK is the legacy {"status":"success"} answer.
func statusOK(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "success"})
}

// metadataJSON checks that raw is JSON in valid UTF-8, at most max bytes;
// nil, absent or null is an error when required, else {}. json.Valid
// alone accepts raw invalid bytes inside strings, which PostgreSQL rejects.
func metadataJSON(raw json.RawMessage, required bool, max int) (json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || bytes.Equal(t, []byte("null")) {
		if required {
			return nil, apperr.Invalid("metadata is required")
		}
		return json.RawMessage("{}"), nil
	}
	if len(t) > max {
		return nil, apperr.TooLarge("metadata is too large")
	}
	if !utf8.Valid(t) {
		return nil, apperr.Invalid("metadata must be valid UTF-8")
	}
	if !json.Valid(t) {
		return nil, apperr.Invalid("metadata must be JSON")
	}
	return json.RawMessage(t), nil
}

// decodeMetadata reads the {"metadata": ...} body of the update routes
// (and of link creation): required, JSON, at most max bytes.
func decodeMetadata(c echo.Context, max int) (json.RawMessage, error) {
	var req struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return nil, err
	}
	return metadataJSON(req.Metadata, true, max)
}
