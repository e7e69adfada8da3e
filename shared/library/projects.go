package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/storage"
)

// Project is one video_projects row; AudioCDNID and AudioName are filled
// by ListProjects only. Times are UTC.
type Project struct {
	ID         int64
	UserID     int64
	AudioID    int64
	Metadata   json.RawMessage
	State      *string
	CDNID      *string
	CreatedAt  time.Time
	UpdatedAt  time.Time
	AudioCDNID string
	AudioName  string
}

// ErrProjectNotFound is the legacy not-found error of the project routes.
var ErrProjectNotFound = apperr.NotFound("Video project not found").WithKey("error")

// ErrProjectMissing is the legacy not-found answer of the queue route.
var ErrProjectMissing = apperr.NotFound("Video project does not exist!")

const projectColumns = `p.id, p.user_id, p.audio_id, p.metadata, p.state, p.cdn_id, p.created_at, p.updated_at`

func scanProject(row pgx.Row, extra ...any) (Project, error) {
	var p Project
	var meta []byte
	dest := append([]any{&p.ID, &p.UserID, &p.AudioID, &meta, &p.State, &p.CDNID, &p.CreatedAt, &p.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return Project{}, err
	}
	p.Metadata = meta
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

func badAudio(id int64) error {
	return apperr.Invalid(fmt.Sprintf("Audio %d not found", id))
}

// CreateProject inserts an UNFINISHED project of the user on their audio
// audioID (400 naming the audio when it is not theirs) and returns its id.
// The audio row is locked so that it cannot be deleted between the check
// and the insert.
func CreateProject(ctx context.Context, c Conn, userID, audioID int64, meta json.RawMessage, now time.Time) (int64, error) {
	var id int64
	err := db.InTx(ctx, c, func(tx pgx.Tx) error {
		var owner int64
		err := tx.QueryRow(ctx, `SELECT user_id FROM audio WHERE id = $1 FOR SHARE`, audioID).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && owner != userID) {
			return badAudio(audioID)
		}
		if err != nil {
			return fmt.Errorf("check audio %d: %w", audioID, err)
		}
		err = tx.QueryRow(ctx, `INSERT INTO video_projects (user_id, audio_id, metadata, state, created_at, updated_at)
			VALUES ($1, $2, $3::json, $4, $5, $5) RETURNING id`, userID, audioID, string(meta), StateUnfinished, now.UTC()).Scan(&id)
		if err != nil {
			return db.Interpret(fmt.Errorf("insert video project for user %d: %w", userID, err), "video project")
		}
		return nil
	})
	return id, err
}

// GetProject returns the user's project id, or ErrProjectNotFound.
func GetProject(ctx context.Context, q db.Querier, userID, id int64) (Project, error) {
	p, err := scanProject(q.QueryRow(ctx, `SELECT `+projectColumns+` FROM video_projects p WHERE p.id = $1 AND p.user_id = $2`, id, userID))
	if err != nil {
		return Project{}, rowErr(err, ErrProjectNotFound, fmt.Sprintf("get video project %d of user %d", id, userID))
	}
	return p, nil
}

// LoadProject returns the project id whoever owns it (for the job
// rendering it), or ErrProjectNotFound.
func LoadProject(ctx context.Context, q db.Querier, id int64) (Project, error) {
	p, err := scanProject(q.QueryRow(ctx, `SELECT `+projectColumns+` FROM video_projects p WHERE p.id = $1`, id))
	if err != nil {
		return Project{}, rowErr(err, ErrProjectNotFound, fmt.Sprintf("read video project %d", id))
	}
	return p, nil
}

// ListProjects returns a page of the user's projects, newest first, each
// with its audio's cdn_id and name.
func ListProjects(ctx context.Context, q db.Querier, userID int64, offset, limit int) ([]Project, error) {
	rows, err := q.Query(ctx, `SELECT `+projectColumns+`, a.cdn_id, a.name
		FROM video_projects p JOIN audio a ON a.id = p.audio_id
		WHERE p.user_id = $1 ORDER BY p.id DESC OFFSET $2 LIMIT $3`, userID, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list video projects of user %d: %w", userID, err)
	}
	out, err := scanAll(rows, func(row pgx.Row) (Project, error) {
		var cdn, name string
		p, err := scanProject(row, &cdn, &name)
		p.AudioCDNID, p.AudioName = cdn, name
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("list video projects of user %d: %w", userID, err)
	}
	return out, nil
}

// UpdateProject sets the metadata of the user's project; a QUEUED or
// PROCESSING project is left alone (409): its job renders from the row.
func UpdateProject(ctx context.Context, q db.Querier, userID, id int64, meta json.RawMessage, now time.Time) error {
	tag, err := q.Exec(ctx, `UPDATE video_projects SET metadata = $3::json, updated_at = $4
		WHERE id = $1 AND user_id = $2 AND COALESCE(state, '') NOT IN ('QUEUED', 'PROCESSING')`,
		id, userID, string(meta), now.UTC())
	if err != nil {
		return fmt.Errorf("update video project %d of user %d: %w", id, userID, err)
	}
	if tag.RowsAffected() == 0 {
		// Missing, or busy: read which.
		p, err := GetProject(ctx, q, userID, id)
		if err != nil {
			return err
		}
		return errBusy("Video project", p.State)
	}
	return nil
}

// DeleteProject deletes the user's project and returns its render's
// object. A QUEUED or PROCESSING project is left alone (409): its job
// would later upload to a key nothing deletes.
func DeleteProject(ctx context.Context, c Conn, userID, id int64) ([]storage.Object, error) {
	var objs []storage.Object
	err := db.InTx(ctx, c, func(tx pgx.Tx) error {
		var cdnID, state *string
		err := tx.QueryRow(ctx, `SELECT cdn_id, state FROM video_projects WHERE id = $1 AND user_id = $2 FOR UPDATE`,
			id, userID).Scan(&cdnID, &state)
		if err != nil {
			return rowErr(err, ErrProjectNotFound, fmt.Sprintf("lock video project %d of user %d", id, userID))
		}
		if Busy(state) {
			return errBusy("Video project", state)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM video_projects WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete video project %d of user %d: %w", id, userID, err)
		}
		objs = VideoObjects(userID, cdnID)
		return nil
	})
	return objs, err
}

// maxKeyframes bounds metadata.imageIds.
const maxKeyframes = 1000

// keyframeIDs parses metadata.imageIds: a list of ids as numbers or
// numeric strings. A bad entry is a 400 naming it.
func keyframeIDs(meta json.RawMessage) ([]int64, error) {
	var m struct {
		ImageIDs []json.RawMessage `json:"imageIds"`
	}
	if err := json.Unmarshal(meta, &m); err != nil {
		// Not an object, or imageIds is not a list.
		return nil, apperr.Invalid("metadata.imageIds must be a list of image ids")
	}
	if len(m.ImageIDs) > maxKeyframes {
		return nil, apperr.Invalid(fmt.Sprintf("metadata.imageIds has more than %d entries", maxKeyframes))
	}
	ids := make([]int64, 0, len(m.ImageIDs))
	for _, raw := range m.ImageIDs {
		id, ok := JSONID(raw)
		if !ok {
			return nil, apperr.Invalid(fmt.Sprintf("Invalid image id %s in imageIds", Truncate(string(raw), 40)))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// JSONID reads a JSON number or numeric string as a positive id (legacy
// clients send both).
func JSONID(raw json.RawMessage) (int64, bool) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false
		}
		n = json.Number(strings.TrimSpace(s))
	}
	v, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || v <= 0 || v > 1<<31-1 {
		return 0, false
	}
	return v, true
}

// QueueProject puts the user's project into QUEUED: the row is locked; a
// QUEUED or PROCESSING project is a 409 (legacy C13 silently succeeded);
// the audio and every imageIds entry must be the user's (400 naming the
// bad id; legacy S6); a new cdn_id is assigned, queued_at and updated_at
// are set to now (the queue order). Pass the transaction that also
// enqueues the project's job, so that both commit or neither. It returns
// the previous render's object, which the caller deletes once the change
// has committed.
func QueueProject(ctx context.Context, c Conn, userID, id int64, now time.Time) ([]storage.Object, error) {
	var old []storage.Object
	err := db.InTx(ctx, c, func(tx pgx.Tx) error {
		p, err := scanProject(tx.QueryRow(ctx, `SELECT `+projectColumns+` FROM video_projects p
			WHERE p.id = $1 AND p.user_id = $2 FOR UPDATE`, id, userID))
		if err != nil {
			return rowErr(err, ErrProjectMissing, fmt.Sprintf("lock video project %d", id))
		}
		if Busy(p.State) {
			return apperr.Conflict("Video project is already " + strings.ToLower(*p.State))
		}
		ok, err := AudioOwned(ctx, tx, userID, p.AudioID)
		if err != nil {
			return err
		}
		if !ok {
			return badAudio(p.AudioID)
		}
		ids, err := keyframeIDs(p.Metadata)
		if err != nil {
			return err
		}
		missing, err := MissingImageIDs(ctx, tx, userID, ids)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return apperr.Invalid(fmt.Sprintf("Image %d not found", missing[0])).WithField("image_id", missing[0])
		}
		if _, err := tx.Exec(ctx, `UPDATE video_projects SET state = $2, cdn_id = $3, queued_at = $4, updated_at = $4 WHERE id = $1`,
			id, StateQueued, uuid.NewString(), now.UTC()); err != nil {
			return fmt.Errorf("queue video project %d: %w", id, err)
		}
		old = VideoObjects(userID, p.CDNID)
		return nil
	})
	return old, err
}

// LockProjectForJob locks the project id in tx q and returns its owner and
// metadata (the job queue reads what to enqueue from them).
func LockProjectForJob(ctx context.Context, q db.Querier, id int64) (userID int64, meta json.RawMessage, err error) {
	var raw []byte
	if err := q.QueryRow(ctx, `SELECT user_id, metadata FROM video_projects WHERE id = $1 FOR UPDATE`, id).Scan(&userID, &raw); err != nil {
		return 0, nil, fmt.Errorf("lock video project %d: %w", id, err)
	}
	return userID, raw, nil
}

// LockProjectState locks the project id in tx q and returns its state.
func LockProjectState(ctx context.Context, q db.Querier, id int64) (*string, error) {
	var state *string
	if err := q.QueryRow(ctx, `SELECT state FROM video_projects WHERE id = $1 FOR UPDATE`, id).Scan(&state); err != nil {
		return nil, fmt.Errorf("lock video project %d: %w", id, err)
	}
	return state, nil
}

// SetProjectState sets the legacy state column of the project id (the job
// queue mirrors its job's state there).
func SetProjectState(ctx context.Context, q db.Querier, id int64, state string) error {
	if _, err := q.Exec(ctx, `UPDATE video_projects SET state = $2 WHERE id = $1`, id, state); err != nil {
		return fmt.Errorf("set video project %d %s: %w", id, state, err)
	}
	return nil
}

// QueuedProjects returns up to limit QUEUED projects with an id above
// afterID, in id order.
func QueuedProjects(ctx context.Context, q db.Querier, afterID int64, limit int) ([]QueuedRow, error) {
	return queuedRows(ctx, q, `SELECT id, user_id, metadata FROM video_projects WHERE state = 'QUEUED' AND id > $1 ORDER BY id LIMIT $2`,
		afterID, limit)
}
