package libraryapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
)

// snapshot returns every library row of user as text, to compare.
func snapshot(t *testing.T, env *lt.Env, user int64) string {
	t.Helper()
	var out string
	for _, table := range []string{"images", "audio", "links", "videos", "video_projects"} {
		var s *string
		require.NoError(t, env.Pool.QueryRow(context.Background(),
			`SELECT string_agg(t::text, E'\n' ORDER BY t.id) FROM `+table+` t WHERE user_id = $1`, user).Scan(&s))
		if s != nil {
			out += table + ":\n" + *s + "\n"
		}
	}
	return out
}

// TestOwnershipMatrix: user B calls every library route on user A's
// objects. With B's own path id the objects are not found (404); with A's
// path id the legacy check answers 400 "Wrong user!". Nothing of A's
// changes, in the database or in storage.
func TestOwnershipMatrix(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	a := env.NewUser(t, "a@example.com")
	b := env.NewUser(t, "b@example.com")

	// A's library: an image, an audio, a link, a video (with two frame
	// images) and a video project.
	r := env.Do(t, http.MethodPost, "/user-images", a.Token, lt.Upload("image", "a.png", pngOf(t, 20, 20, 7)))
	require.Equal(t, http.StatusOK, r.Status)
	img := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), a.Token, lt.Upload("audio", "a.mp3", mp3Bytes(50)))
	require.Equal(t, http.StatusOK, r.Status)
	aud := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/links", a.ID), a.Token, map[string]any{"metadata": map[string]any{"x": 1}})
	require.Equal(t, http.StatusOK, r.Status)
	link := r.Map(t)
	linkID := int64(link["id"].(float64))
	r = env.Do(t, http.MethodPost, "/users/videos", a.Token, lt.Upload("video", "v.mp4", clip(t, "1")))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	vid := int64(r.Map(t)["id"].(float64))
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/video-projects", a.ID), a.Token,
		map[string]any{"audio_id": aud, "metadata": map[string]any{"imageIds": []int64{img}, "timestamps": []int{0, 1}}})
	require.Equal(t, http.StatusOK, r.Status)
	proj := int64(r.Map(t)["id"].(float64))

	before := snapshot(t, env, a.ID)
	objects := [3]int{env.Bunny.Count(lt.ImageZone), env.Bunny.Count(lt.AudioZone), env.Bunny.Count(lt.VideoZone)}

	type call struct {
		method, path string
		body         any
	}
	objectRoutes := func(user int64) []call {
		u := fmt.Sprintf("/users/%d", user)
		return []call{
			{http.MethodGet, fmt.Sprintf("%s/images/%d", u, img), nil},
			{http.MethodPut, fmt.Sprintf("%s/images/%d", u, img), map[string]any{"is_public": true, "is_liked": false}},
			{http.MethodDelete, fmt.Sprintf("%s/images/%d", u, img), nil},
			{http.MethodGet, fmt.Sprintf("%s/audios/%d", u, aud), nil},
			{http.MethodPut, fmt.Sprintf("%s/audios/%d", u, aud), map[string]any{"name": "pwned", "metadata": map[string]any{}}},
			{http.MethodDelete, fmt.Sprintf("%s/audios/%d", u, aud), nil},
			{http.MethodPut, fmt.Sprintf("%s/links/%d", u, linkID), map[string]any{"metadata": map[string]any{"pwned": true}}},
			{http.MethodPut, fmt.Sprintf("%s/links/%s", u, link["share_id"]), map[string]any{"metadata": map[string]any{"pwned": true}}},
			{http.MethodDelete, fmt.Sprintf("%s/links/%d", u, linkID), nil},
			{http.MethodDelete, fmt.Sprintf("%s/links/%s", u, link["share_id"]), nil},
			{http.MethodGet, fmt.Sprintf("%s/videos/%d", u, vid), nil},
			{http.MethodPut, fmt.Sprintf("%s/videos/%d", u, vid), map[string]any{"metadata": map[string]any{"pwned": true}}},
			{http.MethodDelete, fmt.Sprintf("%s/videos/%d", u, vid), nil},
			{http.MethodGet, fmt.Sprintf("%s/video-projects/%d", u, proj), nil},
			{http.MethodPut, fmt.Sprintf("%s/video-projects/%d", u, proj), map[string]any{"metadata": map[string]any{"pwned": true}}},
			{http.MethodDelete, fmt.Sprintf("%s/video-projects/%d", u, proj), nil},
		}
	}
	// B with B's own path: A's objects do not exist for B.
	for _, c := range objectRoutes(b.ID) {
		r := env.Do(t, c.method, c.path, b.Token, c.body)
		require.Equal(t, http.StatusNotFound, r.Status, "%s %s: %s", c.method, c.path, r.Body)
	}
	// Routes without a user in the path.
	for _, c := range []call{
		{http.MethodPost, "/audio-extend", map[string]any{"id": aud, "prompt": "x"}},
		{http.MethodPost, "/audio-split", map[string]any{"id": aud}},
		{http.MethodPost, "/audios", map[string]any{"text": "x", "melody_id": aud}},
		{http.MethodPost, fmt.Sprintf("/video-projects/%d/queue", proj), nil},
		{http.MethodGet, fmt.Sprintf("/links/%d", linkID), nil},
	} {
		r := env.Do(t, c.method, c.path, b.Token, c.body)
		require.Equal(t, http.StatusNotFound, r.Status, "%s %s: %s", c.method, c.path, r.Body)
	}
	// Using A's objects inside B's own rows.
	r = env.Do(t, http.MethodPost, fmt.Sprintf("/users/%d/video-projects", b.ID), b.Token, map[string]any{"audio_id": aud, "metadata": map[string]any{}})
	require.Equal(t, http.StatusBadRequest, r.Status)
	// B with A's path: the legacy wrong-user answer, for every A route.
	aRoutes := append(objectRoutes(a.ID),
		call{http.MethodGet, fmt.Sprintf("/users/%d/images", a.ID), nil},
		call{http.MethodGet, fmt.Sprintf("/users/%d/audios", a.ID), nil},
		call{http.MethodPost, fmt.Sprintf("/users/%d/audios", a.ID), lt.Upload("audio", "b.mp3", mp3Bytes(9))},
		call{http.MethodGet, fmt.Sprintf("/users/%d/links", a.ID), nil},
		call{http.MethodPost, fmt.Sprintf("/users/%d/links", a.ID), map[string]any{"metadata": map[string]any{}}},
		call{http.MethodGet, fmt.Sprintf("/users/%d/videos", a.ID), nil},
		call{http.MethodGet, fmt.Sprintf("/users/%d/video-projects", a.ID), nil},
		call{http.MethodPost, fmt.Sprintf("/users/%d/video-projects", a.ID), map[string]any{"audio_id": aud, "metadata": map[string]any{}}},
	)
	for _, c := range aRoutes {
		r := env.Do(t, c.method, c.path, b.Token, c.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s %s: %s", c.method, c.path, r.Body)
		require.JSONEq(t, `{"message":"Wrong user!"}`, string(r.Body), "%s %s", c.method, c.path)
	}
	// B's lists do not show A's rows.
	for _, p := range []string{"images", "audios", "links", "videos", "video-projects"} {
		r := env.Do(t, http.MethodGet, fmt.Sprintf("/users/%d/%s", b.ID, p), b.Token, nil)
		require.Equal(t, http.StatusOK, r.Status)
		require.JSONEq(t, `[]`, string(r.Body), p)
	}
	// Without a token: 401 everywhere.
	for _, c := range objectRoutes(a.ID) {
		r := env.Do(t, c.method, c.path, "", c.body)
		require.Equal(t, http.StatusUnauthorized, r.Status, "%s %s", c.method, c.path)
	}

	require.Equal(t, before, snapshot(t, env, a.ID))
	require.Equal(t, objects, [3]int{env.Bunny.Count(lt.ImageZone), env.Bunny.Count(lt.AudioZone), env.Bunny.Count(lt.VideoZone)})
}

func TestRateLimitsApply(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{RateLimits: true})
	a := env.NewUser(t, "a@example.com")
	path := fmt.Sprintf("/users/%d/links", a.ID)
	// The legacy limit is 10/min; a window may end during the loop, so
	// allow one extra window's worth before the 429.
	limited := false
	for i := 0; i < 21 && !limited; i++ {
		r := env.Do(t, http.MethodGet, path, a.Token, nil)
		require.Equal(t, "10", r.Header.Get("X-RateLimit-Limit"))
		if r.Status == http.StatusTooManyRequests {
			limited = true
			require.NotEmpty(t, r.Header.Get("Retry-After"))
			continue
		}
		require.Equal(t, http.StatusOK, r.Status, i)
	}
	require.True(t, limited)
	// Another user has their own bucket.
	b := env.NewUser(t, "b@example.com")
	r := env.Do(t, http.MethodGet, fmt.Sprintf("/users/%d/links", b.ID), b.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
}
