package libraryapi_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
	"github.com/nounsai/sdserver/shared/storage"
)

// hookRecorder records the ids the OnQueued hooks saw, and can fail.
type hookRecorder struct {
	table string // audio or video_projects
	mu    sync.Mutex
	ids   []int64
	fail  bool
}

func (h *hookRecorder) setFail(v bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.fail = v
}

func (h *hookRecorder) seen() []int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]int64(nil), h.ids...)
}

func (h *hookRecorder) hook(ctx context.Context, tx pgx.Tx, id int64) error {
	var state string
	if err := tx.QueryRow(ctx, `SELECT state FROM `+h.table+` WHERE id = $1`, id).Scan(&state); err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.fail {
		return errors.New("queue is down")
	}
	if state != "QUEUED" {
		return fmt.Errorf("hook saw state %q", state)
	}
	h.ids = append(h.ids, id)
	return nil
}

func TestAudioEndToEnd(t *testing.T) {
	t.Parallel()
	hooks := &hookRecorder{table: "audio"}
	env := lt.New(t, lt.Options{OnAudioQueued: hooks.hook})
	alice := env.NewUser(t, "alice@example.com")
	bob := env.NewUser(t, "bob@example.com")
	base := fmt.Sprintf("/users/%d/audios", alice.ID)

	// Upload: sanitised name, real size, sniffed content, object stored.
	data := mp3Bytes(1000)
	r := env.Do(t, http.MethodPost, base, alice.Token, lt.Upload("audio", "../../etc/passwd", data))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	up := r.Map(t)
	upID := int64(up["id"].(float64))
	obj, ok := env.Bunny.Object(lt.AudioZone, storage.AudioKey(alice.ID, up["cdn_id"].(string)))
	require.True(t, ok)
	require.Equal(t, data, obj)
	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, upID), alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	got := r.Map(t)
	require.Equal(t, "passwd", got["name"])
	require.EqualValues(t, len(data), got["size"])
	// Legacy: an upload's state is NULL and the single GET has no `queue`.
	require.Contains(t, got, "state")
	require.Nil(t, got["state"])
	require.NotContains(t, got, "queue")
	require.Equal(t, 1, count(t, env.Pool, `SELECT count(*) FROM audio WHERE id = $1 AND state IS NULL`, upID))

	r = env.Do(t, http.MethodPost, base, alice.Token, lt.Upload("audio", "x.mp3", []byte("<html>not audio at all</html>")))
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, string(r.Body), "not a supported audio file")
	r = env.Do(t, http.MethodPost, base, alice.Token, lt.Upload("file", "x.mp3", data))
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.JSONEq(t, `{"error":"No audio file detected"}`, string(r.Body))

	// Generation rows are QUEUED with the legacy metadata, and handed to the
	// queue hook inside the transaction.
	r = env.Do(t, http.MethodPost, "/audios", alice.Token, map[string]any{"text": "lofi beat"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	gen := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, "/audios", alice.Token, map[string]any{"text": "with melody", "melody_id": upID})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = env.Do(t, http.MethodPost, "/audios", bob.Token, map[string]any{"text": "bob steals a melody", "melody_id": upID})
	require.Equal(t, http.StatusNotFound, r.Status)
	r = env.Do(t, http.MethodPost, "/audios", alice.Token, map[string]any{"melody_id": upID})
	require.Equal(t, http.StatusBadRequest, r.Status)
	r = env.Do(t, http.MethodPost, "/audio-extend", alice.Token, map[string]any{"id": upID})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	ext := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, "/audio-split", alice.Token, map[string]any{"id": fmt.Sprint(upID)})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	split := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, "/audio-split", bob.Token, map[string]any{"id": upID})
	require.Equal(t, http.StatusNotFound, r.Status, "the parent must be the caller's (legacy S6)")
	require.JSONEq(t, `{"error":"Audio not found"}`, string(r.Body))
	require.Len(t, hooks.seen(), 4)

	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, ext), alice.Token, nil)
	row := r.Map(t)
	require.Equal(t, "extended-passwd", row["name"])
	require.Equal(t, "QUEUED", row["state"])
	require.EqualValues(t, 3, row["queue"], "third in the queue")
	require.Equal(t, map[string]any{"prompt": "", "parent_id": float64(upID), "mode": "audio extend"}, row["metadata"])
	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, gen), alice.Token, nil)
	row = r.Map(t)
	require.EqualValues(t, 1, row["queue"])
	require.Equal(t, "generated.mp3", row["name"])
	require.Equal(t, map[string]any{"prompt": "lofi beat", "mode": "text to audio", "melody_id": nil}, row["metadata"])
	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, split), alice.Token, nil)
	require.Equal(t, fmt.Sprintf("queuedSplit%d.mp3", upID), r.Map(t)["name"])
	_, err := env.Pool.Exec(context.Background(), `UPDATE audio SET state = 'PROCESSING' WHERE id = $1`, gen)
	require.NoError(t, err)
	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, gen), alice.Token, nil)
	require.EqualValues(t, 0, r.Map(t)["queue"])
	r = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, ext), alice.Token, nil)
	require.EqualValues(t, 2, r.Map(t)["queue"])
	// COMPLETED rows have "queue": null; ERROR rows no key, as NULL ones.
	_, err = env.Pool.Exec(context.Background(), `UPDATE audio SET state = 'COMPLETED' WHERE id = $1`, gen)
	require.NoError(t, err)
	row = env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, gen), alice.Token, nil).Map(t)
	require.Contains(t, row, "queue")
	require.Nil(t, row["queue"])
	_, err = env.Pool.Exec(context.Background(), `UPDATE audio SET state = 'ERROR' WHERE id = $1`, split)
	require.NoError(t, err)
	require.NotContains(t, env.Do(t, http.MethodGet, fmt.Sprintf("%s/%d", base, split), alice.Token, nil).Map(t), "queue")

	// A failing queue hook rolls the row back.
	hooks.setFail(true)
	before := count(t, env.Pool, `SELECT count(*) FROM audio`)
	r = env.Do(t, http.MethodPost, "/audios", alice.Token, map[string]any{"text": "x"})
	require.Equal(t, http.StatusInternalServerError, r.Status)
	require.Equal(t, before, count(t, env.Pool, `SELECT count(*) FROM audio`))
	hooks.setFail(false)

	// List, paged.
	r = env.Do(t, http.MethodGet, base+"?limit=2", alice.Token, nil)
	var list []map[string]any
	r.JSON(t, &list)
	require.Len(t, list, 2)
	require.NotContains(t, list[0], "queue")

	// PUT works (legacy C7).
	one := fmt.Sprintf("%s/%d", base, upID)
	r = env.Do(t, http.MethodPut, one, alice.Token, map[string]any{"name": "My song", "url": "ignored", "size": 1, "metadata": map[string]any{"bpm": 90}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	row = env.Do(t, http.MethodGet, one, alice.Token, nil).Map(t)
	require.Equal(t, "My song", row["name"])
	require.Equal(t, map[string]any{"bpm": float64(90)}, row["metadata"])
	require.EqualValues(t, len(data), row["size"])

	// DELETE removes the row, its projects and all their objects (legacy C8).
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/video-projects", alice.ID), alice.Token, map[string]any{"audio_id": upID, "metadata": map[string]any{}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	proj := int64(r.Map(t)["id"].(float64))
	_, err = env.Pool.Exec(context.Background(), `UPDATE video_projects SET cdn_id = 'render1', state = 'COMPLETED' WHERE id = $1`, proj)
	require.NoError(t, err)
	env.Bunny.Put(lt.VideoZone, storage.VideoKey(alice.ID, "render1"), []byte("mp4"))
	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	_, ok = env.Bunny.Object(lt.AudioZone, storage.AudioKey(alice.ID, up["cdn_id"].(string)))
	require.False(t, ok)
	_, ok = env.Bunny.Object(lt.VideoZone, storage.VideoKey(alice.ID, "render1"))
	require.False(t, ok)
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM video_projects WHERE id = $1`, proj))
	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
}
