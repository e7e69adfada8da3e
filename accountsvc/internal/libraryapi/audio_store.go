package libraryapi

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/storage"
)

// Audio and project states.
const (
	stateQueued     = "QUEUED"
	stateProcessing = "PROCESSING"
	stateCompleted  = "COMPLETED"
	stateUnfinished = "UNFINISHED"
)

// audio is one audio row.
type audio struct {
	ID        int64
	UserID    int64
	Name      string
	CDNID     string
	Size      int64
	Metadata  json.RawMessage
	State     *string
	CreatedAt time.Time
	UpdatedAt time.Time
}

var errAudioNotFound = apperr.NotFound("Audio not found").WithKey("error")

type audioStore struct {
	pool     *pgxpool.Pool
	now      func() time.Time
	onQueued QueuedFunc
}

const audioColumns = `id, user_id, name, cdn_id, size, metadata, state, created_at, updated_at`

func scanAudio(row pgx.Row) (audio, error) {
	var a audio
	var meta []byte
	if err := row.Scan(&a.ID, &a.UserID, &a.Name, &a.CDNID, &a.Size, &meta, &a.State, &a.CreatedAt, &a.UpdatedAt); err != nil {
		return audio{}, err
	}
	a.Metadata = meta
	a.CreatedAt, a.UpdatedAt = a.CreatedAt.UTC(), a.UpdatedAt.UTC()
	return a, nil
}

// newAudio is a row to insert.
type newAudio struct {
	UserID   int64
	Name     string
	Size     int64
	Metadata any
	// State is stateQueued for jobs, or "" (NULL, as legacy) for uploads.
	State string
	// Upload, when set, is stored under the row's key before the insert.
	Upload []byte
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && (s[n]&0xC0) == 0x80 {
		n--
	}
	return s[:n]
}

// create inserts the row (uploading its bytes first, if any). A QUEUED row
// gets queued_at and runs the onQueued hook in the same transaction.
func (s *audioStore) create(ctx context.Context, st storage.Store, n newAudio) (audio, error) {
	meta, err := json.Marshal(n.Metadata)
	if err != nil {
		return audio{}, fmt.Errorf("marshal audio metadata: %w", err)
	}
	cdnID := uuid.NewString()
	key := storage.AudioKey(n.UserID, cdnID)
	if n.Upload != nil {
		if err := st.Put(ctx, storage.KindAudio, key, n.Upload); err != nil {
			return audio{}, err
		}
	}
	now := s.now().UTC()
	var queuedAt *time.Time
	if n.State == stateQueued {
		queuedAt = &now
	}
	var out audio
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := scanAudio(tx.QueryRow(ctx, `INSERT INTO audio (user_id, name, cdn_id, size, metadata, state, queued_at, created_at, updated_at)
			VALUES ($1, $2, $3, $4, $5::json, NULLIF($6, ''), $7, $8, $8) RETURNING `+audioColumns,
			n.UserID, truncate(n.Name, 256), cdnID, n.Size, string(meta), n.State, queuedAt, now))
		if err != nil {
			return db.Interpret(fmt.Errorf("insert audio for user %d: %w", n.UserID, err), "audio")
		}
		if n.State == stateQueued && s.onQueued != nil {
			if err := s.onQueued(ctx, tx, a.ID); err != nil {
				return fmt.Errorf("queue audio %d: %w", a.ID, err)
			}
		}
		out = a
		return nil
	})
	if err != nil {
		if n.Upload != nil {
			_ = st.Delete(context.WithoutCancel(ctx), storage.KindAudio, key)
		}
		return audio{}, err
	}
	return out, nil
}

func (s *audioStore) get(ctx context.Context, userID, id int64) (audio, error) {
	a, err := scanAudio(s.pool.QueryRow(ctx, `SELECT `+audioColumns+` FROM audio WHERE id = $1 AND user_id = $2`, id, userID))
	if err != nil {
		return audio{}, rowErr(err, errAudioNotFound, fmt.Sprintf("get audio %d of user %d", id, userID))
	}
	return a, nil
}

