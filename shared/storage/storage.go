// Package storage keeps media objects (images, thumbnails, audio, videos)
// in one of two backends with the legacy BunnyCDN object layout: the
// BunnyCDN Storage API (one storage zone per kind) or a local folder (the
// default of the local stack, served at GET /media/...).
//
// Keys are "<user_id>/<cdn_id>-full.png", "-thumbnail.png", "-full.mp3" and
// "-full.mp4" (see the Key functions). Every operation is synchronous and
// reports failure (DeleteOrphans logs it instead): callers upload before they insert a row and delete
// objects after the row is gone, so that no row ever points at a missing
// object.
//
// This package must never touch the database or know about users beyond
// the id in a key, and must never log or return access keys.
package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Kind is the kind of an object; each kind has its own Bunny storage zone
// and public pull-zone base URL.
type Kind string

// The object kinds.
const (
	KindImage Kind = "image" // full images and thumbnails
	KindAudio Kind = "audio" // audio (mp3 keys)
	KindVideo Kind = "video" // uploaded clips and rendered projects (mp4 keys)
)

// ErrNotFound is wrapped by Get when the object does not exist.
var ErrNotFound = errors.New("storage object not found")

// Store keeps objects. Implementations are safe for concurrent use.
type Store interface {
	// Put stores data under key in kind's zone, replacing any object there.
	// A failure is an *apperr.Error of kind BadGateway (remote) or
	// Unavailable (local disk) whose cause names the key.
	Put(ctx context.Context, kind Kind, key string, data []byte) error
	// Get returns the object's bytes; a missing object gives an error
	// wrapping ErrNotFound. Objects larger than MaxObjectSize are refused.
	Get(ctx context.Context, kind Kind, key string) ([]byte, error)
	// Delete removes the object. Deleting a missing object is not an error.
	Delete(ctx context.Context, kind Kind, key string) error
	// URL returns the public URL of the object, or "" when no public base
	// is configured for kind.
	URL(kind Kind, key string) string
}

// MaxObjectSize bounds the objects Get reads into memory (512 MiB).
const MaxObjectSize = 512 << 20

// Object names one stored object.
type Object struct {
	Kind Kind
	Key  string
}

// ImageKey is the key of a full image: "<userID>/<cdnID>-full.png". The
// bytes may be any image format (legacy uploads keep their original bytes).
func ImageKey(userID int64, cdnID string) string { return key(userID, cdnID, "-full.png") }

// ThumbnailKey is the key of an image's thumbnail:
// "<userID>/<cdnID>-thumbnail.png".
func ThumbnailKey(userID int64, cdnID string) string { return key(userID, cdnID, "-thumbnail.png") }

// AudioKey is the key of an audio file: "<userID>/<cdnID>-full.mp3".
func AudioKey(userID int64, cdnID string) string { return key(userID, cdnID, "-full.mp3") }

// VideoKey is the key of a video (uploaded clip or rendered project):
// "<userID>/<cdnID>-full.mp4".
func VideoKey(userID int64, cdnID string) string { return key(userID, cdnID, "-full.mp4") }

// ImageObjects returns the full image and thumbnail objects of an image.
func ImageObjects(userID int64, cdnID string) []Object {
	return []Object{{KindImage, ImageKey(userID, cdnID)}, {KindImage, ThumbnailKey(userID, cdnID)}}
}

func key(userID int64, cdnID, suffix string) string {
	return strconv.FormatInt(userID, 10) + "/" + cdnID + suffix
}

// ValidKey reports whether key is a safe object key: 1 to 8 slash-separated
// segments of [A-Za-z0-9._-], none empty, "." or "..", at most 512 bytes.
// Every backend refuses other keys, so a key can never escape its zone or
// folder.
func ValidKey(key string) bool {
	if key == "" || len(key) > 512 {
		return false
	}
	segs := strings.Split(key, "/")
	if len(segs) > 8 {
		return false
	}
	for _, s := range segs {
		if s == "" || s == "." || s == ".." {
			return false
		}
		for i := 0; i < len(s); i++ {
			c := s[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				return false
			}
		}
	}
	return true
}

func validKind(k Kind) bool { return k == KindImage || k == KindAudio || k == KindVideo }

func checkArgs(kind Kind, key string) error {
	if !validKind(kind) {
		return fmt.Errorf("storage: unknown kind %q", kind)
	}
	if !ValidKey(key) {
		return fmt.Errorf("storage: invalid key %q", key)
	}
	return nil
}

// OrphanTimeout bounds DeleteOrphans.
const OrphanTimeout = 30 * time.Second

// DeleteOrphans deletes objects whose row is already gone (or was never
// inserted), going on after a failure. It runs even when ctx is already
// cancelled (the row change has committed), for at most OrphanTimeout.
// Failures are logged on log, not returned: an orphaned object is harmless,
// whereas a row pointing at a missing object is not, so the caller's work
// is done either way.
func DeleteOrphans(ctx context.Context, s Store, objs []Object, log *zap.Logger) {
	if len(objs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), OrphanTimeout)
	defer cancel()
	var errs []error
	for _, o := range objs {
		if err := s.Delete(ctx, o.Kind, o.Key); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Warn("delete storage objects failed", zap.Int("objects", len(objs)), zap.Error(err))
	}
}

// New returns the backend cfg selects (cfg should have passed Validate).
func New(cfg Config) (Store, error) {
	switch cfg.Backend {
	case BackendLocal:
		return NewLocal(cfg.Dir, cfg.LocalURL)
	case BackendBunny:
		return NewBunny(cfg.Bunny(), nil), nil
	}
	return nil, fmt.Errorf("storage: unknown backend %q", cfg.Backend)
}
