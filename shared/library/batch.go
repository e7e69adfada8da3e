package library

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/db"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/storage"
)

// Batch is a set of images whose objects are uploaded but whose rows are
// not inserted yet (Images.Stage). Its rows are inserted in the caller's
// transaction (Insert), so that they commit together with something else
// (the settlement of the request's charge, the end of a job): the images
// appear in the library exactly when that commits. Close must be called
// once the transaction has ended; it deletes the objects no committed row
// points at. A Batch is not safe for concurrent use.
type Batch struct {
	s     *Images
	items []batchItem
	// inserted reports, per item, whether Insert created its row (in a
	// transaction that may still roll back).
	inserted []bool
	closed   bool
}

type batchItem struct {
	n     NewImage
	meta  []byte
	cdnID string
	objs  []storage.Object
}

// Stage validates the images, makes their thumbnails and uploads their
// objects under new cdn_ids, outside any transaction (as Create does). An
// upload failure deletes what was uploaded and returns the error. Nothing
// is in the library until Insert's transaction commits.
func (s *Images) Stage(ctx context.Context, ns []NewImage) (*Batch, error) {
	b := &Batch{s: s}
	for i, n := range ns {
		if n.UserID <= 0 || len(n.Data) == 0 {
			return nil, errors.New("stage image: user id and data are required")
		}
		if n.Hash == "" {
			n.Hash = media.Hash(n.Data)
		}
		meta, err := marshalMetadata(n.Metadata)
		if err != nil {
			return nil, err
		}
		if n.Thumbnail == nil {
			img := n.Decoded
			if img == nil {
				if img, _, err = media.Decode(n.Data, media.DefaultLimits); err != nil {
					return nil, err
				}
			}
			if n.Thumbnail, err = media.ThumbnailPNG(img); err != nil {
				return nil, fmt.Errorf("stage image %d: %w", i, err)
			}
		}
		b.items = append(b.items, batchItem{n: n, meta: meta, cdnID: s.NewID()})
	}
	for i := range b.items {
		it := &b.items[i]
		objs := storage.ImageObjects(it.n.UserID, it.cdnID)
		for j, data := range [][]byte{it.n.Data, it.n.Thumbnail} {
			if err := s.storage.Put(ctx, objs[j].Kind, objs[j].Key, data); err != nil {
				b.Close(ctx, false)
				return nil, err
			}
			it.objs = append(it.objs, objs[j])
		}
	}
	b.inserted = make([]bool, len(b.items))
	return b, nil
}

// Insert inserts the batch's rows in tx, in order, with the per-user dedup
// of Create: an image the user already has (or that an earlier item of the
// batch inserted) is returned with created false and its new objects are
// deleted at Close. Hash locks are taken in hash order, so that two
// batches of the same user cannot deadlock. The result lists the images in
// the batch's order.
func (b *Batch) Insert(ctx context.Context, tx pgx.Tx) ([]Image, []bool, error) {
	order := make([]int, len(b.items))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(x, y int) int { return strings.Compare(b.items[x].n.Hash, b.items[y].n.Hash) })
	out := make([]Image, len(b.items))
	created := make([]bool, len(b.items))
	now := b.s.Now().UTC()
	for _, i := range order {
		it := b.items[i]
		existing, found, err := lockAndFind(ctx, tx, it.n.UserID, it.n.Hash)
		if err != nil {
			return nil, nil, err
		}
		if found {
			out[i] = existing
			continue
		}
		if out[i], err = insertImage(ctx, tx, it.n, it.meta, it.cdnID, now); err != nil {
			return nil, nil, err
		}
		created[i] = true
	}
	copy(b.inserted, created)
	return out, created, nil
}

// Close ends the batch after the transaction of Insert has ended:
// committed reports whether it committed. It deletes the objects of every
// item without a committed row (all of them when it rolled back or Insert
// never ran). It runs even when ctx is cancelled; failures are logged.
// Calling it again does nothing.
func (b *Batch) Close(ctx context.Context, committed bool) {
	if b.closed {
		return
	}
	b.closed = true
	var orphans []storage.Object
	for i, it := range b.items {
		if committed && i < len(b.inserted) && b.inserted[i] {
			continue
		}
		orphans = append(orphans, it.objs...)
	}
	b.s.deleteObjects(ctx, orphans)
}

// CreateAll stores several images at once: it uploads their objects
// (Stage), then inserts their rows in one transaction together with
// within (when non-nil), which runs in the same transaction after the
// inserts, and commits. When within fails, nothing is inserted and its
// error is returned; either way no object is left without a row.
func (s *Images) CreateAll(ctx context.Context, ns []NewImage, within func(ctx context.Context, tx pgx.Tx) error) ([]Image, []bool, error) {
	b, err := s.Stage(ctx, ns)
	if err != nil {
		return nil, nil, err
	}
	var (
		out     []Image
		created []bool
	)
	// atCommit is set when the transaction got as far as its commit: a
	// failed commit may still have committed, so then the objects of the
	// inserted rows are kept (a leaked object, never a row without one).
	atCommit := false
	err = db.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		var err error
		if out, created, err = b.Insert(ctx, tx); err != nil {
			return err
		}
		if within != nil {
			if err := within(ctx, tx); err != nil {
				return err
			}
		}
		atCommit = true
		return nil
	})
	b.Close(ctx, atCommit)
	if err != nil {
		return nil, nil, err
	}
	return out, created, nil
}
