package libraryapi

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/web"
)

// maxLinkMetadata bounds a link's metadata in bytes.
const maxLinkMetadata = 256 << 10

// linkRow is a links row as its owner sees it (legacy keys plus share_id).
type linkRow struct {
	CreatedAt epochMS         `json:"created_at"`
	ID        int64           `json:"id"`
	Metadata  json.RawMessage `json:"metadata"`
	ShareID   *string         `json:"share_id"`
	UpdatedAt epochMS         `json:"updated_at"`
	UserID    int64           `json:"user_id"`
}

// sharedLinkRow is a link as anyone holding it sees it: no user data.
type sharedLinkRow struct {
	CreatedAt epochMS         `json:"created_at"`
	ID        int64           `json:"id"`
	Metadata  json.RawMessage `json:"metadata"`
	ShareID   *string         `json:"share_id"`
	UpdatedAt epochMS         `json:"updated_at"`
}

func toLinkRow(l link) linkRow {
	return linkRow{CreatedAt: epochMS(l.CreatedAt), ID: l.ID, Metadata: jsonOrNull(l.Metadata),
		ShareID: strOrNull(l.ShareID), UpdatedAt: epochMS(l.UpdatedAt), UserID: l.UserID}
}

type linkRequest struct {
	Metadata json.RawMessage `json:"metadata"`
}

// handleLinkCreate serves POST /users/<id>/links {"metadata": ...}; the
// answer {"id": N, "share_id": "..."} carries the unguessable share id to
// put in share URLs.
func (a *API) handleLinkCreate(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	var req linkRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	meta, err := metadataJSON(req.Metadata, true, maxLinkMetadata)
	if err != nil {
		return err
	}
	l, err := a.links.create(c.Request().Context(), uid, meta)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": l.ID, "share_id": l.ShareID})
}

// handleLinkList serves GET /users/<id>/links, newest first, paged.
func (a *API) handleLinkList(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	offset, limit := paging(c, defaultLimit, maxLimit)
	ls, err := a.links.list(c.Request().Context(), uid, offset, limit)
	if err != nil {
		return err
	}
	out := make([]linkRow, len(ls))
	for i, l := range ls {
		out[i] = toLinkRow(l)
	}
	return c.JSON(http.StatusOK, out)
}

// handleLinkShared serves GET /links/<share_id> (challenge token only, no
// body: legacy C9): anyone holding the link reads it. Numeric ids work
// only for links created before share ids.
func (a *API) handleLinkShared(c echo.Context) error {
	ref, ok := parseLinkRef(c.Param("link_id"))
	if !ok {
		return errLinkNotFound
	}
	l, err := a.links.shared(c.Request().Context(), ref)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, sharedLinkRow{CreatedAt: epochMS(l.CreatedAt), ID: l.ID, Metadata: jsonOrNull(l.Metadata),
		ShareID: strOrNull(l.ShareID), UpdatedAt: epochMS(l.UpdatedAt)})
}

// handleLinkUpdate serves PUT /users/<id>/links/<id or share_id>.
func (a *API) handleLinkUpdate(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	ref, ok := parseLinkRef(c.Param("link_id"))
	if !ok {
		return errLinkNotFound
	}
	var req linkRequest
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	meta, err := metadataJSON(req.Metadata, true, maxLinkMetadata)
	if err != nil {
		return err
	}
	if err := a.links.update(c.Request().Context(), uid, ref, meta); err != nil {
		return err
	}
	return statusOK(c)
}

// handleLinkDelete serves DELETE /users/<id>/links/<id or share_id>: the
// caller's link only (legacy S5).
func (a *API) handleLinkDelete(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	ref, ok := parseLinkRef(c.Param("link_id"))
	if !ok {
		return errLinkNotFound
	}
	if err := a.links.delete(c.Request().Context(), uid, ref); err != nil {
		return err
	}
	return statusOK(c)
}
