package generate

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
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
		var id int64
		err := p.pool.QueryRow(ctx, `SELECT id::bigint FROM images WHERE id = $1 AND (user_id = $2 OR is_public)`,
			*requested, userID).Scan(&id)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return 0, fmt.Errorf("check parent image %d for user %d: %w", *requested, userID, err)
		}
	}
	if inputHash == "" {
		return NoParent, nil
	}
	var id int64
	err := p.pool.QueryRow(ctx, `SELECT id::bigint FROM images
		WHERE hash = $2 AND (user_id = $1 OR is_public)
		ORDER BY (user_id = $1) DESC, id LIMIT 1`, userID, inputHash).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return NoParent, nil
	}
	if err != nil {
		return 0, fmt.Errorf("find parent image by hash for user %d: %w", userID, err)
	}
	return id, nil
}
