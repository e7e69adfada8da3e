package e2e_test

import (
	"bytes"
	"fmt"
	"image/png"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/storage"
)

// testImages: upload (multipart), list, get, PUT, the public gallery,
// DELETE, with the objects checked in storage, through the proxy and
// directly.
func testImages(t *testing.T, s *stack) {
	for i, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("images-%s@example.com", tg.name))
		data := pngOf(t, 300, 200, byte(i+1))

		r := tg.do(t, http.MethodPost, "/user-images", u.Token, file{"image", "cat.png", data})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		row := r.Map(t)
		id := r.ID(t)
		cdn := row["cdn_id"].(string)
		require.EqualValues(t, u.ID, row["user_id"])
		require.Equal(t, true, row["is_liked"])
		require.Equal(t, false, row["is_public"])
		require.EqualValues(t, -1, row["parent_id"])
		require.Equal(t, map[string]any{"base_64": nil, "user_uploaded": true}, row["metadata"])
		full, ok := s.object(t, storage.ImageKey(u.ID, cdn))
		require.True(t, ok, tg.name)
		require.Equal(t, data, full)
		thumb, ok := s.object(t, storage.ThumbnailKey(u.ID, cdn))
		require.True(t, ok, tg.name)
		cfg, err := png.DecodeConfig(bytes.NewReader(thumb))
		require.NoError(t, err)
		require.Equal(t, 100, max(cfg.Width, cfg.Height))

		// The same bytes again: the same row.
		r = tg.do(t, http.MethodPost, "/user-images", u.Token, file{"image", "again.png", data})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, id, r.ID(t))

		base := fmt.Sprintf("/users/%d/images", u.ID)
		r = tg.do(t, http.MethodGet, base+"?field=id&favorited=TRUE", u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.JSONEq(t, fmt.Sprintf(`[{"id":%d}]`, id), string(r.body))
		one := fmt.Sprintf("%s/%d", base, id)
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, cdn, r.Map(t)["cdn_id"])

		// PUT with the frontend's body: null leaves a flag unchanged.
		r = tg.do(t, http.MethodPut, one, u.Token, `{"is_public": true, "is_liked": null}`)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.JSONEq(t, `{"status":"success"}`, string(r.body))
		got := tg.do(t, http.MethodGet, one, u.Token, nil).Map(t)
		require.Equal(t, true, got["is_public"])
		require.Equal(t, true, got["is_liked"])
		r = tg.do(t, http.MethodPut, one, u.Token, `{"is_public": "yes"}`)
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)

		// Now public: in the gallery, without a token.
		r = tg.do(t, http.MethodGet, "/images?limit=500", "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		var gallery []map[string]any
		r.JSON(t, &gallery)
		require.True(t, slices.ContainsFunc(gallery, func(m map[string]any) bool { return m["cdn_id"] == cdn }), tg.name)
		require.NotContains(t, string(r.body), `"hash"`)

		// Over the 5 MiB body limit: the legacy 413, through the proxy as
		// directly.
		r = tg.do(t, http.MethodPost, "/user-images", u.Token, file{"image", "big.png", bytes.Repeat([]byte{1}, 6<<20)})
		require.Equal(t, http.StatusRequestEntityTooLarge, r.status, tg.name)
		require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, string(r.body))
		r = tg.do(t, http.MethodPost, "/user-images", u.Token, file{"image", "passwd", []byte("root:x:0:0:root:/root:/bin/bash\n")})
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)

		// DELETE removes the row and both objects.
		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		_, ok = s.object(t, storage.ImageKey(u.ID, cdn))
		require.False(t, ok, tg.name)
		_, ok = s.object(t, storage.ThumbnailKey(u.ID, cdn))
		require.False(t, ok, tg.name)
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		require.JSONEq(t, `{"error":"Image not found"}`, string(r.body))
		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
	}
}

