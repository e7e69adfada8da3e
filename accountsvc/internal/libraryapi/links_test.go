package libraryapi_test

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	lt "github.com/nounsai/sdserver/accountsvc/internal/libraryapi/librarytest"
)

func TestLinksEndToEnd(t *testing.T) {
	t.Parallel()
	env := lt.New(t, lt.Options{})
	alice := env.NewUser(t, "alice@example.com")
	base := fmt.Sprintf("/users/%d/links", alice.ID)

	r := env.Do(t, http.MethodPost, base, alice.Token, map[string]any{"metadata": map[string]any{"title": "my video", "projectId": 3}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	created := r.Map(t)
	share := created["share_id"].(string)
	require.Len(t, share, 22, "128 random bits, base64url")
	id := int64(created["id"].(float64))

	// Anyone with the share id reads it: challenge token only, no body
	// (legacy C9), and no user data.
	r = env.Do(t, http.MethodGet, "/links/"+share, "", nil)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	require.Equal(t, []string{"created_at", "id", "metadata", "share_id", "updated_at"}, keysOf(t, r.Body))
	require.NotContains(t, string(r.Body), "user_id")
	require.Equal(t, "my video", r.Map(t)["metadata"].(map[string]any)["title"])

	// New links cannot be read by their sequential id (legacy S6)...
	r = env.Do(t, http.MethodGet, fmt.Sprintf("/links/%d", id), "", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.JSONEq(t, `{"error":"Link not found"}`, string(r.Body))
	// ...but links from before the migration keep their numeric share URLs.
	var legacyID int64
	require.NoError(t, env.Pool.QueryRow(context.Background(),
		`INSERT INTO links (user_id, metadata) VALUES ($1, '{"old": true}') RETURNING id`, alice.ID).Scan(&legacyID))
	r = env.Do(t, http.MethodGet, fmt.Sprintf("/links/%d", legacyID), "", nil)
	require.Equal(t, http.StatusOK, r.Status)
	require.Nil(t, r.Map(t)["share_id"])
	for _, bad := range []string{"0", "-1", "abc", "AAAAAAAAAAAAAAAAAAAAAA", "99999999999999999999"} {
		r = env.Do(t, http.MethodGet, "/links/"+bad, "", nil)
		require.Equal(t, http.StatusNotFound, r.Status, bad)
	}

	// List: newest first, with share ids.
	r = env.Do(t, http.MethodGet, base+"?limit=1000", alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	var list []map[string]any
	r.JSON(t, &list)
	require.Len(t, list, 2)
	require.Equal(t, []string{"created_at", "id", "metadata", "share_id", "updated_at", "user_id"}, keysOf(t, mustJSON(t, list[1])))
	require.Equal(t, share, list[1]["share_id"])

	// PUT and DELETE by share id or numeric id.
	r = env.Do(t, http.MethodPut, base+"/"+share, alice.Token, map[string]any{"metadata": map[string]any{"title": "new"}})
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = env.Do(t, http.MethodGet, "/links/"+share, "", nil)
	require.Equal(t, "new", r.Map(t)["metadata"].(map[string]any)["title"])
	r = env.Do(t, http.MethodPut, base+"/"+share, alice.Token, map[string]any{})
	require.Equal(t, http.StatusBadRequest, r.Status, "metadata is required")
	r = env.Do(t, http.MethodDelete, fmt.Sprintf("%s/%d", base, id), alice.Token, nil)
	require.Equal(t, http.StatusOK, r.Status)
	r = env.Do(t, http.MethodGet, "/links/"+share, "", nil)
	require.Equal(t, http.StatusNotFound, r.Status)
	r = env.Do(t, http.MethodDelete, fmt.Sprintf("%s/%d", base, id), alice.Token, nil)
	require.Equal(t, http.StatusNotFound, r.Status)
}