// queuePosition returns the 1-based position of a QUEUED row among every
// user's queued rows, by queue time (legacy: creation order).
func (s *audioStore) queuePosition(ctx context.Context, id int64) (int64, error) {
	var n int64
	err := s.pool.QueryRow(ctx, `
		WITH me AS (SELECT COALESCE(queued_at, updated_at) AS t, id FROM audio WHERE id = $1)
		SELECT count(*) FROM audio, me
		WHERE audio.state = 'QUEUED' AND (COALESCE(audio.queued_at, audio.updated_at), audio.id) <= (me.t, me.id)`, id).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("queue position of audio %d: %w", id, err)
	}
	return n, nil
}

func (s *audioStore) list(ctx context.Context, userID int64, offset, limit int) ([]audio, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+audioColumns+` FROM audio WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
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

// busy reports whether state is one a job is working on (QUEUED or
// PROCESSING): such rows must not change under the job or lose their row.
func busy(state *string) bool {
	return state != nil && (*state == stateQueued || *state == stateProcessing)
}

// errBusy is the 409 for a change to a row (what: "Audio", "Video
// project") whose job is QUEUED or PROCESSING.
func errBusy(what string, state *string) *apperr.Error {
	st := stateQueued
	if state != nil {
		st = *state
	}
	return apperr.Conflict(what+" is "+strings.ToLower(st)+
		"; cancel its job first (DELETE /v1/jobs/<id>)").WithField("state", st)
}

// update sets name (when not nil) and metadata (when not nil). A QUEUED or
// PROCESSING row is left alone (409).
func (s *audioStore) update(ctx context.Context, userID, id int64, name *string, meta json.RawMessage) error {
	var metaArg *string
	if meta != nil {
		m := string(meta)
		metaArg = &m
	}
	tag, err := s.pool.Exec(ctx, `UPDATE audio SET name = COALESCE($3, name), metadata = COALESCE($4::json, metadata), updated_at = $5
		WHERE id = $1 AND user_id = $2 AND COALESCE(state, '') NOT IN ('QUEUED', 'PROCESSING')`,
		id, userID, name, metaArg, s.now().UTC())
	if err != nil {
		return db.Interpret(fmt.Errorf("update audio %d of user %d: %w", id, userID, err), "audio")
	}
	if tag.RowsAffected() == 0 {
		// Missing, or busy: read which.
		a, err := s.get(ctx, userID, id)
		if err != nil {
			return err
		}
		return errBusy("Audio", a.State)
	}
	return nil
}

// delete deletes the row (its video projects go with it by cascade) and
// returns the objects to delete: the audio and the projects' renders. The
// audio and its projects are locked first; if any of them is QUEUED or
// PROCESSING nothing changes (409), since its job would later upload to a
// key nothing deletes.
func (s *audioStore) delete(ctx context.Context, userID, id int64) ([]storage.Object, error) {
	var objs []storage.Object
	err := db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		a, err := scanAudio(tx.QueryRow(ctx, `SELECT `+audioColumns+` FROM audio WHERE id = $1 AND user_id = $2 FOR UPDATE`, id, userID))
		if err != nil {
			return rowErr(err, errAudioNotFound, fmt.Sprintf("lock audio %d of user %d", id, userID))
		}
		if busy(a.State) {
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
			if busy(p.state) {
				return errBusy("A video project of this audio", p.state).WithField("video_project_id", p.id)
			}
		}
		if _, err := tx.Exec(ctx, `DELETE FROM audio WHERE id = $1 AND user_id = $2`, id, userID); err != nil {
			return fmt.Errorf("delete audio %d of user %d: %w", id, userID, err)
		}
		objs = append(objs, storage.Object{Kind: storage.KindAudio, Key: storage.AudioKey(userID, a.CDNID)})
		for _, p := range projects {
			objs = append(objs, videoObjects(p.userID, p.cdnID)...)
		}
		return nil
	})
	return objs, err
}
