package libraryapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
	"github.com/nounsai/sdserver/shared/storage"
)

func TestVideoProjectsEndToEnd(t *testing.T) {
	t.Parallel()
	hooks := &hookRecorder{table: "video_projects"}
	env := lt.New(t, lt.Options{OnProjectQueued: hooks.hook})
	alice := env.NewUser(t, "alice@example.com")
	bob := env.NewUser(t, "bob@example.com")
	ctx := context.Background()

	upload := func(u lt.User) int64 {
		r := env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", u.ID), u.Token, lt.Upload("audio", "a.mp3", mp3Bytes(int(u.ID))))
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		return int64(r.Map(t)["id"].(float64))
	}
	image := func(u lt.User, seed byte) int64 {
		r := env.Do(t, http.MethodPost, "/user-images", u.Token, lt.Upload("image", "i.png", pngOf(t, 8, 8, seed)))
		require.Equal(t, http.StatusOK, r.Status, string(r.Body))
		return int64(r.Map(t)["id"].(float64))
	}
	aliceAudio, bobAudio := upload(alice), upload(bob)
	img1, img2, bobImg := image(alice, 1), image(alice, 2), image(bob, 3)
	base := fmt.Sprintf("/users/%d/video-projects", alice.ID)

	// Create: the audio must be the caller's (legacy S6).
	r := env.Do(t, http.MethodPost, base, alice.Token, map[string]any{"audio_id": bobAudio, "metadata": map[string]any{}})
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, string(r.Body), fmt.Sprintf("Audio %d", bobAudio))
	r = env.Do(t, http.MethodPost, base, alice.Token, map[string]any{"audio_id": "nope"})
	require.Equal(t, http.StatusBadRequest, r.Status)
	meta := map[string]any{"timestamps": []any{0, "1.5", 3}, "imageIds": []any{img1, fmt.Sprint(img2), bobImg}, "prompts": []string{"a", "", "c"}}
	r = env.Do(t, http.MethodPost, base, alice.Token, map[string]any{"audio_id": aliceAudio, "metadata": meta})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	id := int64(r.Map(t)["id"].(float64))
	one := fmt.Sprintf("%s/%d", base, id)

	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, []string{"audio_id", "cdn_id", "created_at", "id", "metadata", "state", "updated_at", "user_id"}, keysOf(t, r.Body))
	require.Equal(t, "UNFINISHED", r.Map(t)["state"])
	r = env.Do(t, http.MethodGet, base, alice.Token, nil)
	var list []map[string]any
	r.JSON(t, &list)
	require.Len(t, list, 1)
	require.Equal(t, "a.mp3", list[0]["audio_name"])
	require.NotEmpty(t, list[0]["audio_cdn_id"])

	// Queue: a foreign image id is a 400 naming it, and nothing changes.
	queue := fmt.Sprintf("/video-projects/%d/queue", id)
	r = env.Do(t, http.MethodPost, queue, alice.Token, nil)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, r.Map(t)["message"], fmt.Sprintf("Image %d", bobImg))
	require.Equal(t, "UNFINISHED", env.Do(t, http.MethodGet, one, alice.Token, nil).Map(t)["state"])

	meta["imageIds"] = []any{img1, img2}
	r = env.Do(t, http.MethodPut, one, alice.Token, map[string]any{"metadata": meta})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	// A previous render exists: re-queueing deletes it (after the commit).
	_, err := env.Pool.Exec(ctx, `UPDATE video_projects SET cdn_id = 'old-render' WHERE id = $1`, id)
	require.NoError(t, err)
	env.Bunny.Put(lt.VideoZone, storage.VideoKey(alice.ID, "old-render"), []byte("mp4"))
	start := time.Now().UTC().Add(-time.Second)
	r = env.Do(t, http.MethodPost, queue, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.JSONEq(t, `{"status":"success"}`, string(r.Body))
	require.Equal(t, []int64{id}, hooks.seen())
	got := env.Do(t, http.MethodGet, one, alice.Token, nil).Map(t)
	require.Equal(t, "QUEUED", got["state"])
	require.NotEqual(t, "old-render", got["cdn_id"])
	var queuedAt time.Time
	require.NoError(t, env.Pool.QueryRow(ctx, `SELECT queued_at FROM video_projects WHERE id = $1`, id).Scan(&queuedAt))
	require.True(t, queuedAt.After(start), "queueing records the queue time (legacy C13)")
	require.Eventually(t, func() bool {
		_, ok := env.Bunny.Object(lt.VideoZone, storage.VideoKey(alice.ID, "old-render"))
		return !ok
	}, 5*time.Second, 10*time.Millisecond)

	// Re-queueing a queued or processing project is a conflict.
	r = env.Do(t, http.MethodPost, queue, alice.Token, nil)
	require.Equal(t, http.StatusConflict, r.Status)
	_, err = env.Pool.Exec(ctx, `UPDATE video_projects SET state = 'PROCESSING' WHERE id = $1`, id)
	require.NoError(t, err)
	r = env.Do(t, http.MethodPost, queue, alice.Token, nil)
	require.Equal(t, http.StatusConflict, r.Status)
	_, err = env.Pool.Exec(ctx, `UPDATE video_projects SET state = 'ERROR' WHERE id = $1`, id)
	require.NoError(t, err)
	hooks.setFail(true)
	r = env.Do(t, http.MethodPost, queue, alice.Token, nil)
	require.Equal(t, http.StatusInternalServerError, r.Status)
	require.Equal(t, "ERROR", env.Do(t, http.MethodGet, one, alice.Token, nil).Map(t)["state"], "a failing hook rolls back")
	hooks.setFail(false)

	r = env.Do(t, http.MethodPost, "/video-projects/999999/queue", alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"message":"Video project does not exist!"}`, string(r.Body))

	// DELETE (new) removes the row and its render.
	cdn := got["cdn_id"].(string)
	env.Bunny.Put(lt.VideoZone, storage.VideoKey(alice.ID, cdn), []byte("mp4"))
	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	_, ok := env.Bunny.Object(lt.VideoZone, storage.VideoKey(alice.ID, cdn))
	require.False(t, ok)
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"error":"Video project not found"}`, string(r.Body))
}

