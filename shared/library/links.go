package library

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/db"
)

// Link is one links row. Times are UTC.
type Link struct {
	ID        int64
	UserID    int64
	ShareID   string // "" for links created before share ids
	Metadata  json.RawMessage
	CreatedAt time.Time
	UpdatedAt time.Time
}

// ErrLinkNotFound is the legacy not-found error of the link routes.
var ErrLinkNotFound = apperr.NotFound("Link not found").WithKey("error")

const linkColumns = `id, user_id, COALESCE(share_id, ''), metadata, created_at, updated_at`

func scanLink(row pgx.Row) (Link, error) {
	var l Link
	var meta []byte
	if err := row.Scan(&l.ID, &l.UserID, &l.ShareID, &meta, &l.CreatedAt, &l.UpdatedAt); err != nil {
		return Link{}, err
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

// LinkRef is a link reference from a path: a legacy numeric id or a share
// id.
type LinkRef struct {
	id      int64
	shareID string
}

// ParseLinkRef parses a path's link reference; ok is false when it is
// neither an id nor a share id.
func ParseLinkRef(s string) (ref LinkRef, ok bool) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return LinkRef{id: n}, n > 0 && n <= 1<<31-1
	}
	return LinkRef{shareID: s}, validShareID(s)
}

// CreateLink inserts a link of the user with a new share id.
func CreateLink(ctx context.Context, q db.Querier, userID int64, meta json.RawMessage, now time.Time) (Link, error) {
	share, err := newShareID()
	if err != nil {
		return Link{}, err
	}
	l, err := scanLink(q.QueryRow(ctx, `INSERT INTO links (user_id, share_id, metadata, created_at, updated_at)
		VALUES ($1, $2, $3::json, $4, $4) RETURNING `+linkColumns, userID, share, string(meta), now.UTC()))
	if err != nil {
		return Link{}, fmt.Errorf("insert link for user %d: %w", userID, err)
	}
	return l, nil
}

// ListLinks returns a page of the user's links, newest first.
func ListLinks(ctx context.Context, q db.Querier, userID int64, offset, limit int) ([]Link, error) {
	rows, err := q.Query(ctx, `SELECT `+linkColumns+` FROM links WHERE user_id = $1 ORDER BY id DESC OFFSET $2 LIMIT $3`,
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

// SharedLink returns the link a share reference names: a share id, or a
// numeric id of a link created before share ids existed (share_id NULL).
// Newer links cannot be read by their sequential id (legacy S6).
func SharedLink(ctx context.Context, q db.Querier, ref LinkRef) (Link, error) {
	var row pgx.Row
	if ref.shareID != "" {
		row = q.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE share_id = $1`, ref.shareID)
	} else {
		row = q.QueryRow(ctx, `SELECT `+linkColumns+` FROM links WHERE id = $1 AND share_id IS NULL`, ref.id)
	}
	l, err := scanLink(row)
	if err != nil {
		return Link{}, rowErr(err, ErrLinkNotFound, "get shared link")
	}
	return l, nil
}

// ownedLinkWhere is the WHERE clause matching the user's link by either id.
const ownedLinkWhere = `user_id = $1 AND (($2::bigint > 0 AND id = $2) OR ($3 <> '' AND share_id = $3))`

// UpdateLink sets the metadata of the user's link.
func UpdateLink(ctx context.Context, q db.Querier, userID int64, ref LinkRef, meta json.RawMessage, now time.Time) error {
	tag, err := q.Exec(ctx, `UPDATE links SET metadata = $4::json, updated_at = $5 WHERE `+ownedLinkWhere,
		userID, ref.id, ref.shareID, string(meta), now.UTC())
	if err != nil {
		return fmt.Errorf("update link of user %d: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLinkNotFound
	}
	return nil
}

// DeleteLink deletes the user's link.
func DeleteLink(ctx context.Context, q db.Querier, userID int64, ref LinkRef) error {
	tag, err := q.Exec(ctx, `DELETE FROM links WHERE `+ownedLinkWhere, userID, ref.id, ref.shareID)
	if err != nil {
		return fmt.Errorf("delete link of user %d: %w", userID, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrLinkNotFound
	}
	return nil
}
