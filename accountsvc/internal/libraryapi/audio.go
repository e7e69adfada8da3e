package libraryapi

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode"

	"github.com/labstack/echo/v4"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/web"
)

// maxPrompt bounds prompts in bytes.
const maxPrompt = 2000

// audioRow is an audio row (legacy keys, sorted); Queue is set only on the
// single GET: a position, 0 (processing), null (completed) or absent.
type audioRow struct {
	CDNID     string          `json:"cdn_id"`
	CreatedAt epochMS         `json:"created_at"`
	ID        int64           `json:"id"`
	Metadata  json.RawMessage `json:"metadata"`
	Name      string          `json:"name"`
	Queue     json.RawMessage `json:"queue,omitempty"`
	Size      int64           `json:"size"`
	State     *string         `json:"state"`
	UpdatedAt epochMS         `json:"updated_at"`
	UserID    int64           `json:"user_id"`
}

func toAudioRow(a library.Audio) audioRow {
	return audioRow{CDNID: a.CDNID, CreatedAt: epochMS(a.CreatedAt), ID: a.ID, Metadata: jsonOrNull(a.Metadata),
		Name: a.Name, Size: a.Size, State: a.State, UpdatedAt: epochMS(a.UpdatedAt), UserID: a.UserID}
}

// createdAudio is the legacy {"id", "cdn_id"} answer, plus "job_id" (the
// job that generates a queued row) when there is one.
func (a *API) createdAudio(c echo.Context, row library.Audio) error {
	body := map[string]any{"id": row.ID, "cdn_id": row.CDNID}
	if row.State != nil && *row.State == library.StateQueued {
		if jid := a.jobOf(c.Request().Context(), "audio", row.ID); jid != "" {
			body["job_id"] = jid
		}
	}
	return c.JSON(http.StatusOK, body)
}

// checkPrompt trims and bounds a prompt.
func checkPrompt(p, field string, required bool) (string, error) {
	p = strings.TrimSpace(p)
	if p == "" && required {
		return "", apperr.Invalid(field + " is required")
	}
	if len(p) > maxPrompt {
		return "", apperr.Invalid(field + " is too long (at most " + strconv.Itoa(maxPrompt) + " bytes)")
	}
	return p, nil
}