func TestVideosEndToEnd(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")

	r := env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("video", "../clip.mp4", clip(t, "2")))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	v := r.Map(t)
	require.Equal(t, fmt.Sprint(alice.ID), v["user_id"], "user_id is a string, as legacy")
	require.Equal(t, "clip.mp4", v["name"])
	require.InDelta(t, 2.0, v["duration"], 0.11)
	cdn := v["cdn_id"].(string)
	_, ok := env.Bunny.Object(lt.VideoZone, storage.VideoKey(alice.ID, cdn))
	require.True(t, ok)
	for _, k := range []string{"start_frame", "end_frame"} {
		frameID := int64(v[k+"_id"].(float64))
		r = env.Do(t, http.MethodGet, fmt.Sprintf("/users/%d/images/%d", alice.ID, frameID), alice.Token, nil)
		require.Equal(t, http.StatusOK, r.Status)
		img := r.Map(t)
		require.Equal(t, v[k+"_cdn_id"], img["cdn_id"])
		require.Equal(t, map[string]any{"user_uploaded": true, "video_cdn_id": cdn, "video_duration": v["duration"]}, img["metadata"])
		require.Equal(t, true, img["is_liked"])
	}

	base := fmt.Sprintf("/users/%d/videos", alice.ID)
	one := fmt.Sprintf("%s/%d", base, int64(v["id"].(float64)))
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "legacy C9/C10")
	require.Equal(t, []string{"cdn_id", "created_at", "duration", "end_frame_cdn_id", "end_frame_id", "id", "metadata", "name",
		"start_frame_cdn_id", "start_frame_id", "updated_at", "user_id"}, keysOf(t, r.Body))
	require.EqualValues(t, 2, r.Map(t)["duration"])
	var list []map[string]any
	env.Do(t, http.MethodGet, base, alice.Token, nil).JSON(t, &list)
	require.Len(t, list, 1)
	r = env.Do(t, http.MethodPut, one, alice.Token, map[string]any{"metadata": map[string]any{"title": "t"}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))

	// Rejections: no file is a 400 (legacy C12 said 404), not a video, a
	// video ffprobe cannot read.
	r = env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("file", "x.mp4", []byte("x")))
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.JSONEq(t, `{"error":"file not found"}`, string(r.Body), "the legacy message and key")
	r = env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("video", "x.mp4", []byte("<html>nope</html>")))
	require.Equal(t, http.StatusBadRequest, r.Status)
	r = env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("video", "x.mp4", []byte("\x00\x00\x00\x18ftypmp42 but then garbage")))
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))

	// A failed clip upload leaves no video row and no new frame images.
	images := count(t, env.Pool, `SELECT count(*) FROM images`)
	env.Bunny.Fail(http.MethodPut, http.StatusServiceUnavailable)
	r = env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("video", "b.mp4", clip(t, "1")))
	require.Equal(t, http.StatusBadGateway, r.Status)
	env.Bunny.Fail(http.MethodPut, 0)
	require.Equal(t, 1, count(t, env.Pool, `SELECT count(*) FROM videos`))
	require.Equal(t, images, count(t, env.Pool, `SELECT count(*) FROM images`))

	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	_, ok = env.Bunny.Object(lt.VideoZone, storage.VideoKey(alice.ID, cdn))
	require.False(t, ok)
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"error":"Video not found"}`, string(r.Body))
}

// A video frame made public must not reveal the private video it came
// from: the gallery and the template route show its metadata without
// video_cdn_id, and nested private keys and data URLs go too (#13.8).
func TestPublicFrameHidesItsVideo(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")
	r := env.Do(t, http.MethodPost, "/users/videos", alice.Token, lt.Upload("video", "clip.mp4", clip(t, "1")))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	v := r.Map(t)
	videoCDN := v["cdn_id"].(string)
	frameID := int64(v["start_frame_id"].(float64))
	frameCDN := v["start_frame_cdn_id"].(string)

	one := fmt.Sprintf("/users/%d/images/%d", alice.ID, frameID)
	r = env.Do(t, http.MethodPut, one, alice.Token, map[string]any{"is_public": true, "is_liked": nil})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = env.Do(t, http.MethodGet, "/images", "", nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NotContains(t, string(r.Body), videoCDN, "the gallery leaks the private video's key")
	var gallery []map[string]any
	r.JSON(t, &gallery)
	require.Len(t, gallery, 1)
	require.Equal(t, map[string]any{"user_uploaded": true, "video_duration": v["duration"]}, gallery[0]["metadata"])

	// The same frame as a template, with nested inputs in its metadata.
	_, err := env.Pool.Exec(context.Background(), `UPDATE images SET metadata = json_build_object(
		'template', true, 'video_cdn_id', $2::text,
		'info', json_build_object('mask', 'MMMM', 'frames', json_build_array('data:image/png;base64,DDDD', 'kept'))) WHERE id = $1`,
		frameID, videoCDN)
	require.NoError(t, err)
	r = env.Do(t, http.MethodGet, "/templates/"+frameCDN, "", nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	for _, secret := range []string{videoCDN, "MMMM", "DDDD"} {
		require.NotContains(t, string(r.Body), secret)
	}
	require.Equal(t, map[string]any{"template": true, "info": map[string]any{"frames": []any{"kept"}}}, r.Map(t)["metadata"])

	// The owner still sees everything.
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Contains(t, string(r.Body), videoCDN)
}
