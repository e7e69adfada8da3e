package libraryapi

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/nounsai/sdserver/shared/apperr"
)

// link is one links row.
type link struct {
	ID        int64
	UserID    int64
	ShareID   string // "" for links created before share ids
	Metadata  json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
}

var errLinkNotFound = apperr.NotFound("Link not found").WithKey("error")

type linkStore struct {
	pool *pgxpool.Pool
	now  func() time.Time
}

const linkColumns = `id, user_id, COALESCE(share_id, ''), metadata, created_at, updated_at`

func scanLink(row pgx.Row) (link, error) {
	var l link
	var meta []byte
	if err := row.Scan(&l.ID, &l.UserID, &l.ShareID, &meta, &l.CreatedAt, &l.UpdatedAt); err != nil {
		return link{}, err
	}
	l.Metadata = meta
	l.CreatedAt, l.UpdatedAt = l.CreatedAt.UTC(), l.UpdatedAt.UTC()
	return l, nil
}

// newShareID returns 128 random bits, base64url without padding (22
// characters).
func newShareID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("read random share id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// validShareID reports whether s looks like a share id.
func validShareID(s string) bool {
	if len(s) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(s)
	return err == nil
}

// linkRef is a link reference from a path: a legacy numeric id or a share
// id.
type linkRef struct {
	id      int64
	shareID string
}

func parseLinkRef(s string) (linkRef, bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return linkRef{id: n}, n > 0 && n <= 1<<31-1
	}
	return linkRef{shareID: s}, validShareID(s)
}

func (s *linkStore) create(ctx context.Context, userID int64, meta json.RawMessage) (link, error) {
	share, err := newShareID()
	if err != nil {
		return link{}, err
	}
	now := s.now().UTC()
	l, err := scanLink(s.pool.QueryRow(ctx, `INSERT INTO links (user_id, share_id, metadata, created_at, updated_at)
		VALUES ($1, $2, $3::json, $4, $4) RETURNING `+linkColumns, userID, share, string(meta), now))
	if err != nil {
		return link{}, fmt.Errorf("insert link for user %d: %w", userID, err)
	}
	return l, nil
}

func (s *linkStore) list(ctx context.Context, userID int64, offset, limit int) ([]link, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+linkColumns+` FROM links WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
		userID, offset, limit)
	if err != nil {
		return nil, fmt.Errorf("list links of user %d: %w", userID, err)
	}
	out, err := scanAll(rows, scanLink)
	if err != nil {
		return nil, fmt.Errorf("list links of user %d: %w", userID, err)
	}
	return out, nil
}

// shared returns the link a share reference names: a share id, or a
// numeric id of a link created before share ids existed (share_id NULL).
// Newer links cannot be read by their sequential id (legacy S6).
func (s *linkStore) shared(ctx context.Context, ref linkRef) (link, error) {
	var row pgx.Row
	if ref.shareID != "" {
		row = s.pool.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE share_id = $1`, ref.shareID)
	} else {
		row = s.pool.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE id = $1 AND share_id IS NULL`, ref.id)
	}
	l, err := scanLink(row)
	if err != nil {
		return link{}, rowErr(err, errLinkNotFound, "get shared link")
	}
	return l, nil
}

// ownedWhere is the WHERE clause matching the user's link by either id.
const ownedWhere = `user_id = $1 AND (($2::bigint > 0 AND id = $2) OR ($3 <> '' AND share_id = $3))`

func (s *linkStore) update(ctx context.Context, userID int64, ref linkRef, meta json.RawMessage) error {
	tag, err := s.pool.Exec(ctx, `UPDATE links SET metadata = $4::json, updated_at = $5 WHERE `+ownedWhere,
		userID, ref.id, ref.shareID, string(meta), s.now().UTC())
	if err != nil {
		return fmt.Errorf("update link of user %d: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return errLinkNotFound
	}
	return nil
}

func (s *linkStore) delete(ctx context.Context, userID int64, ref linkRef) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM links WHERE `+ownedWhere, userID, ref.id, ref.shareID)
	if err != nil {
		return fmt.Errorf("delete link of user %d: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return errLinkNotFound
	}
	return nil
}
