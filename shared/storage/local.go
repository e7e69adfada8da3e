package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"

	"github.com/nounsai/sdserver/shared/apperr"
)

// Local keeps objects as files under a folder with the Bunny layout
// (<dir>/<user_id>/<cdn_id>-full.png, ...). Kinds share the folder: their
// key suffixes never collide. Writes go to a temporary file renamed into
// place, so readers never see half an object.
type Local struct {
	dir     string
	baseURL string
}

// NewLocal returns a Local backend over dir (created if missing) whose
// public URLs start with baseURL (no trailing slash).
func NewLocal(dir, baseURL string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("storage: empty local directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("storage: local directory %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create local directory: %w", err)
	}
	return &Local{dir: abs, baseURL: strings.TrimRight(baseURL, "/")}, nil
}

// Dir returns the absolute folder.
func (l *Local) Dir() string { return l.dir }

func (l *Local) path(key string) string { return filepath.Join(l.dir, filepath.FromSlash(key)) }

// Put implements Store.
func (l *Local) Put(ctx context.Context, kind Kind, key string, data []byte) error {
	if err := checkArgs(kind, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fail := func(err error) error {
		return apperr.Wrap(apperr.KindUnavailable, "Storage upload failed", fmt.Errorf("storage: local put %s: %w", key, err))
	}
	p := l.path(key)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fail(err)
	}
	// No fsync, as before: the rename alone keeps readers from half an
	// object, and this backend serves development and single hosts.
	tmp := f.Name()
	_, werr := f.Write(data)
	merr := f.Chmod(0o644) // CreateTemp makes 0600
	cerr := f.Close()
	if err := errors.Join(werr, merr, cerr); err != nil {
		_ = os.Remove(tmp)
		return fail(err)
	}
	if err := os.Rename(tmp, p); err != nil {
		_ = os.Remove(tmp)
		return fail(err)
	}
	return nil
}

// Get implements Store.
func (l *Local) Get(ctx context.Context, kind Kind, key string) ([]byte, error) {
	if err := checkArgs(kind, key); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p := l.path(key)
	st, err := os.Stat(p)
	if errors.Is(err, fs.ErrNotExist) || (err == nil && st.IsDir()) {
		return nil, fmt.Errorf("storage: local get %s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("storage: local get %s: %w", key, err)
	}
	if st.Size() > MaxObjectSize {
		return nil, fmt.Errorf("storage: local get %s: object larger than %d bytes", key, MaxObjectSize)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("storage: local get %s: %w", key, err)
	}
	return data, nil
}

// Delete implements Store.
func (l *Local) Delete(ctx context.Context, kind Kind, key string) error {
	if err := checkArgs(kind, key); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(l.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return apperr.Wrap(apperr.KindUnavailable, "Storage delete failed", fmt.Errorf("storage: local delete %s: %w", key, err))
	}
	return nil
}

// URL implements Store: <baseURL>/<key> for every kind.
func (l *Local) URL(_ Kind, key string) string {
	if l.baseURL == "" {
		return ""
	}
	return l.baseURL + "/" + key
}

// ServeHTTP serves GET and HEAD of an object whose key is the request path
// (mount it with http.StripPrefix("/media", ...)). Invalid keys, folders
// and missing files get 404 {"error":"Not found"}; there are no listings.
func (l *Local) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeJSONError(w, http.StatusMethodNotAllowed, "Method Not Allowed")
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/")
	if !ValidKey(key) {
		writeJSONError(w, http.StatusNotFound, "Not found")
		return
	}
	f, err := os.Open(l.path(key))
	if err != nil {
		writeJSONError(w, http.StatusNotFound, "Not found")
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		writeJSONError(w, http.StatusNotFound, "Not found")
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("Cache-Control", "public, max-age=300")
	http.ServeContent(w, r, st.Name(), st.ModTime(), f)
}

func writeJSONError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": msg})
}
