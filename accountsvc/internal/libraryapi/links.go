package libraryapi

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/library"
)

// maxLinkMetadata bounds a link's metadata in bytes.
const maxLinkMetadata = 256 << 10

// sharedLinkRow is a link as anyone holding it sees it: no user data.
type sharedLinkRow struct {
	CreatedAt epochMS         `json:"created_at"`
	ID        int64           `json:"id"`
	Metadata  json.RawMessage `json:"metadata"`
	ShareID   *string         `json:"share_id"`
	UpdatedAt epochMS         `json:"updated_at"`
}

// linkRow is a links row as its owner sees it (legacy keys plus share_id,
// sorted: the shared keys come first, then user_id).
type linkRow struct {
	sharedLinkRow
	UserID int64 `json:"user_id"`
}

func toSharedLinkRow(l library.Link) sharedLinkRow {
	return sharedLinkRow{CreatedAt: epochMS(l.CreatedAt), ID: l.ID, Metadata: jsonOrNull(l.Metadata),
		ShareID: strOrNull(l.ShareID), UpdatedAt: epochMS(l.UpdatedAt)}
}

func toLinkRow(l library.Link) linkRow {
	return linkRow{sharedLinkRow: toSharedLinkRow(l), UserID: l.UserID}
}

// pathLinkRef parses the :link_id path parameter, a legacy numeric id or a
// share id, or returns the legacy 404.
func pathLinkRef(c echo.Context) (library.LinkRef, error) {
	ref, ok := library.ParseLinkRef(c.Param("link_id"))
	if !ok {
		return library.LinkRef{}, library.ErrLinkNotFound
	}
	return ref, nil
}

// pathUserLink reads the path of /users/<user_id>/links/<link_id>: the
// caller's id after the pathUser check, then the link reference.
func pathUserLink(c echo.Context) (userID int64, ref library.LinkRef, err error) {
	if userID, err = pathUser(c); err != nil {
		return 0, library.LinkRef{}, err
	}
	if ref, err = pathLinkRef(c); err != nil {
		return 0, library.LinkRef{}, err
	}
	return userID, ref, nil
}

// handleLinkCreate serves POST /users/<id>/links {"metadata": ...}; the
// answer {"id": N, "share_id": "..."} carries the unguessable share id to
// put in share URLs.
func (a *API) handleLinkCreate(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	meta, err := decodeMetadata(c, maxLinkMetadata)
	if err != nil {
		return err
	}
	l, err := library.CreateLink(c.Request().Context(), a.opts.Pool, uid, meta, a.opts.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"id": l.ID, "share_id": l.ShareID})
}

// handleLinkList serves GET /users/<id>/links, newest first, paged.
func (a *API) handleLinkList(c echo.Context) error {
	return listUserRows(c, listOn(a.opts.Pool, library.ListLinks), toLinkRow)
}

// handleLinkShared serves GET /links/<share_id> (challenge token only, no
// body: legacy C9): anyone holding the link reads it. Numeric ids work
// only for links created before share ids.
func (a *API) handleLinkShared(c echo.Context) error {
	ref, err := pathLinkRef(c)
	if err != nil {
		return err
	}
	l, err := library.SharedLink(c.Request().Context(), a.opts.Pool, ref)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toSharedLinkRow(l))
}

// handleLinkUpdate serves PUT /users/<id>/links/<id or share_id>.
func (a *API) handleLinkUpdate(c echo.Context) error {
	uid, ref, err := pathUserLink(c)
	if err != nil {
		return err
	}
	meta, err := decodeMetadata(c, maxLinkMetadata)
	if err != nil {
		return err
	}
	if err := library.UpdateLink(c.Request().Context(), a.opts.Pool, uid, ref, meta, a.opts.Now()); err != nil {
		return err
	}
	return statusOK(c)
}

// handleLinkDelete serves DELETE /users/<id>/links/<id or share_id>: the
// caller's link only (legacy S5).
func (a *API) handleLinkDelete(c echo.Context) error {
	uid, ref, err := pathUserLink(c)
	if err != nil {
		return err
	}
	if err := library.DeleteLink(c.Request().Context(), a.opts.Pool, uid, ref); err != nil {
		return err
	}
	return statusOK(c)
}