// testAudio: upload, get, PUT, a text-to-audio job run to completion by
// gpusvc's worker, DELETE, through the proxy and directly.
func testAudio(t *testing.T, s *stack) {
	for i, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("audio-%s@example.com", tg.name))
		base := fmt.Sprintf("/users/%d/audios", u.ID)
		data := mp3Bytes(1000 + i)

		r := tg.do(t, http.MethodPost, base, u.Token, file{"audio", "../song.mp3", data})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		id := r.ID(t)
		cdn := r.Map(t)["cdn_id"].(string)
		obj, ok := s.object(t, storage.AudioKey(u.ID, cdn))
		require.True(t, ok, tg.name)
		require.Equal(t, data, obj)
		one := fmt.Sprintf("%s/%d", base, id)
		got := tg.do(t, http.MethodGet, one, u.Token, nil).Map(t)
		require.Equal(t, "song.mp3", got["name"])
		require.EqualValues(t, len(data), got["size"])
		require.Nil(t, got["state"], "an upload has no job state, as legacy")
		require.NotContains(t, got, "queue", "legacy: no queue key for a NULL state")

		r = tg.do(t, http.MethodPut, one, u.Token, map[string]any{"name": "My song", "url": "ignored", "size": 1, "metadata": map[string]any{"bpm": 90}})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		got = tg.do(t, http.MethodGet, one, u.Token, nil).Map(t)
		require.Equal(t, "My song", got["name"])
		require.Equal(t, map[string]any{"bpm": float64(90)}, got["metadata"])
		require.EqualValues(t, len(data), got["size"])

		r = tg.do(t, http.MethodPost, base, u.Token, file{"file", "x.mp3", data})
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)
		require.JSONEq(t, `{"error":"No audio file detected"}`, string(r.body))

		// Text to audio: queued by accountsvc, generated by gpusvc.
		r = tg.do(t, http.MethodPost, "/audios", u.Token, map[string]any{"text": "lofi beat"})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		audioJob, _ := r.Map(t)["job_id"].(string)
		require.NotEmpty(t, audioJob, "%s: the answer names the job: %s", tg.name, r.body)
		gen := fmt.Sprintf("%s/%d", base, r.ID(t))
		g := waitState(t, tg, gen, u.Token, 45*time.Second, "COMPLETED", "ERROR")
		require.Equal(t, "COMPLETED", g["state"], "%s: %v", tg.name, g)
		j := tg.do(t, http.MethodGet, "/v1/jobs/"+audioJob, u.Token, nil)
		require.Equal(t, http.StatusOK, j.status, "%s: %s", tg.name, j.body)
		require.Equal(t, "COMPLETED", j.Map(t)["state"], tg.name)
		genObj, ok := s.object(t, storage.AudioKey(u.ID, g["cdn_id"].(string)))
		require.True(t, ok, tg.name)
		require.NotEmpty(t, genObj)

		// DELETE removes the row and its object.
		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		_, ok = s.object(t, storage.AudioKey(u.ID, cdn))
		require.False(t, ok, tg.name)
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
	}
}

// testLinks: create, read by share id without a token, list, PUT, DELETE,
// through the proxy and directly.
func testLinks(t *testing.T, s *stack) {
	for _, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("links-%s@example.com", tg.name))
		base := fmt.Sprintf("/users/%d/links", u.ID)

		r := tg.do(t, http.MethodPost, base, u.Token, `{"metadata":{"title":"my video","projectId":3}}`)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		id := r.ID(t)
		share := r.Map(t)["share_id"].(string)
		require.Len(t, share, 22)

		r = tg.do(t, http.MethodGet, "/links/"+share, "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.NotContains(t, string(r.body), "user_id")
		require.Equal(t, "my video", r.Map(t)["metadata"].(map[string]any)["title"])
		r = tg.do(t, http.MethodGet, fmt.Sprintf("/links/%d", id), "", nil)
		require.Equal(t, http.StatusNotFound, r.status, "new links are not readable by their sequential id")

		r = tg.do(t, http.MethodGet, base, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		var list []map[string]any
		r.JSON(t, &list)
		require.Len(t, list, 1)
		require.Equal(t, share, list[0]["share_id"])

		r = tg.do(t, http.MethodPut, base+"/"+share, u.Token, `{"metadata":{"title":"new"}}`)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		r = tg.do(t, http.MethodGet, "/links/"+share, "", nil)
		require.Equal(t, "new", r.Map(t)["metadata"].(map[string]any)["title"])
		r = tg.do(t, http.MethodPut, base+"/"+share, u.Token, `{}`)
		require.Equal(t, http.StatusBadRequest, r.status, "metadata is required")

		r = tg.do(t, http.MethodDelete, fmt.Sprintf("%s/%d", base, id), u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		r = tg.do(t, http.MethodGet, "/links/"+share, "", nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		require.JSONEq(t, `{"error":"Link not found"}`, string(r.body))
	}
}

// testVideos: upload a clip (multipart; accountsvc runs ffprobe and stores
// its first and last frames as images), get, list, PUT, DELETE, through the
// proxy and directly.
func testVideos(t *testing.T, s *stack) {
	data := clip(t, "1")
	for _, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("videos-%s@example.com", tg.name))

		r := tg.do(t, http.MethodPost, "/users/videos", u.Token, file{"video", "../clip.mp4", data})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		v := r.Map(t)
		require.Equal(t, fmt.Sprint(u.ID), v["user_id"], "user_id is a string, as legacy")
		require.Equal(t, "clip.mp4", v["name"])
		require.InDelta(t, 1.0, v["duration"], 0.11)
		cdn := v["cdn_id"].(string)
		obj, ok := s.object(t, storage.VideoKey(u.ID, cdn))
		require.True(t, ok, tg.name)
		require.Equal(t, data, obj)
		for _, k := range []string{"start_frame", "end_frame"} {
			frame := int64(v[k+"_id"].(float64))
			r = tg.do(t, http.MethodGet, fmt.Sprintf("/users/%d/images/%d", u.ID, frame), u.Token, nil)
			require.Equal(t, http.StatusOK, r.status, "%s %s: %s", tg.name, k, r.body)
			require.Equal(t, v[k+"_cdn_id"], r.Map(t)["cdn_id"])
			_, ok := s.object(t, storage.ImageKey(u.ID, v[k+"_cdn_id"].(string)))
			require.True(t, ok, "%s %s", tg.name, k)
		}

		base := fmt.Sprintf("/users/%d/videos", u.ID)
		one := fmt.Sprintf("%s/%d", base, int64(v["id"].(float64)))
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		var list []map[string]any
		tg.do(t, http.MethodGet, base, u.Token, nil).JSON(t, &list)
		require.Len(t, list, 1)
		r = tg.do(t, http.MethodPut, one, u.Token, `{"metadata":{"title":"t"}}`)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, map[string]any{"title": "t"}, tg.do(t, http.MethodGet, one, u.Token, nil).Map(t)["metadata"])

		r = tg.do(t, http.MethodPost, "/users/videos", u.Token, file{"video", "x.mp4", []byte("<html>nope</html>")})
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)

		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		_, ok = s.object(t, storage.VideoKey(u.ID, cdn))
		require.False(t, ok, tg.name)
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		require.JSONEq(t, `{"error":"Video not found"}`, string(r.body))
	}
}

