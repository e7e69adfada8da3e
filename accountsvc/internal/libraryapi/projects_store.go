package libraryapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
)

// project is one video_projects row; AudioCDNID and AudioName are filled
// by list only.
type project struct {
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

var errProjectNotFound = apperr.NotFound("Video project not found").WithKey("error")

// errProjectMissing is the legacy answer of the queue route.
var errProjectMissing = apperr.NotFound("Video project does not exist!")

type projectStore struct {
	pool     *pgxpool.Pool
	now      func() time.Time
	onQueued QueuedFunc
}

const projectColumns = `p.id, p.user_id, p.audio_id, p.metadata, p.state, p.cdn_id, p.created_at, p.updated_at`

func scanProject(row pgx.Row, extra ...any) (project, error) {
	var p project
	var meta []byte
	dest := append([]any{&p.ID, &p.UserID, &p.AudioID, &meta, &p.State, &p.CDNID, &p.CreatedAt, &p.UpdatedAt}, extra...)
	if err := row.Scan(dest...); err != nil {
		return project{}, err
	}
	p.Metadata = meta
	p.CreatedAt, p.UpdatedAt = p.CreatedAt.UTC(), p.UpdatedAt.UTC()
	return p, nil
}

// audioOwned reports whether audio id belongs to userID.
func audioOwned(ctx context.Context, q db.Querier, userID, id int64) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audio WHERE id = $1 AND user_id = $2)`, id, userID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check audio %d of user %d: %w", id, userID, err)
	}
	return ok, nil
}

func badAudio(id int64) error {
	return apperr.Invalid(fmt.Sprintf("Audio %d not found", id))
}

func (s *projectStore) create(ctx context.Context, userID, audioID int64, meta json.RawMessage) (int64, error) {
	var id int64
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		// Lock the audio row so that it cannot be deleted between the check
		// and the insert.
		var owner int64
		err := tx.QueryRow(ctx, `SELECT user_id FROM audio WHERE id = $1 FOR SHARE`, audioID).Scan(&owner)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && owner != userID) {
			return badAudio(audioID)
		}
		if err != nil {
			return fmt.Errorf("check audio %d: %w", audioID, err)
		}
		now := s.now().UTC()
		err = tx.QueryRow(ctx, `INSERT INTO video_projects (user_id, audio_id, metadata, state, created_at, updated_at)
			VALUES ($1, $2, $3::json, $4, $5, $5) RETURNING id`, userID, audioID, string(meta), stateUnfinished, now).Scan(&id)
		if err != nil {
			return db.Interpret(fmt.Errorf("insert video project for user %d: %w", userID, err), "video project")
		}
		return nil
	})
	return id, err
}

func (s *projectStore) get(ctx context.Context, userID, id int64) (project, error) {
	p, err := scanProject(s.pool.QueryRow(ctx, `SELECT `+projectColumns+` FROM video_projects p WHERE p.id = $1 AND p.user_id = $2`, id, userID))
	if err != nil {
		return project{}, rowErr(err, errProjectNotFound, fmt.Sprintf("get video project %d of user %d", id, userID))
	}
	return p, nil
}

func (s *projectStore) list(ctx context.Context, userID int64, offset, limit int) ([]project, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+projectColumns+`, a.cdn_id, a.name
		FROM video_projects p JOIN audio a ON a.id = p.audio_id
		WHERE p.user_id = $1 ORDER BY p.id DESC OFFSET $2 LIMIT $3`, userID, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list video projects of user %d: %w", userID, err)
	}
	out, err := scanAll(rows, func(row pgx.Row) (project, error) {
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

// update sets the metadata; a QUEUED or PROCESSING project is left alone
// (409): its job renders from the row.
func (s *projectStore) update(ctx context.Context, userID, id int64, meta json.RawMessage) error {
	tag, err := s.pool.Exec(ctx, `UPDATE video_projects SET metadata = $3::json, updated_at = $4
		WHERE id = $1 AND user_id = $2 AND COALESCE(state, '') NOT IN ('QUEUED', 'PROCESSING')`,
		id, userID, string(meta), s.now().UTC())
	if err != nil {
		return fmt.Errorf("update video project %d of user %d: %w", id, userID, err)
	}
	if tag.RowsAffected() == 0 {
		// Missing, or busy: read which.
		p, err := s.get(ctx, userID, id)
		if err != nil {
			return err
		}
		return errBusy("Video project", p.State)
	}
	return nil
}

// delete deletes the project and returns its render's object. A QUEUED or
// PROCESSING project is left alone (409): its job would later upload to a
// key nothing deletes.
func (s *projectStore) delete(ctx context.Context, userID, id int64) ([]storage.Object, error) {
	var objs []storage.Object
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var cdnID, state *string
		err := tx.QueryRow(ctx, `SELECT cdn_id, state FROM video_projects WHERE id = $1 AND user_id = $2 FOR UPDATE`,
			id, userID).Scan(&cdnID, &state)
		if err != nil {
			return rowErr(err, errProjectNotFound, fmt.Sprintf("lock video project %d of user %d", id, userID))
		}
		if busy(state) {
			return errBusy("Video project", state)
		}
		if _, err := tx.Exec(ctx, `DELETE FROM video_projects WHERE id = $1`, id); err != nil {
			return fmt.Errorf("delete video project %d of user %d: %w", id, userID, err)
		}
		objs = videoObjects(userID, cdnID)
		return nil
	})
	return objs, err
}

// maxKeyframes bounds metadata.imageIds.
const maxKeyframes = 1000

// imageIDs parses metadata.imageIds: a list of ids as numbers or numeric
// strings. A bad entry is a 400 naming it.
func imageIDs(meta json.RawMessage) ([]int64, error) {
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
		id, ok := jsonInt(raw)
		if !ok {
			return nil, apperr.Invalid(fmt.Sprintf("Invalid image id %s in imageIds", truncate(string(raw), 40)))
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// queue puts the caller's project into QUEUED in one transaction: the row
// is locked; a QUEUED or PROCESSING project is a 409 (legacy C13 silently
// succeeded); the audio and every imageIds entry must be the caller's (400
// naming the bad id; legacy S6); a new cdn_id is assigned, queued_at and
// updated_at are set to now (the queue order), and the onQueued hook runs
// before the commit. It returns the previous render's object, which the
// caller deletes once the change has committed.
func (s *projectStore) queue(ctx context.Context, userID, id int64) ([]storage.Object, error) {
	var old []storage.Object
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		p, err := scanProject(tx.QueryRow(ctx, `SELECT `+projectColumns+` FROM video_projects p
			WHERE p.id = $1 AND p.user_id = $2 FOR UPDATE`, id, userID))
		if err != nil {
			return rowErr(err, errProjectMissing, fmt.Sprintf("lock video project %d", id))
		}
		if p.State != nil && (*p.State == stateQueued || *p.State == stateProcessing) {
			return apperr.Conflict("Video project is already " + map[string]string{stateQueued: "queued", stateProcessing: "processing"}[*p.State])
		}
		ok, err := audioOwned(ctx, tx, userID, p.AudioID)
		if err != nil {
			return err
		}
		if !ok {
			return badAudio(p.AudioID)
		}
		ids, err := imageIDs(p.Metadata)
		if err != nil {
			return err
		}
		missing, err := library.MissingImageIDs(ctx, tx, userID, ids)
		if err != nil {
			return err
		}
		if len(missing) > 0 {
			return apperr.Invalid(fmt.Sprintf("Image %d not found", missing[0])).WithField("image_id", missing[0])
		}
		now := s.now().UTC()
		if _, err := tx.Exec(ctx, `UPDATE video_projects SET state = $2, cdn_id = $3, queued_at = $4, updated_at = $4 WHERE id = $1`,
			id, stateQueued, uuid.NewString(), now); err != nil {
			return fmt.Errorf("queue video project %d: %w", id, err)
		}
		if s.onQueued != nil {
			if err := s.onQueued(ctx, tx, id); err != nil {
				return fmt.Errorf("queue video project %d: %w", id, err)
			}
		}
		old = videoObjects(userID, p.CDNID)
		return nil
	})
	return old, err
}
