package libraryapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
	"github.com/nounsai/sdserver/shared/storage"
)

// objectCounts is the number of stored objects per zone.
func objectCounts(env *lt.Env) [3]int {
	return [3]int{env.Bunny.Count(lt.ImageZone), env.Bunny.Count(lt.AudioZone), env.Bunny.Count(lt.VideoZone)}
}

// requireJSONError checks that r is a JSON error object ("message" or
// "error").
func requireJSONError(t *testing.T, r lt.Response, msgAndArgs ...any) map[string]any {
	t.Helper()
	require.Contains(t, r.Header.Get("Content-Type"), "application/json", msgAndArgs...)
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &m), msgAndArgs...)
	_, hasMessage := m["message"]
	_, hasError := m["error"]
	require.True(t, hasMessage || hasError, msgAndArgs...)
	return m
}

// longClip is a Matroska video of two frames, the second at lastFrame
// seconds: a tiny crafted file whose duration ffprobe reports as about
// lastFrame seconds (e.g. more than 2^31).
func longClip(t testing.TB, lastFrame string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "long.mkv")
	b, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "lavfi", "-i",
		"testsrc=duration=0.2:size=64x48:rate=10", "-vf", "setpts='if(eq(N,1),"+lastFrame+"/TB,PTS)'",
		"-fps_mode", "passthrough", "-pix_fmt", "yuv420p", "-c:v", "libx264", out).CombinedOutput()
	require.NoError(t, err, "ffmpeg must be installed: %s", b)
	data, err := os.ReadFile(out)
	require.NoError(t, err)
	return data
}

