package libraryapi

import (
	"encoding/json"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/web"
)

// maxProjectMetadata bounds a project's metadata in bytes.
const maxProjectMetadata = 1 << 20

// projectRow is a video_projects row (legacy keys, sorted); the list adds
// audio_cdn_id and audio_name.
type projectRow struct {
	AudioCDNID *string         `json:"audio_cdn_id,omitempty"`
	AudioID    int64           `json:"audio_id"`
	AudioName  *string         `json:"audio_name,omitempty"`
	CDNID      *string         `json:"cdn_id"`
	CreatedAt  epochMS         `json:"created_at"`
	ID         int64           `json:"id"`
	Metadata   json.RawMessage `json:"metadata"`
	State      *string         `json:"state"`
	UpdatedAt  epochMS         `json:"updated_at"`
	UserID     int64           `json:"user_id"`
}

func toProjectRow(p library.Project) projectRow {
	return projectRow{AudioID: p.AudioID, CDNID: p.CDNID, CreatedAt: epochMS(p.CreatedAt), ID: p.ID,
		Metadata: jsonOrNull(p.Metadata), State: p.State, UpdatedAt: epochMS(p.UpdatedAt), UserID: p.UserID}
}

// toProjectListRow is the list's shape: the row plus its audio's cdn_id
// and name.
func toProjectListRow(p library.Project) projectRow {
	r := toProjectRow(p)
	r.AudioCDNID, r.AudioName = &p.AudioCDNID, &p.AudioName
	return r
}

// handleProjectCreate serves POST /users/<id>/video-projects {"audio_id",
// "metadata"}; the audio must be the caller's (400 naming it; legacy S6).
func (a *API) handleProjectCreate(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	var req struct {
		AudioID  json.RawMessage `json:"audio_id"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	audioID, ok := library.JSONID(req.AudioID)
	if !ok {
		return apperr.Invalid("audio_id must be an audio id")
	}
	meta, err := metadataJSON(req.Metadata, false, maxProjectMetadata)
	if err != nil {
		return err
	}
	id, err := library.CreateProject(c.Request().Context(), a.opts.Pool, uid, audioID, meta, a.opts.Now())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]int64{"id": id})
}

// handleProjectList serves GET /users/<id>/video-projects, newest first,
// paged, with the audio's cdn_id and name.
func (a *API) handleProjectList(c echo.Context) error {
	return listUserRows(c, listOn(a.opts.Pool, library.ListProjects), toProjectListRow)
}

// handleProjectGet serves GET /users/<id>/video-projects/<project_id>.
func (a *API) handleProjectGet(c echo.Context) error {
	uid, id, err := pathUserID(c, "project_id", library.ErrProjectNotFound)
	if err != nil {
		return err
	}
	p, err := library.GetProject(c.Request().Context(), a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toProjectRow(p))
}

// handleProjectUpdate serves PUT /users/<id>/video-projects/<project_id>
// {"metadata"}; 409 while the project is QUEUED or PROCESSING.
func (a *API) handleProjectUpdate(c echo.Context) error {
	uid, id, err := pathUserID(c, "project_id", library.ErrProjectNotFound)
	if err != nil {
		return err
	}
	meta, err := decodeMetadata(c, maxProjectMetadata)
	if err != nil {
		return err
	}
	if err := library.UpdateProject(c.Request().Context(), a.opts.Pool, uid, id, meta, a.opts.Now()); err != nil {
		return err
	}
	return statusOK(c)
}

// handleProjectDelete serves DELETE /users/<id>/video-projects/<project_id>
// (new): the row and its rendered video; 409 while the project is QUEUED
// or PROCESSING (cancel its job first).
func (a *API) handleProjectDelete(c echo.Context) error {
	uid, id, err := pathUserID(c, "project_id", library.ErrProjectNotFound)
	if err != nil {
		return err
	}
	objs, err := library.DeleteProject(c.Request().Context(), a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	a.cleanup.now(c.Request().Context(), objs)
	return statusOK(c)
}

// handleProjectQueue serves POST /video-projects/<project_id>/queue: the
// caller's project only (another user's is "not found"), 409 when already
// queued or processing, 400 naming a foreign audio or image id. The old
// render is deleted in the background once the change has committed.
func (a *API) handleProjectQueue(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "project_id", library.ErrProjectMissing)
	if err != nil {
		return err
	}
	old, err := a.queueProject(c.Request().Context(), uid, id)
	if err != nil {
		return err
	}
	a.cleanup.later(c.Request().Context(), old)
	body := map[string]string{"status": "success"}
	if jid := a.jobOf(c.Request().Context(), "video_project", id); jid != "" {
		body["job_id"] = jid
	}
	return c.JSON(http.StatusOK, body)
}
