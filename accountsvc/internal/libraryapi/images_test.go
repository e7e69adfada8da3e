package libraryapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/png"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
	"github.com/nounsai/sdserver/shared/storage"
)

// keysOf returns the keys of a raw JSON object in their wire order.
func keysOf(t testing.TB, raw []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	require.NoError(t, err)
	require.Equal(t, json.Delim('{'), tok)
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		require.NoError(t, err)
		keys = append(keys, k.(string))
		var skip json.RawMessage
		require.NoError(t, dec.Decode(&skip))
	}
	return keys
}

func TestImagesEndToEnd(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")
	upload := pngOf(t, 300, 200, 1)

	// POST /user-images stores the original bytes and a 100 px thumbnail.
	r := env.Do(t, http.MethodPost, "/user-images", alice.Token, lt.Upload("image", "cat.png", upload))
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, []string{"base_64", "cdn_id", "created_at", "hash", "id", "is_liked", "is_public", "metadata",
		"parent_id", "thumb_base_64", "updated_at", "user_id"}, keysOf(t, r.Body))
	var row struct {
		ID        int64          `json:"id"`
		UserID    int64          `json:"user_id"`
		CDNID     string         `json:"cdn_id"`
		IsLiked   bool           `json:"is_liked"`
		IsPublic  bool           `json:"is_public"`
		ParentID  int64          `json:"parent_id"`
		CreatedAt json.Number    `json:"created_at"`
		Metadata  map[string]any `json:"metadata"`
	}
	r.JSON(t, &row)
	require.Equal(t, alice.ID, row.UserID)
	require.True(t, row.IsLiked)
	require.False(t, row.IsPublic)
	require.Equal(t, int64(-1), row.ParentID)
	require.Equal(t, map[string]any{"base_64": nil, "user_uploaded": true}, row.Metadata)
	ms, err := row.CreatedAt.Int64()
	require.NoError(t, err, "timestamps are epoch-millisecond integers")
	require.Greater(t, ms, int64(1_600_000_000_000))
	full, ok := env.Bunny.Object(lt.ImageZone, storage.ImageKey(alice.ID, row.CDNID))
	require.True(t, ok)
	require.Equal(t, upload, full)
	thumb, ok := env.Bunny.Object(lt.ImageZone, storage.ThumbnailKey(alice.ID, row.CDNID))
	require.True(t, ok)
	cfg, err := png.DecodeConfig(bytes.NewReader(thumb))
	require.NoError(t, err)
	require.Equal(t, 100, max(cfg.Width, cfg.Height))

	// Dedup by hash per user.
	r = env.Do(t, http.MethodPost, "/user-images", alice.Token, lt.Upload("image", "again.png", upload))
	require.Equal(t, http.StatusOK, r.Status)
	require.EqualValues(t, row.ID, r.Map(t)["id"])
	require.Equal(t, 2, env.Bunny.Count(lt.ImageZone))

	base := fmt.Sprintf("/users/%d/images", alice.ID)
	// favorited absent works (legacy C6), field=id gives ids.
	r = env.Do(t, http.MethodGet, base, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	var list []map[string]any
	r.JSON(t, &list)
	require.Len(t, list, 1)
	r = env.Do(t, http.MethodGet, base+"?field=id&favorited=TRUE", alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.JSONEq(t, fmt.Sprintf(`[{"id":%d}]`, row.ID), string(r.Body))
	r = env.Do(t, http.MethodGet, base+"?limit=abc&page=-3", alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status, "bad paging falls back to the defaults")

	one := fmt.Sprintf("%s/%d", base, row.ID)
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.EqualValues(t, row.ID, r.Map(t)["id"])

	// PUT: null leaves a flag unchanged; a missing key too (legacy C1).
	r = env.Do(t, http.MethodPut, one, alice.Token, map[string]any{"is_public": true, "is_liked": nil})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.JSONEq(t, `{"status":"success"}`, string(r.Body))
	r = env.Do(t, http.MethodPut, one, alice.Token, `{"is_public": "yes"}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	r = env.Do(t, http.MethodPut, one, alice.Token, `not json`)
	require.Equal(t, http.StatusBadRequest, r.Status)

	// The public gallery shows it without secrets (legacy S1).
	ctx := context.Background()
	_, err = env.Pool.Exec(ctx, `INSERT INTO images (user_id, base_64, thumb_base_64, hash, metadata, cdn_id, is_public)
		VALUES ($1, '0', '0', 'h', '{"prompt":"a noun","base_64":"data:image/png;base64,AAAA","mask":"AAAA","init":"data:image/png;base64,BBB"}', 'gen-1', true)`, alice.ID)
	require.NoError(t, err)
	r = env.Do(t, http.MethodGet, "/images?limit=500", "", nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.NotContains(t, string(r.Body), "AAAA")
	require.NotContains(t, string(r.Body), "BBB")
	require.NotContains(t, string(r.Body), `"hash"`)
	var gallery []map[string]any
	r.JSON(t, &gallery)
	require.Len(t, gallery, 2)
	require.Equal(t, map[string]any{"prompt": "a noun"}, gallery[0]["metadata"])

	// Templates: only images marked template (legacy S6/C11).
	r = env.Do(t, http.MethodGet, "/templates/"+row.CDNID, "", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"error":"Template not found"}`, string(r.Body))
	r = env.Do(t, http.MethodGet, "/templates/gen-1", "", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	_, err = env.Pool.Exec(ctx, `UPDATE images SET metadata = '{"template": true, "prompt": "t", "mask": "MMMM"}' WHERE cdn_id = 'gen-1'`)
	require.NoError(t, err)
	r = env.Do(t, http.MethodGet, "/templates/gen-1", "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.NotContains(t, string(r.Body), "MMMM")
	require.Equal(t, true, r.Map(t)["metadata"].(map[string]any)["template"])

	// Challenge-token routes refuse requests without it.
	req, _ := http.NewRequest(http.MethodGet, env.URL+"/images", nil)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)

	// DELETE removes the right row and both objects (legacy S5/C14).
	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	_, ok = env.Bunny.Object(lt.ImageZone, storage.ImageKey(alice.ID, row.CDNID))
	require.False(t, ok)
	_, ok = env.Bunny.Object(lt.ImageZone, storage.ThumbnailKey(alice.ID, row.CDNID))
	require.False(t, ok)
	r = env.Do(t, http.MethodGet, one, alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"error":"Image not found"}`, string(r.Body))
	r = env.Do(t, http.MethodDelete, one, alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
}

func TestImageUploadRejects(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")
	good := pngOf(t, 64, 64, 9)
	cases := []struct {
		name   string
		body   any
		status int
		msg    string
	}{
		{"huge header", lt.Upload("image", "big.png", liarPNG(30000, 30000)), 400, "30000×30000"},
		{"not an image", lt.Upload("image", "passwd", []byte("root:x:0:0:root:/root:/bin/bash\n")), 400, "not a supported image"},
		{"truncated", lt.Upload("image", "t.png", good[:len(good)/2]), 400, "truncated"},
		{"traversal name", lt.Upload("image", "../../etc/passwd", []byte("root:x:0:0")), 400, "not a supported image"},
		{"no file", lt.Upload("other", "x.png", good), 400, "No file detected"},
		{"not multipart", `{"image": "x"}`, 400, "No file detected"},
	}
	for _, tc := range cases {
		r := env.Do(t, http.MethodPost, "/user-images", alice.Token, tc.body)
		require.Equal(t, tc.status, r.Status, tc.name)
		require.Contains(t, string(r.Body), tc.msg, tc.name)
		require.True(t, strings.HasPrefix(r.Header.Get("Content-Type"), "application/json"), tc.name)
	}
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM images`))
	require.Zero(t, env.Bunny.Count(lt.ImageZone))

	// Bunny failing: a clean 502 and no row.
	env.Bunny.Fail(http.MethodPut, http.StatusInternalServerError)
	r := env.Do(t, http.MethodPost, "/user-images", alice.Token, lt.Upload("image", "ok.png", good))
	require.Equal(t, http.StatusBadGateway, r.Status)
	require.JSONEq(t, `{"message":"Storage upload failed"}`, string(r.Body))
	require.Zero(t, count(t, env.Pool, `SELECT count(*) FROM images`))

	// Over the body limit: the legacy 413.
	big := bytes.Repeat([]byte{1}, 6<<20)
	r = env.Do(t, http.MethodPost, "/user-images", alice.Token, lt.Upload("image", "big.png", big))
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
	require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, string(r.Body))
}

func TestHugeHeaderKeepsMemoryFlat(t *testing.T) {
	// Not parallel: it measures the heap of the whole process.
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")
	liar := liarPNG(30000, 30000)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range 5 {
		r := env.Do(t, http.MethodPost, "/user-images", alice.Token, lt.Upload("image", "big.png", liar))
		require.Equal(t, http.StatusBadRequest, r.Status)
	}
	runtime.ReadMemStats(&after)
	// Decoding one such image would allocate 3.6 GB.
	require.Less(t, after.TotalAlloc-before.TotalAlloc, uint64(64<<20))
}