// TestBadInputSweep sends malformed requests to every library route on the
// caller's own objects: each answer is a 4xx JSON error (never a 500 or
// HTML), and nothing changes in the database or in storage.
func TestBadInputSweep(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	ctx := context.Background()

	r := env.Do(t, http.MethodPost, "/user-images", a.Token, lt.Upload("image", "a.png", pngOf(t, 20, 20, 9)))
	require.Equal(t, http.StatusOK, r.Status)
	img := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), a.Token, lt.Upload("audio", "a.mp3", mp3Bytes(80)))
	require.Equal(t, http.StatusOK, r.Status)
	aud := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/links", a.ID), a.Token, map[string]any{"metadata": map[string]any{"x": 1}})
	require.Equal(t, http.StatusOK, r.Status)
	link := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, "/users/videos", a.Token, lt.Upload("video", "v.mp4", clip(t, "1")))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	vid := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/video-projects", a.ID), a.Token,
		map[string]any{"audio_id": aud, "metadata": map[string]any{"imageIds": []int64{img}}})
	require.Equal(t, http.StatusOK, r.Status)
	proj := int64(r.Map(t)["id"].(float64))
	// A template, so that the template route has something to find.
	_, err := env.Pool.Exec(ctx, `UPDATE images SET metadata = '{"template": true}' WHERE id = $1`, img)
	require.NoError(t, err)

	u := fmt.Sprintf("/users/%d", a.ID)
	one := func(kind string, id int64) string { return fmt.Sprintf("%s/%s/%d", u, kind, id) }
	badUTF8 := []byte("{\"metadata\": {\"title\": \"caf\xff\xfe\"}}")
	huge := "?page=99999999999999999999999&limit=99999999999999999999"
	hugeNums := "?page=2147483647&limit=2147483647"
	tooBigMeta := map[string]any{"metadata": map[string]any{"blob": strings.Repeat("x", 300<<10)}}
	tooBigProject := map[string]any{"metadata": map[string]any{"blob": strings.Repeat("x", 1100<<10)}}
	tooBigBody := `{"metadata": {"blob": "` + strings.Repeat("x", 6<<20) + `"}}`

	cases := []struct {
		name   string
		method string
		path   string
		body   any
		status int // 0: any 4xx
	}{
		// Invalid JSON.
		{"audios invalid json", http.MethodPost, "/audios", "{", 400},
		{"audio-extend invalid json", http.MethodPost, "/audio-extend", "{\"id\":", 400},
		{"audio-split invalid json", http.MethodPost, "/audio-split", "not json", 400},
		{"link create invalid json", http.MethodPost, u + "/links", "{", 400},
		{"link put invalid json", http.MethodPut, one("links", link), "[", 400},
		{"video put invalid json", http.MethodPut, one("videos", vid), "{", 400},
		{"project create invalid json", http.MethodPost, u + "/video-projects", "{", 400},
		{"project put invalid json", http.MethodPut, one("video-projects", proj), "{}{}", 400},
		{"image put invalid json", http.MethodPut, one("images", img), "{", 400},
		{"audio put invalid json", http.MethodPut, one("audios", aud), "", 400},

		// Wrong types.
		{"audios text number", http.MethodPost, "/audios", map[string]any{"text": 5}, 400},
		{"audios text list", http.MethodPost, "/audios", map[string]any{"text": []string{"a"}}, 400},
		{"audios melody object", http.MethodPost, "/audios", map[string]any{"text": "a", "melody_id": map[string]any{"x": 1}}, 400},
		{"audio-extend id object", http.MethodPost, "/audio-extend", map[string]any{"id": map[string]any{"a": 1}}, 404},
		{"audio-split id bool", http.MethodPost, "/audio-split", map[string]any{"id": true}, 404},
		{"audio put name number", http.MethodPut, one("audios", aud), map[string]any{"name": 5}, 400},
		{"image put flag string", http.MethodPut, one("images", img), map[string]any{"is_public": "yes", "is_liked": nil}, 400},
		{"project audio_id bool", http.MethodPost, u + "/video-projects", map[string]any{"audio_id": true}, 400},
		{"project audio_id huge", http.MethodPost, u + "/video-projects", map[string]any{"audio_id": 1e30}, 400},
		{"link metadata missing", http.MethodPost, u + "/links", map[string]any{}, 400},

		// Invalid UTF-8 inside JSON strings (json.Valid accepts it).
		{"link create bad utf8", http.MethodPost, u + "/links", badUTF8, 400},
		{"link put bad utf8", http.MethodPut, one("links", link), badUTF8, 400},
		{"video put bad utf8", http.MethodPut, one("videos", vid), badUTF8, 400},
		{"project create bad utf8", http.MethodPost, u + "/video-projects",
			[]byte(fmt.Sprintf("{\"audio_id\": %d, \"metadata\": {\"t\": \"\xff\"}}", aud)), 400},
		{"project put bad utf8", http.MethodPut, one("video-projects", proj), badUTF8, 400},
		{"audio put bad utf8", http.MethodPut, one("audios", aud), badUTF8, 400},

		// Control characters in names.
		{"audio put NUL name", http.MethodPut, one("audios", aud), `{"name": "a\u0000"}`, 400},
		{"audio put BEL name", http.MethodPut, one("audios", aud), `{"name": "a\u0007b"}`, 400},

		// %00 and %FF as path ids.
		{"template NUL", http.MethodGet, "/templates/%00", nil, 404},
		{"template FF", http.MethodGet, "/templates/%FF", nil, 404},
		{"template FF in uuid", http.MethodGet, "/templates/abc%FFdef", nil, 404},
		{"shared link NUL", http.MethodGet, "/links/%00", nil, 404},
		{"shared link FF", http.MethodGet, "/links/%FF", nil, 404},
		{"image get NUL", http.MethodGet, u + "/images/%00", nil, 404},
		{"image put FF", http.MethodPut, u + "/images/%FF", map[string]any{"is_public": true}, 404},
		{"audio get FF", http.MethodGet, u + "/audios/%FF", nil, 404},
		{"audio delete NUL", http.MethodDelete, u + "/audios/%00", nil, 404},
		{"link put FF", http.MethodPut, u + "/links/%FF", map[string]any{"metadata": map[string]any{}}, 404},
		{"link delete NUL", http.MethodDelete, u + "/links/%00", nil, 404},
		{"video get FF", http.MethodGet, u + "/videos/%FF", nil, 404},
		{"project delete FF", http.MethodDelete, u + "/video-projects/%FF", nil, 404},
		{"queue NUL", http.MethodPost, "/video-projects/%00/queue", nil, 404},
		{"user NUL", http.MethodGet, "/users/%00/images", nil, 400},
		{"user FF", http.MethodGet, "/users/%FF/audios", nil, 400},

		// Negative and out-of-range ids.
		{"image get negative", http.MethodGet, u + "/images/-1", nil, 404},
		{"audio delete negative", http.MethodDelete, u + "/audios/-5", nil, 404},
		{"project get int64 overflow", http.MethodGet, u + "/video-projects/99999999999999999999", nil, 404},
		{"queue negative", http.MethodPost, "/video-projects/-1/queue", nil, 404},
		{"negative user", http.MethodGet, "/users/-1/links", nil, 400},
		{"audio-extend negative", http.MethodPost, "/audio-extend", map[string]any{"id": -1}, 404},
		{"project audio_id negative", http.MethodPost, u + "/video-projects", map[string]any{"audio_id": -3}, 400},

		// Oversized bodies.
		{"link metadata too large", http.MethodPost, u + "/links", tooBigMeta, 413},
		{"project metadata too large", http.MethodPut, one("video-projects", proj), tooBigProject, 413},
		{"body over the limit", http.MethodPut, one("links", link), tooBigBody, 413},
		{"audio prompt too long", http.MethodPost, "/audios", map[string]any{"text": strings.Repeat("p", 5000)}, 400},
	}

	before, objects := snapshot(t, env, a.ID), objectCounts(env)
	for _, tc := range cases {
		r := env.Do(t, tc.method, tc.path, a.Token, tc.body)
		if tc.status != 0 {
			require.Equal(t, tc.status, r.Status, "%s: %s", tc.name, r.Body)
		}
		require.True(t, r.Status >= 400 && r.Status < 500, "%s: %d %s", tc.name, r.Status, r.Body)
		requireJSONError(t, r, tc.name)
	}

	// Huge page and limit values are capped (legacy falls back to the
	// defaults), never a 500.
	for _, list := range []string{"/images", u + "/images", u + "/images?field=id&", u + "/audios", u + "/links", u + "/videos", u + "/video-projects"} {
		for _, q := range []string{huge, hugeNums, "?page=-1&limit=-1", "?page=0&limit=0", "?page=x&limit=%FF"} {
			p := list + q
			if strings.HasSuffix(list, "&") {
				p = list + q[1:]
			}
			r := env.Do(t, http.MethodGet, p, a.Token, nil)
			require.Equal(t, http.StatusOK, r.Status, "%s: %s", p, r.Body)
			var rows []map[string]any
			r.JSON(t, &rows)
		}
	}

	require.Equal(t, before, snapshot(t, env, a.ID), "nothing changed")
	require.Equal(t, objects, objectCounts(env), "no object stored or deleted")
	require.Equal(t, 1, count(t, env.Pool, `SELECT count(*) FROM audio`))
	require.Equal(t, 1, count(t, env.Pool, `SELECT count(*) FROM links`))
}

