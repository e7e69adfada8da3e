package generate

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/library"
)

// NoParent is the legacy parent_id of an image without a parent.
const NoParent = -1

// Parents finds the parent of a generated image (legacy defect C4 fixed):
// the request's parent_id when it names an image the caller may see (their
// own or a public one), else the caller's own image, or failing that a
// public image, whose stored bytes hash like the input image.
type Parents struct {
	pool *pgxpool.Pool
}

// NewParents returns a Parents over pool.
func NewParents(pool *pgxpool.Pool) *Parents { return &Parents{pool: pool} }

// Resolve returns the parent id, or NoParent. requested is the request's
// parent_id (nil when absent); inputHash the SHA-256 of the input image's
// bytes ("" for Text to Image).
func (p *Parents) Resolve(ctx context.Context, userID int64, requested *int64, inputHash string) (int64, error) {
	if requested != nil && *requested > 0 {
		ok, err := library.VisibleImageID(ctx, p.pool, userID, *requested)
		if err != nil {
			return 0, fmt.Errorf("check parent image: %w", err)
		}
		if ok {
			return *requested, nil
		}
	}
	if inputHash == "" {
		return NoParent, nil
	}
	id, ok, err := library.ImageIDByHash(ctx, p.pool, userID, inputHash)
	if err != nil {
		return 0, fmt.Errorf("find parent image: %w", err)
	}
	if !ok {
		return NoParent, nil
	}
	return id, nil
}