// handleAudioCreate serves POST /audios {"text", "melody_id"?}: a QUEUED
// text-to-audio row. A melody must be one of the caller's audio rows.
func (a *API) handleAudioCreate(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	var req struct {
		Text     *string         `json:"text"`
		MelodyID json.RawMessage `json:"melody_id"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Text == nil {
		return apperr.Invalid("text is required")
	}
	text, err := checkPrompt(*req.Text, "text", true)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var melody any
	if t := strings.TrimSpace(string(req.MelodyID)); t != "" && t != "null" {
		id, ok := library.JSONID(req.MelodyID)
		if !ok {
			return apperr.Invalid("melody_id must be an audio id")
		}
		if _, err := library.GetAudio(ctx, a.opts.Pool, uid, id); err != nil {
			return err
		}
		melody = id
	}
	row, err := a.createAudio(ctx, newAudio{UserID: uid, Name: "generated.mp3", State: library.StateQueued,
		Metadata: map[string]any{"prompt": text, "mode": "text to audio", "melody_id": melody}})
	if err != nil {
		return err
	}
	return a.createdAudio(c, row)
}

// parentAudio reads {"id": N, ...} and returns the caller's audio N.
func (a *API) parentAudio(c echo.Context, uid int64, raw json.RawMessage) (library.Audio, error) {
	id, ok := library.JSONID(raw)
	if !ok {
		if len(raw) == 0 {
			return library.Audio{}, apperr.Invalid("id is required")
		}
		return library.Audio{}, library.ErrAudioNotFound
	}
	return library.GetAudio(c.Request().Context(), a.opts.Pool, uid, id)
}

// handleAudioExtend serves POST /audio-extend {"id", "prompt"?}: a QUEUED
// continuation of the caller's audio (else 404 "Audio not found").
func (a *API) handleAudioExtend(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	var req struct {
		ID     json.RawMessage `json:"id"`
		Prompt *string         `json:"prompt"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	parent, err := a.parentAudio(c, uid, req.ID)
	if err != nil {
		return err
	}
	var prompt string
	if req.Prompt != nil {
		if prompt, err = checkPrompt(*req.Prompt, "prompt", false); err != nil {
			return err
		}
	} else {
		var pm struct {
			Prompt string `json:"prompt"`
		}
		_ = json.Unmarshal(parent.Metadata, &pm)
		prompt = library.Truncate(pm.Prompt, maxPrompt)
	}
	row, err := a.createAudio(c.Request().Context(), newAudio{UserID: uid, Name: "extended-" + parent.Name,
		State: library.StateQueued, Metadata: map[string]any{"prompt": prompt, "parent_id": parent.ID, "mode": "audio extend"}})
	if err != nil {
		return err
	}
	return a.createdAudio(c, row)
}

// handleAudioSplit serves POST /audio-split {"id"}: a QUEUED stem split of
// the caller's audio (legacy S6: any id was accepted).
func (a *API) handleAudioSplit(c echo.Context) error {
	uid, err := caller(c)
	if err != nil {
		return err
	}
	var req struct {
		ID json.RawMessage `json:"id"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	parent, err := a.parentAudio(c, uid, req.ID)
	if err != nil {
		return err
	}
	row, err := a.createAudio(c.Request().Context(), newAudio{UserID: uid,
		Name: "queuedSplit" + strconv.FormatInt(parent.ID, 10) + ".mp3", State: library.StateQueued,
		Metadata: map[string]any{"parent_id": parent.ID, "mode": "audio split"}})
	if err != nil {
		return err
	}
	return a.createdAudio(c, row)
}

// handleAudioUpload serves POST /users/<id>/audios (multipart `audio`): the
// filename is sanitised, the content sniffed, the real size stored, and the
// bytes uploaded before the row is inserted (legacy C12). The state is NULL
// as legacy stored it: no job ever ran, and the single GET has no `queue`.
func (a *API) handleAudioUpload(c echo.Context) error {
	uid, err := pathUser(c)
	if err != nil {
		return err
	}
	data, filename, err := formFile(c, "audio", "No audio file detected", maxUpload)
	if err != nil {
		return err
	}
	if _, err := media.SniffAudio(data); err != nil {
		return err
	}
	row, err := a.createAudio(c.Request().Context(), newAudio{UserID: uid,
		Name: media.SanitizeFilename(filename, "upload.mp3"), Size: int64(len(data)),
		Metadata: map[string]any{}, Upload: data})
	if err != nil {
		return err
	}
	return a.createdAudio(c, row)
}

// handleAudioList serves GET /users/<id>/audios, newest first, paged.
func (a *API) handleAudioList(c echo.Context) error {
	return listUserRows(c, listOn(a.opts.Pool, library.ListAudio), toAudioRow)
}

// handleAudioGet serves GET /users/<id>/audios/<audio_id> with `queue`
// (absent for NULL and ERROR rows, as legacy).
func (a *API) handleAudioGet(c echo.Context) error {
	uid, id, err := pathUserID(c, "audio_id", library.ErrAudioNotFound)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	row, err := library.GetAudio(ctx, a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	out := toAudioRow(row)
	if row.State != nil {
		switch *row.State {
		case library.StateQueued:
			n, err := library.AudioQueuePosition(ctx, a.opts.Pool, row.ID)
			if err != nil {
				return err
			}
			out.Queue = json.RawMessage(strconv.FormatInt(n, 10))
		case library.StateProcessing:
			out.Queue = json.RawMessage("0")
		case library.StateCompleted:
			out.Queue = json.RawMessage("null")
		}
	}
	return c.JSON(http.StatusOK, out)
}

// handleAudioUpdate serves PUT /users/<id>/audios/<audio_id> {"name",
// "metadata"} (legacy C7: it always failed). `url` and `size` are ignored:
// they describe the stored object, which the client does not own. A name
// must not hold control characters (NUL cannot be stored). A QUEUED or
// PROCESSING row is a 409: its job reads the row.
func (a *API) handleAudioUpdate(c echo.Context) error {
	uid, id, err := pathUserID(c, "audio_id", library.ErrAudioNotFound)
	if err != nil {
		return err
	}
	var req struct {
		Name     *string         `json:"name"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := web.DecodeJSON(c, &req); err != nil {
		return err
	}
	var name *string
	if req.Name != nil {
		n := strings.TrimSpace(*req.Name)
		if n == "" || len(n) > 256 || strings.IndexFunc(n, unicode.IsControl) >= 0 {
			return apperr.Invalid("name must be 1 to 256 bytes without control characters")
		}
		name = &n
	}
	var meta json.RawMessage
	if t := strings.TrimSpace(string(req.Metadata)); t != "" && t != "null" {
		if meta, err = metadataJSON(req.Metadata, false, maxLinkMetadata); err != nil {
			return err
		}
	}
	if err := library.UpdateAudio(c.Request().Context(), a.opts.Pool, uid, id, name, meta, a.opts.Now()); err != nil {
		return err
	}
	return statusOK(c)
}

// handleAudioDelete serves DELETE /users/<id>/audios/<audio_id>: the row,
// its video projects (cascade) and all their objects (legacy C8). While the
// audio or one of those projects is QUEUED or PROCESSING it is a 409: the
// job would upload to a key nothing deletes; cancel the job first.
func (a *API) handleAudioDelete(c echo.Context) error {
	uid, id, err := pathUserID(c, "audio_id", library.ErrAudioNotFound)
	if err != nil {
		return err
	}
	objs, err := library.DeleteAudio(c.Request().Context(), a.opts.Pool, uid, id)
	if err != nil {
		return err
	}
	a.cleanup.now(c.Request().Context(), objs)
	return statusOK(c)
}