// testVideoProjects: create from an audio and images, get, list, PUT,
// queue (gpusvc's worker renders it), DELETE, through the proxy and
// directly.
func testVideoProjects(t *testing.T, s *stack) {
	for i, tg := range s.targets() {
		u := s.signup(t, tg, fmt.Sprintf("projects-%s@example.com", tg.name))
		r := tg.do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", u.ID), u.Token, file{"audio", "a.mp3", tone(t, "1", 440+110*i)})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		audio := r.ID(t)
		var imgs []int64
		for seed := range 2 {
			r = tg.do(t, http.MethodPost, "/user-images", u.Token, file{"image", "i.png", pngOf(t, 64, 64, byte(10*i+seed))})
			require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
			imgs = append(imgs, r.ID(t))
		}
		base := fmt.Sprintf("/users/%d/video-projects", u.ID)

		r = tg.do(t, http.MethodPost, base, u.Token, map[string]any{"audio_id": "nope"})
		require.Equal(t, http.StatusBadRequest, r.status, tg.name)
		meta := map[string]any{"timestamps": []any{0, "0.5"}, "imageIds": []any{imgs[0], fmt.Sprint(imgs[1])}, "prompts": []string{"a", "b"}}
		r = tg.do(t, http.MethodPost, base, u.Token, map[string]any{"audio_id": audio, "metadata": meta})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		id := r.ID(t)
		one := fmt.Sprintf("%s/%d", base, id)

		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, "UNFINISHED", r.Map(t)["state"])
		var list []map[string]any
		tg.do(t, http.MethodGet, base, u.Token, nil).JSON(t, &list)
		require.Len(t, list, 1)
		require.Equal(t, "a.mp3", list[0]["audio_name"])

		meta["prompts"] = []string{"a noun", "another noun"}
		r = tg.do(t, http.MethodPut, one, u.Token, map[string]any{"metadata": meta})
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)

		r = tg.do(t, http.MethodPost, fmt.Sprintf("/video-projects/%d/queue", id), u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		require.Equal(t, "success", r.Map(t)["status"], tg.name)
		require.NotEmpty(t, r.Map(t)["job_id"], "%s: the answer names the job: %s", tg.name, r.body)
		got := waitState(t, tg, one, u.Token, 45*time.Second, "COMPLETED", "ERROR")
		require.Equal(t, "COMPLETED", got["state"], "%s: %v", tg.name, got)
		render := got["cdn_id"].(string)
		_, ok := s.object(t, storage.VideoKey(u.ID, render))
		require.True(t, ok, "%s: the render is in storage", tg.name)

		r = tg.do(t, http.MethodPost, "/video-projects/999999999/queue", u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		require.JSONEq(t, `{"message":"Video project does not exist!"}`, string(r.body))

		r = tg.do(t, http.MethodDelete, one, u.Token, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", tg.name, r.body)
		_, ok = s.object(t, storage.VideoKey(u.ID, render))
		require.False(t, ok, "%s: the render is deleted", tg.name)
		r = tg.do(t, http.MethodGet, one, u.Token, nil)
		require.Equal(t, http.StatusNotFound, r.status, tg.name)
		require.JSONEq(t, `{"error":"Video project not found"}`, string(r.body))
	}
}