// TestAudioUploadStorageFailure: with the fake Bunny failing every PUT, an
// audio upload is a clean 502 JSON answer and leaves no row and no object.
func TestAudioUploadStorageFailure(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	// Two failures only: through the proxy, three 5xx answers in a row
	// eject the API host for a while.
	for _, status := range []int{http.StatusInternalServerError, http.StatusUnauthorized} {
		env.Bunny.Fail(http.MethodPut, status)
		r := env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), a.Token, lt.Upload("audio", "a.mp3", mp3Bytes(100)))
		require.Contains(t, []int{http.StatusBadGateway, http.StatusServiceUnavailable}, r.Status, "bunny %d: %s", status, r.Body)
		m := requireJSONError(t, r)
		require.NotContains(t, fmt.Sprint(m), "audio-zone", "no storage internals in the answer")
		require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM audio`))
		require.Zero(t, env.Bunny.Count(lt.AudioZone))
	}
	env.Bunny.Fail(http.MethodPut, 0)
	r := env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), a.Token, lt.Upload("audio", "a.mp3", mp3Bytes(100)))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, 1, count(t, env.Pool, `SELECT count(*) FROM audio`))
}

// TestVideoHugeDuration: a crafted video claiming more than 2^31 seconds is
// a 400, and nothing is stored.
func TestVideoHugeDuration(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	r := env.Do(t, http.MethodPost, "/users/videos", a.Token, lt.Upload("video", "long.mkv", longClip(t, "3000000000")))
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Contains(t, requireJSONError(t, r)["message"], "too long")
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM videos`))
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM images`))
	require.Equal(t, [3]int{}, objectCounts(env))
}

// TestBusyRowsConflict: while a project or an audio (or a project made
// from it) is QUEUED or PROCESSING, PUT and DELETE answer 409 and change
// nothing: the running job reads the row and uploads to its key.
func TestBusyRowsConflict(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	ctx := context.Background()
	u := fmt.Sprintf("/users/%d", a.ID)

	r := env.Do(t, http.MethodPost, u+"/audios", a.Token, lt.Upload("audio", "a.mp3", mp3Bytes(60)))
	require.Equal(t, http.StatusOK, r.Status)
	aud := int64(r.Map(t)["id"].(float64))
	audCDN := r.Map(t)["cdn_id"].(string)
	r = env.Do(t, http.MethodPost, u+"/video-projects", a.Token, map[string]any{"audio_id": aud, "metadata": map[string]any{"v": 1}})
	require.Equal(t, http.StatusOK, r.Status)
	proj := int64(r.Map(t)["id"].(float64))
	_, err := env.Pool.Exec(ctx, `UPDATE video_projects SET cdn_id = 'render-x' WHERE id = $1`, proj)
	require.NoError(t, err)
	env.Bunny.Put(lt.VideoZone, storage.VideoKey(a.ID, "render-x"), []byte("mp4"))
	audOne := fmt.Sprintf("%s/audios/%d", u, aud)
	projOne := fmt.Sprintf("%s/video-projects/%d", u, proj)

	setState := func(table string, id int64, state string) {
		t.Helper()
		_, err := env.Pool.Exec(ctx, `UPDATE `+table+` SET state = $2 WHERE id = $1`, id, state)
		require.NoError(t, err)
	}
	conflict := func(method, path string, body any) {
		t.Helper()
		before, objects := snapshot(t, env, a.ID), objectCounts(env)
		r := env.Do(t, method, path, a.Token, body)
		require.Equal(t, http.StatusConflict, r.Status, "%s %s: %s", method, path, r.Body)
		m := requireJSONError(t, r)
		require.Contains(t, m["message"], "DELETE /v1/jobs/")
		require.Equal(t, before, snapshot(t, env, a.ID))
		require.Equal(t, objects, objectCounts(env))
	}

	for _, state := range []string{"QUEUED", "PROCESSING"} {
		setState("video_projects", proj, state)
		conflict(http.MethodPut, projOne, map[string]any{"metadata": map[string]any{"v": 2}})
		conflict(http.MethodDelete, projOne, nil)
		// The audio's delete would cascade to the busy project.
		conflict(http.MethodDelete, audOne, nil)
		setState("video_projects", proj, "COMPLETED")

		setState("audio", aud, state)
		conflict(http.MethodPut, audOne, map[string]any{"name": "renamed", "metadata": map[string]any{"x": 1}})
		conflict(http.MethodDelete, audOne, nil)
		setState("audio", aud, "COMPLETED")
	}

	// Once the jobs are done, both work again.
	r = env.Do(t, http.MethodPut, projOne, a.Token, map[string]any{"metadata": map[string]any{"v": 3}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = env.Do(t, http.MethodPut, audOne, a.Token, map[string]any{"name": "renamed"})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = env.Do(t, http.MethodDelete, audOne, a.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM video_projects`))
	_, ok := env.Bunny.Object(lt.AudioZone, storage.AudioKey(a.ID, audCDN))
	require.False(t, ok)
	_, ok = env.Bunny.Object(lt.VideoZone, storage.VideoKey(a.ID, "render-x"))
	require.False(t, ok)

	// A project on its own: deleted once it is no longer busy.
	r = env.Do(t, http.MethodPost, u+"/audios", a.Token, lt.Upload("audio", "b.mp3", mp3Bytes(61)))
	aud2 := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, u+"/video-projects", a.Token, map[string]any{"audio_id": aud2, "metadata": map[string]any{}})
	proj2 := fmt.Sprintf("%s/video-projects/%d", u, int64(r.Map(t)["id"].(float64)))
	_, err = env.Pool.Exec(ctx, `UPDATE video_projects SET state = 'ERROR'`)
	require.NoError(t, err)
	r = env.Do(t, http.MethodDelete, proj2, a.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
}

// An "audio" upload that is an ID3 tag followed by an HLS playlist (issue
// 13.6: ffmpeg would read the local files it names) is refused with 400,
// and nothing is stored.
func TestAudioUploadRefusesID3Playlist(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	playlist := []byte("ID3\x04\x00\x00\x00\x00\x00\x00#EXTM3U\n#EXT-X-TARGETDURATION:3\n#EXTINF:3,\n/etc/passwd\n#EXT-X-ENDLIST\n")
	r := env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), a.Token, lt.Upload("audio", "song.mp3", playlist))
	require.Equal(t, http.StatusBadRequest, r.Status, string(r.Body))
	require.Contains(t, r.Map(t), "message")
	var n int
	require.NoError(t, env.Pool.QueryRow(context.Background(), `SELECT count(*) FROM audio WHERE user_id = $1`, a.ID).Scan(&n))
	require.Zero(t, n)
}
