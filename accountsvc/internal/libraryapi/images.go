package libraryapi

import (
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/web"
)

// maxUpload bounds one uploaded file; the body limit usually bites first.
const maxUpload = 64 << 20

// handleGalleryList serves GET /images: public images of every user,
// newest first, in the public shape.
func (a *API) handleGalleryList(c echo.Context) error {
	offset, limit := paging(c, defaultLimit, maxLimit)
	imgs, err := a.opts.Images.Public(c.Request().Context(), offset, limit)
	if err != nil {
		return err
	}
	out := make([]publicImageRow, len(imgs))
	for i, im := range imgs {
		out[i] = toPublicImageRow(im)
	}
	return c.JSON(http.StatusOK, out)
}

// handleTemplateGet serves GET /templates/<cdn_id>: only images marked as
// templates, in the public shape.
func (a *API) handleTemplateGet(c echo.Context) error {
	cdnID := c.Param("cdn_id")
	// Only a well-formed object id can name a template; anything else (NUL,
	// invalid UTF-8) must not reach the query.
	if len(cdnID) > 64 || !storage.ValidKey(cdnID) {
		return apperr.NotFound("Template not found").WithKey("error")
	}
	im, err := a.opts.Images.Template(c.Request().Context(), cdnID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toPublicImageRow(im))
}

// handleUserImageCreate serves POST /user-images: a multipart `image`
// checked from its header (format, at most ImageLimits) before it is
// decoded; the original bytes and a 100 px thumbnail are stored.
func (a *API) handleUserImageCreate(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	data, _, err := formFile(c, "image", "No file detected", maxUpload)
	if err != nil {
		return err
	}
	img, _, err := media.Decode(data, a.opts.ImageLimits)
	if err != nil {
		return err
	}
	parent := int64(-1)
	im, _, err := a.opts.Images.Create(c.Request().Context(), library.NewImage{
		UserID: uid, Data: data, Decoded: img,
		Metadata: map[string]any{"base_64": nil, "user_uploaded": true},
		IsLiked:  true, ParentID: &parent,
	})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toImageRow(im))
}

// handleUserImageList serves GET /users/<id>/images: ?field=id gives
// [{"id":N}...], otherwise rows; ?favorited=true keeps liked images (absent
// means all: legacy C6). Both are paged.
func (a *API) handleUserImageList(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	o := library.ListOptions{UserID: uid, FavoritedOnly: strings.EqualFold(c.QueryParam("favorited"), "true")}
	ctx := c.Request().Context()
	if c.QueryParam("field") == "id" {
		// Ids are tiny and the frontend counts them; allow bigger pages.
		o.Offset, o.Limit = paging(c, maxIDLimit, maxIDLimit)
		ids, err := a.opts.Images.ListIDs(ctx, o)
		if err != nil {
			return err
		}
		out := make([]map[string]int64, len(ids))
		for i, id := range ids {
			out[i] = map[string]int64{"id": id}
		}
		return c.JSON(http.StatusOK, out)
	}
	o.Offset, o.Limit = paging(c, defaultLimit, maxLimit)
	imgs, err := a.opts.Images.List(ctx, o)
	if err != nil {
		return err
	}
	out := make([]imageRow, len(imgs))
	for i, im := range imgs {
		out[i] = toImageRow(im)
	}
	return c.JSON(http.StatusOK, out)
}

// maxIDLimit is the page size (default and maximum) of ?field=id.
const maxIDLimit = 1000

// handleUserImageGet serves GET /users/<id>/images/<image_id>.
func (a *API) handleUserImageGet(c echo.Context) error {
	uid, id, err := pathUserID(c, "image_id", library.ErrImageNotFound)
	if err != nil {
		return err
	}
	im, err := a.opts.Images.Get(c.Request().Context(), uid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toImageRow(im))
}

// handleUserImageUpdate serves PUT /users/<id>/images/<image_id> with
// {"is_public": bool|null, "is_liked": bool|null}; null or absent leaves
// the flag unchanged.
func (a *API) handleUserImageUpdate(c echo.Context) error {
	uid, id, err := pathUserID(c, "image_id", library.ErrImageNotFound)
	if err != nil {
		return err
	}
	var req struct {
		IsPublic *bool `json:"is_public"`
		IsLiked  *bool `json:"is_liked"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	if err := a.opts.Images.Update(c.Request().Context(), uid, id, req.IsPublic, req.IsLiked); err != nil {
		return err
	}
	return statusOK(c)
}

// handleUserImageDelete serves DELETE /users/<id>/images/<image_id>: the
// caller's image (legacy S5 deleted the wrong row) and its objects.
func (a *API) handleUserImageDelete(c echo.Context) error {
	uid, id, err := pathUserID(c, "image_id", library.ErrImageNotFound)
	if err != nil {
		return err
	}
	if err := a.opts.Images.Delete(c.Request().Context(), uid, id); err != nil {
		return err
	}
	return statusOK(c)
}
