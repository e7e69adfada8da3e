package libraryapi

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/storage"
)

// newAudio is an audio row to create.
type newAudio struct {
	UserID   int64
	Name     string
	Size     int64
	Metadata any
	// State is library.StateQueued for jobs, or "" (NULL, as legacy) for
	// uploads.
	State string
	// Upload, when set, is stored under the row's key before the insert.
	Upload []byte
}

// createAudio inserts the row (uploading its bytes first, if any). A
// QUEUED row gets its job in the same transaction; on failure the upload
// is deleted again.
func (a *API) createAudio(ctx context.Context, n newAudio) (library.Audio, error) {
	cdnID := uuid.NewString()
	key := storage.AudioKey(n.UserID, cdnID)
	if n.Upload != nil {
		if err := a.opts.Storage.Put(ctx, storage.KindAudio, key, n.Upload); err != nil {
			return library.Audio{}, err
		}
	}
	var out library.Audio
	err := db.InTx(ctx, a.opts.Pool, func(tx pgx.Tx) error {
		row, err := library.InsertAudio(ctx, tx, library.NewAudio{UserID: n.UserID, Name: n.Name, CDNID: cdnID, Size: n.Size,
			Metadata: n.Metadata, State: n.State, Now: a.opts.Now()})
		if err != nil {
			return err
		}
		if n.State == library.StateQueued && a.opts.Jobs != nil {
			if err := a.opts.Jobs.OnAudioQueued(ctx, tx, row.ID); err != nil {
				return fmt.Errorf("queue audio %d: %w", row.ID, err)
			}
		}
		out = row
		return nil
	})
	if err != nil {
		if n.Upload != nil {
			_ = a.opts.Storage.Delete(context.WithoutCancel(ctx), storage.KindAudio, key)
		}
		return library.Audio{}, err
	}
	return out, nil
}

// queueProject puts the caller's project into QUEUED (library.QueueProject)
// and enqueues its render in the same transaction. It returns the previous
// render's object, to delete once the change has committed.
func (a *API) queueProject(ctx context.Context, userID, id int64) ([]storage.Object, error) {
	var old []storage.Object
	err := db.InTx(ctx, a.opts.Pool, func(tx pgx.Tx) error {
		var err error
		if old, err = library.QueueProject(ctx, tx, userID, id, a.opts.Now()); err != nil {
			return err
		}
		if a.opts.Jobs != nil {
			if err := a.opts.Jobs.OnProjectQueued(ctx, tx, id); err != nil {
				return fmt.Errorf("queue video project %d: %w", id, err)
			}
		}
		return nil
	})
	return old, err
}
