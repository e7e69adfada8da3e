package library

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/storage"
)

// Audio is one row of the audio table. Times are UTC.
type Audio struct {
	ID       int64
	UserID   int64
	Name     string
	CDNID    string
	Size     int64
	Metadata json.RawMessage
	// State is NULL (nil) for uploads, else one of the State constants or
	// a job's final state.
	State     *string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ErrAudioNotFound is the legacy not-found error of the audio routes.
var ErrAudioNotFound = apperr.NotFound("Audio not found").WithKey("error")

const audioColumns = `id, user_id, name, cdn_id, size, metadata, state, created_at, updated_at`

func scanAudio(row pgx.Row) (Audio, error) {
	var a Audio
	var meta []byte
	if err := row.Scan(&a.ID, &a.UserID, &a.Name, &a.CDNID, &a.Size, &meta, &a.State, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return Audio{}, err
	}
	a.Metadata = meta
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

// NewAudio is an audio row to insert; its object (if any) is stored
// already under storage.AudioKey(UserID, CDNID).
type NewAudio struct {
	UserID int64
	// Name is cut to 256 bytes.
	Name  string
	CDNID string
	Size  int64
	// Metadata is marshalled into the JSON column; nil means {}.
	Metadata any
	// State is StateQueued for jobs (queued_at is then set to Now), or ""
	// (NULL, as legacy) for uploads.
	State string
	// Now is created_at and updated_at.
	Now time.Time
}

// InsertAudio inserts the row n. A QUEUED row must get its job in the same
// transaction (q), so that no queued row is ever without one.
func InsertAudio(ctx context.Context, q db.Querier, n NewAudio) (Audio, error) {
	meta, err := marshalMetadata(n.Metadata)
	if err != nil {
		return Audio{}, err
	}
	now := n.Now.UTC()
	var queuedAt *time.Time
	if n.State == StateQueued {
		queuedAt = &now
	}
	a, err := scanAudio(q.QueryRow(ctx, `INSERT INTO audio (user_id, name, cdn_id, size, metadata, state, queued_at, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5::json, NULLIF($6, ''), $7, $8, $8) RETURNING `+audioColumns,
		n.UserID, Truncate(n.Name, 256), n.CDNID, n.Size, string(meta), n.State, queuedAt, now))
	if err != nil {
		return Audio{}, db.Interpret(fmt.Errorf("insert audio for user %d: %w", n.UserID, err), "audio")
	}
	return a, nil
}

// GetAudio returns the user's audio row id, or ErrAudioNotFound.
func GetAudio(ctx context.Context, q db.Querier, userID, id int64) (Audio, error) {
	a, err := scanAudio(q.QueryRow(ctx, `SELECT `+audioColumns+` FROM audio WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return Audio{}, rowErr(err, ErrAudioNotFound, fmt.Sprintf("get audio %d of user %d", id, userID))
	}
	return a, nil
}

// LoadAudio returns the audio row id whoever owns it (for the job working
// on it), or ErrAudioNotFound.
func LoadAudio(ctx context.Context, q db.Querier, id int64) (Audio, error) {
	a, err := scanAudio(q.QueryRow(ctx, `SELECT `+audioColumns+` FROM audio WHERE id = $1`, id))
	if err != nil {
		return Audio{}, rowErr(err, ErrAudioNotFound, fmt.Sprintf("read audio %d", id))
	}
	return a, nil
}

// AudioOwned reports whether audio id belongs to userID.
func AudioOwned(ctx context.Context, q db.Querier, userID, id int64) (bool, error) {
	var ok bool
	err := q.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM audio WHERE id = $1 AND user_id = $2)`, id, userID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("check audio %d of user %d: %w", id, userID, err)
	}
	return ok, nil
}

// AudioQueuePosition returns the 1-based position of a QUEUED row among
// every user's queued rows, by queue time (legacy: creation order).
func AudioQueuePosition(ctx context.Context, q db.Querier, id int64) (int64, error) {
	var n int64
	err := q.QueryRow(ctx, `
		WITH me AS (SELECT COALESCE(queued_at, updated_at) AS t, id FROM audio WHERE id = $1)
		SELECT count(*) FROM audio, me
		WHERE audio.state = 'QUEUED' AND (COALESCE(audio.queued_at, audio.updated_at), audio.id) <= (me.t, me.id)`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queue position of audio %d: %w", id, err)
	}
	return n, nil
}

// ListAudio returns a page of the user's audio rows, newest first.
func ListAudio(ctx context.Context, q db.Querier, userID int64, offset, limit int) ([]Audio, error) {
	rows, err := q.Query(ctx, `SELECT `+audioColumns+` FROM audio WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
		userID, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list audio of user %d: %w", userID, err)
	}
	out, err := scanAll(rows, scanAudio)
	if err != nil {
		return nil, fmt.Errorf("list audio of user %d: %w", userID, err)
	}
	return out, nil
}

// UpdateAudio sets name (when not nil) and metadata (when not nil) of the
// user's row, and updated_at to now. A QUEUED or PROCESSING row is left
// alone (409).
func UpdateAudio(ctx context.Context, q db.Querier, userID, id int64, name *string, meta json.RawMessage, now time.Time) error {
	var metaArg *string
	if meta != nil {
		m := string(meta)
		metaArg = &m
	}
	tag, err := q.Exec(ctx, `UPDATE audio SET name = COALESCE($3, name), metadata = COALESCE($4::json, metadata), updated_at = $5
		WHERE id = $1 AND user_id = $2 AND COALESCE(state, '') NOT IN ('QUEUED', 'PROCESSING')`,
		id, userID, name, metaArg, now.UTC())
	if err != nil {
		return db.Interpret(fmt.Errorf("update audio %d of user %d: %w", id, userID, err), "audio")
	}
	if tag.RowsAffected() == 0 {
		// Missing, or busy: read which.
		a, err := GetAudio(ctx, q, userID, id)
		if err != nil {
			return err
		}
		return errBusy("Audio", a.State)
	}
	return nil
}

// DeleteAudio deletes the user's row (its video projects go with it by
// cascade) and returns the objects to delete: the audio and the projects'
// renders. The audio and its projects are locked first; if any of them is
// QUEUED or PROCESSING nothing changes (409), since its job would later
// upload to a key nothing deletes.
func DeleteAudio(ctx context.Context, c Conn, userID, id int64) ([]storage.Object, error) {
	var objs []storage.Object
	err := db.InTx(ctx, c, func(tx pgx.Tx) error {
		a, err := scanAudio(tx.QueryRow(ctx, `SELECT `+audioColumns+` FROM audio WHERE id = $1 AND user_id = $2 FOR UPDATE`, id, userID))
		if err != nil {
			return rowErr(err, ErrAudioNotFound, fmt.Sprintf("lock audio %d of user %d", id, userID))
		}
		if Busy(a.State) {
			return errBusy("Audio", a.State)
		}
		// Every project on this audio goes with it by cascade, whoever
		// owns it (legacy rows did not check the audio's owner).
		rows, err := tx.Query(ctx, `SELECT id, user_id, cdn_id, state FROM video_projects WHERE audio_id = $1 FOR UPDATE`, id)
		if err != nil {
			return fmt.Errorf("find projects of audio %d: %w", id, err)
		}
		type proj struct {
			id, userID int64
			cdnID      *string
			state      *string
		}
		projects, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (proj, error) {
			var p proj
			err := r.Scan(&p.id, &p.userID, &p.cdnID, &p.state)
			return p, err
		})
		if err != nil {
			return fmt.Errorf("find projects of audio %d: %w", id, err)
		}
		for _, p := range projects {
			if Busy(p.state) {
				return errBusy("A video project of this audio", p.state).WithField("video_project_id", p.id)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audio WHERE id = $1 AND user_id = $2`, id, userID); err != nil {
			return fmt.Errorf("delete audio %d of user %d: %w", id, userID, err)
		}
		objs = append(objs, storage.Object{Kind: storage.KindAudio, Key: storage.AudioKey(userID, a.CDNID)})
		for _, p := range projects {
			objs = append(objs, VideoObjects(p.userID, p.cdnID)...)
		}
		return nil
	})
	return objs, err
}

// LockAudioForJob locks the audio row id in tx q and returns its owner and
// metadata (the job queue reads what to enqueue from them).
func LockAudioForJob(ctx context.Context, q db.Querier, id int64) (userID int64, meta json.RawMessage, err error) {
	var raw []byte
	if err := q.QueryRow(ctx, `SELECT user_id, metadata FROM audio WHERE id = $1 FOR UPDATE`, id).Scan(&userID, &raw); err != nil {
		return 0, nil, fmt.Errorf("lock audio %d: %w", id, err)
	}
	return userID, raw, nil
}

// LockAudioState locks the audio row id in tx q and returns its state.
func LockAudioState(ctx context.Context, q db.Querier, id int64) (*string, error) {
	var state *string
	if err := q.QueryRow(ctx, `SELECT state FROM audio WHERE id = $1 FOR UPDATE`, id).Scan(&state); err != nil {
		return nil, fmt.Errorf("lock audio %d: %w", id, err)
	}
	return state, nil
}

// SetAudioState sets the legacy state column of the audio row id (the job
// queue mirrors its job's state there).
func SetAudioState(ctx context.Context, q db.Querier, id int64, state string) error {
	if _, err := q.Exec(ctx, `UPDATE audio SET state = $2 WHERE id = $1`, id, state); err != nil {
		return fmt.Errorf("set audio %d %s: %w", id, state, err)
	}
	return nil
}

// EnsureAudioStem returns the id of the user's audio row with cdnID,
// inserting it as a COMPLETED row (name cut to 256 bytes, size, metadata)
// when there is none yet, so that a re-run of a split finds the stems it
// stored before.
func EnsureAudioStem(ctx context.Context, q db.Querier, userID int64, cdnID, name string, size int, meta json.RawMessage) (int64, error) {
	var id int64
	err := q.QueryRow(ctx, `SELECT id FROM audio WHERE user_id = $1 AND cdn_id = $2`, userID, cdnID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		err = q.QueryRow(ctx, `
INSERT INTO audio (user_id, name, cdn_id, size, metadata, state) VALUES ($1, $2, $3, $4, $5::json, 'COMPLETED') RETURNING id`,
			userID, name, cdnID, size, string(meta)).Scan(&id)
	}
	if err != nil {
		return 0, fmt.Errorf("store audio stem %s of user %d: %w", cdnID, userID, err)
	}
	return id, nil
}

// FinishAudio writes a finished audio row's size, optional name and
// metadata changes (merged into the legacy JSON object), in tx q.
func FinishAudio(ctx context.Context, q db.Querier, id int64, name *string, size int, changes map[string]any) error {
	var raw []byte
	if err := q.QueryRow(ctx, `SELECT metadata FROM audio WHERE id = $1 FOR UPDATE`, id).Scan(&raw); err != nil {
		return fmt.Errorf("read audio %d: %w", id, err)
	}
	meta := map[string]any{}
	_ = json.Unmarshal(raw, &meta)
	for k, v := range changes {
		meta[k] = v
	}
	b, err := json.Marshal(meta)
	if err != nil {
		return fmt.Errorf("encode audio %d metadata: %w", id, err)
	}
	if _, err := q.Exec(ctx, `UPDATE audio SET size = $2, metadata = $3::json, name = COALESCE($4, name) WHERE id = $1`,
		id, size, string(b), name); err != nil {
		return fmt.Errorf("update audio %d: %w", id, err)
	}
	return nil
}

// QueuedRow is an audio row or video project in state QUEUED.
type QueuedRow struct {
	ID, UserID int64
	Metadata   json.RawMessage
}

// QueuedAudio returns up to limit QUEUED audio rows with an id above
// afterID, in id order (the job queue pages through them to adopt rows
// left without a job).
func QueuedAudio(ctx context.Context, q db.Querier, afterID int64, limit int) ([]QueuedRow, error) {
	return queuedRows(ctx, q, `SELECT id, user_id, metadata FROM audio WHERE state = 'QUEUED' AND id > $1 ORDER BY id LIMIT $2`,
		afterID, limit)
}

func queuedRows(ctx context.Context, q db.Querier, sql string, afterID int64, limit int) ([]QueuedRow, error) {
	rows, err := q.Query(ctx, sql, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("list queued rows: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueuedRow, error) {
		var o QueuedRow
		var meta []byte
		err := r.Scan(&o.ID, &o.UserID, &meta)
		o.Metadata = meta
		return o, err
	})
	if err != nil {
		return nil, fmt.Errorf("list queued rows: %w", err)
	}
	return out, nil
}
