package e2e_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/shared/storage"
)

// legacyModel is the model id of the frontend's Text to Image body, served
// by gpusvc's built-in nouns backend.
const legacyModel = "alxdfy/noggles-v21-6400-best"

// txt2img is the legacy Text to Image body of the frontend.
func txt2img(seed int) string {
	return fmt.Sprintf(`{"inference_mode":"Text to Image","model_id":%q,"prompt":"a shark head with red noggles",`+
		`"negative_prompt":"","samples":1,"steps":25,"seed":%d,"aspect_ratio":"512:512"}`, legacyModel, seed)
}

// testTextToImage: through the proxy, the legacy Text to Image body returns
// a real Noun PNG; the image and its thumbnail are in storage, the row
// exists, X-Image-Id is exposed to a browser, the credits went down by the
// price, and the same seed and prompt give the same pixels (through the
// proxy and directly on gpusvc).
func testTextToImage(t *testing.T, s *stack) {
	proxy := s.targets()[0]
	gpu := target{"gpusvc", s.GPUURL, s.client}
	u := s.signup(t, proxy, "painter@example.com")
	before := u.credits(t, proxy)
	require.EqualValues(t, 50, before)

	const origin = "https://nounsai.wtf"
	r := proxy.do(t, http.MethodPost, "/images", u.Token, txt2img(42), "Origin", origin)
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "image/png", r.header.Get("Content-Type"))
	require.Equal(t, image.Rect(0, 0, 512, 512), decodePNG(t, r.body).Bounds())
	require.Equal(t, origin, r.header.Get("Access-Control-Allow-Origin"))
	require.Len(t, r.header.Values("Access-Control-Allow-Origin"), 1)
	exposed := strings.Split(strings.Join(r.header.Values("Access-Control-Expose-Headers"), ","), ",")
	for i := range exposed {
		exposed[i] = strings.ToLower(strings.TrimSpace(exposed[i]))
	}
	require.Contains(t, exposed, "x-image-id", "X-Image-Id is readable from a browser")
	require.NotEmpty(t, r.header.Get("X-Request-ID"))
	imageID := r.header.Get("X-Image-Id")
	require.NotEmpty(t, imageID)

	// The row exists and is the caller's; its objects are in storage.
	var owner int64
	var cdn, hash string
	require.NoError(t, s.Pool.QueryRow(context.Background(),
		`SELECT user_id, cdn_id, hash FROM images WHERE id = $1`, imageID).Scan(&owner, &cdn, &hash))
	require.Equal(t, u.ID, owner)
	sum := sha256.Sum256(r.body)
	require.Equal(t, hex.EncodeToString(sum[:]), hash)
	full, ok := s.object(t, storage.ImageKey(u.ID, cdn))
	require.True(t, ok)
	require.Equal(t, r.body, full)
	thumb, ok := s.object(t, storage.ThumbnailKey(u.ID, cdn))
	require.True(t, ok)
	require.Equal(t, 100, decodePNG(t, thumb).Bounds().Dx())

	// The credits went down by the price (1 per Text to Image sample).
	require.Equal(t, before-1, u.credits(t, proxy))

	// The library (accountsvc) serves the generated row through the proxy.
	lib := proxy.do(t, http.MethodGet, fmt.Sprintf("/users/%d/images/%s", u.ID, imageID), u.Token, nil)
	require.Equal(t, http.StatusOK, lib.status, "%s", lib.body)
	require.Equal(t, cdn, lib.Map(t)["cdn_id"])

	// The same seed and prompt give the same pixels, through the proxy
	// and directly on gpusvc; another seed gives others.
	again := proxy.do(t, http.MethodPost, "/images", u.Token, txt2img(42))
	require.Equal(t, http.StatusOK, again.status, "%s", again.body)
	require.Equal(t, r.body, again.body)
	require.Equal(t, imageID, again.header.Get("X-Image-Id"))
	direct := gpu.do(t, http.MethodPost, "/images", u.Token, txt2img(42))
	require.Equal(t, http.StatusOK, direct.status, "%s", direct.body)
	require.Equal(t, r.body, direct.body)
	other := proxy.do(t, http.MethodPost, "/images", u.Token, txt2img(43))
	require.Equal(t, http.StatusOK, other.status, "%s", other.body)
	require.NotEqual(t, r.body, other.body)

	// A preflight from the browser is answered by the proxy.
	pre := proxy.do(t, http.MethodOptions, "/images", "", nil,
		"Origin", origin, "Access-Control-Request-Method", "POST", "Access-Control-Request-Headers", "authorization,challenge-token,content-type")
	require.Equal(t, http.StatusOK, pre.status)
	require.Equal(t, origin, pre.header.Get("Access-Control-Allow-Origin"))
	require.True(t, slices.Contains(strings.Split(pre.header.Get("Access-Control-Allow-Methods"), ", "), "POST"))

	// Bad input through the proxy is a 4xx JSON answer and costs nothing.
	spent := u.credits(t, proxy)
	bad := proxy.do(t, http.MethodPost, "/images", u.Token, `{"inference_mode":"Text to Image","samples":"many"}`)
	require.GreaterOrEqual(t, bad.status, 400)
	require.Less(t, bad.status, 500, "%s", bad.body)
	require.Equal(t, spent, u.credits(t, proxy))
}

// testRefreshHosts: /refresh_hosts answers 200 with the number of GPU
// hosts and never their addresses (GET and POST, with the challenge token),
// and 401 without it.
func testRefreshHosts(t *testing.T, s *stack) {
	proxy := s.targets()[0]
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		r := proxy.do(t, method, "/refresh_hosts", "", nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", method, r.body)
		var out struct {
			Message  string `json:"message"`
			GPUHosts int    `json:"gpu_hosts"`
		}
		r.JSON(t, &out)
		require.Equal(t, 1, out.GPUHosts, method)
		require.NotContains(t, string(r.body), s.GPUURL, "%s: the public answer names no host address", method)
	}
	r := proxy.do(t, http.MethodGet, "/refresh_hosts", "", nil, "challenge-token", "")
	require.Equal(t, http.StatusUnauthorized, r.status)
	gpu, account := s.adminHosts(t)
	require.Len(t, gpu, 1)
	require.Len(t, account, 1)
}
