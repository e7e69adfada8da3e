package app_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/app"
	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111/a1111test"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/paced"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/gpuroute"
	"github.com/nounsai/sdserver/shared/storage"
)

const (
	challenge = "test-challenge-token"
	secret    = "test-jwt-secret-0123456789abcdef"
	legacyID  = "alxdfy/noggles-v21-6400-best"
)

// stack is one gpusvc served in-process on a :0 port over its own database,
// Redis prefix and storage folder.
type stack struct {
	url    string
	pool   *pgxpool.Pool
	dir    string
	ledger *credits.Ledger
	client *http.Client
	capa   interface{ InFlight() int }
}

func testConfig(tb testing.TB) app.Config {
	tb.Helper()
	_, prefix := dbtest.Redis(tb)
	redisURL := dbtest.RedisURL()
	return app.Config{
		Common: config.Common{
			Environment:      "local",
			HTTPAddr:         "127.0.0.1:0",
			DatabaseURL:      dbtest.NewURL(tb),
			RedisURL:         redisURL,
			RedisPrefix:      prefix,
			LogFormat:        "json",
			LogLevel:         "error",
			JWTSecrets:       [][]byte{[]byte(secret)},
			ChallengeTokens:  []string{challenge},
			BodyLimit:        5 << 20,
			RateLimits:       true,
			ShutdownTimeout:  5 * time.Second,
			AnonymousUserID:  67,
			AnonymousEnabled: true,
		},
		Storage:   storage.Config{Backend: storage.BackendLocal, Dir: tb.TempDir(), LocalURL: "http://127.0.0.1:1/media", Timeout: time.Minute},
		Credits:   credits.Config{RefundGrantDays: 30},
		Inference: app.InferenceConfig{Default: "nouns"},
		GPU:       app.GPUConfig{Slots: 2, Queue: 4, QueueWait: 30 * time.Second, JobTimeout: time.Minute},
		Limits:    generate.DefaultLimits,
		Email:     email.Config{Backend: "outbox", From: "admin@nounsai.wtf", OutboxDir: tb.TempDir()},
	}
}

// start runs gpusvc with cfg until the test ends.
func start(tb testing.TB, cfg app.Config) *stack {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zap.NewNop())
	require.NoError(tb, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(tb, err)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	pool, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		cancel()
		require.NoError(tb, <-done)
		a.Close()
		pool.Close()
	})
	return &stack{url: "http://" + ln.Addr().String(), pool: pool, dir: cfg.Storage.Dir,
		ledger: credits.NewLedger(pool, credits.Options{}), client: &http.Client{Timeout: time.Minute}, capa: a.Capacity()}
}

// user creates a user with n credits and returns its id and a token.
func (s *stack) user(tb testing.TB, n int64) (int64, string) {
	tb.Helper()
	ctx := context.Background()
	var id int64
	email := fmt.Sprintf("u%d@example.com", time.Now().UnixNano())
	require.NoError(tb, s.pool.QueryRow(ctx, `INSERT INTO users (email, password, metadata) VALUES ($1, 'x', '{}') RETURNING id`, email).Scan(&id))
	if n > 0 {
		_, err := s.ledger.Grant(ctx, s.pool, credits.GrantInput{UserID: id, Amount: n, Memo: "test"})
		require.NoError(tb, err)
	}
	tok, _, err := auth.Issue([]byte(secret), id, 0, time.Hour, time.Now())
	require.NoError(tb, err)
	return id, tok
}

func (s *stack) balance(tb testing.TB, id int64) int64 {
	tb.Helper()
	b, err := s.ledger.Balance(context.Background(), id)
	require.NoError(tb, err)
	return b
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal(r.body, &m), "body: %s", r.body)
	return m
}

// post sends a JSON body (a string or anything to marshal) with the
// challenge token and, when set, the token.
func (s *stack) post(tb testing.TB, path, token string, body any, hdr ...string) response {
	tb.Helper()
	var raw []byte
	switch b := body.(type) {
	case string:
		raw = []byte(b)
	default:
		var err error
		raw, err = json.Marshal(b)
		require.NoError(tb, err)
	}
	req, err := http.NewRequest(http.MethodPost, s.url+path, bytes.NewReader(raw))
	require.NoError(tb, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("challenge-token", challenge)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := s.client.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

func (s *stack) get(tb testing.TB, path string) response {
	tb.Helper()
	resp, err := s.client.Get(s.url + path)
	require.NoError(tb, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// txt2img is the legacy Text to Image body of the frontend.
func txt2img(seed int, samples int) map[string]any {
	return map[string]any{
		"inference_mode": "Text to Image", "model_id": legacyID, "prompt": "a frog wearing noggles",
		"negative_prompt": "", "samples": samples, "steps": 20, "seed": seed, "aspect_ratio": "256:256",
	}
}

func decodePNG(tb testing.TB, data []byte) image.Image {
	tb.Helper()
	img, err := png.Decode(bytes.NewReader(data))
	require.NoError(tb, err)
	return img
}

func TestTextToImageEndToEnd(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	uid, tok := s.user(t, 10)

	r := s.post(t, "/images", tok, txt2img(42, 2), "Origin", "https://nounsai.wtf")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, "image/png", r.header.Get("Content-Type"))
	// CORS is the proxy's (edgepolicy): gpusvc adds no header the proxy
	// would strip.
	require.Empty(t, r.header.Values("Access-Control-Expose-Headers"))
	require.Empty(t, r.header.Values("Access-Control-Allow-Origin"))
	img := decodePNG(t, r.body)
	require.Equal(t, image.Rect(0, 0, 256, 256), img.Bounds())
	ids := strings.Split(r.header.Get("X-Image-Ids"), ",")
	require.Len(t, ids, 2)
	require.Equal(t, ids[0], r.header.Get("X-Image-Id"))
	require.NotEqual(t, ids[0], ids[1], "every sample is stored")

	// The credits went down by the price (1 per image × 2 samples).
	require.Equal(t, int64(8), s.balance(t, uid))

	// The row exists, its hash is the SHA-256 of the bytes served and
	// stored, its metadata holds the request minus secrets and the traits.
	var hash, cdnID string
	var parent *int64
	var meta []byte
	require.NoError(t, s.pool.QueryRow(context.Background(),
		`SELECT hash, cdn_id, parent_id, metadata::text FROM images WHERE id = $1 AND user_id = $2`, ids[0], uid).
		Scan(&hash, &cdnID, &parent, &meta))
	sum := sha256.Sum256(r.body)
	require.Equal(t, hex.EncodeToString(sum[:]), hash)
	require.NotNil(t, parent)
	require.Equal(t, int64(-1), *parent)
	var m map[string]any
	require.NoError(t, json.Unmarshal(meta, &m))
	require.Equal(t, "Text to Image", m["inference_mode"])
	require.Equal(t, legacyID, m["model_id"])
	require.Equal(t, "256:256", m["aspect_ratio"])
	require.Equal(t, false, m["has_input_image"])
	require.Equal(t, "nouns", m["backend"])
	require.Contains(t, m["info"], "traits")

	full, err := os.ReadFile(filepath.Join(s.dir, storage.ImageKey(uid, cdnID)))
	require.NoError(t, err)
	require.Equal(t, r.body, full)
	thumb, err := os.ReadFile(filepath.Join(s.dir, storage.ThumbnailKey(uid, cdnID)))
	require.NoError(t, err)
	require.Equal(t, image.Rect(0, 0, 100, 100), decodePNG(t, thumb).Bounds())

	// Same seed and prompt: the same pixels (and, by dedup, the same row).
	r2 := s.post(t, "/images", tok, txt2img(42, 1))
	require.Equal(t, http.StatusOK, r2.status, "%s", r2.body)
	require.Equal(t, r.body, r2.body)
	require.Equal(t, ids[0], r2.header.Get("X-Image-Id"))
	// Another seed: other pixels.
	r3 := s.post(t, "/images", tok, txt2img(43, 1))
	require.Equal(t, http.StatusOK, r3.status)
	require.NotEqual(t, r.body, r3.body)

	// JPEG only when Accept prefers it.
	r4 := s.post(t, "/images", tok, txt2img(42, 1), "Accept", "image/jpeg, image/png;q=0.5")
	require.Equal(t, http.StatusOK, r4.status)
	require.Equal(t, "image/jpeg", r4.header.Get("Content-Type"))
}

func TestEveryModeOnNouns(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	uid, tok := s.user(t, 100)

	// The input is a photo-like gradient the user uploaded earlier (a
	// Noun would come back unchanged from img2img and dedup to itself).
	src := image.NewRGBA(image.Rect(0, 0, 256, 256))
	for y := range 256 {
		for x := range 256 {
			src.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(255 - x), 255})
		}
	}
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, src))
	sum := sha256.Sum256(buf.Bytes())
	var baseID string
	require.NoError(t, s.pool.QueryRow(context.Background(), `INSERT INTO images (user_id, base_64, thumb_base_64, hash, metadata, cdn_id)
		VALUES ($1, '0', '0', $2, '{}', 'upload') RETURNING id::text`, uid, hex.EncodeToString(sum[:])).Scan(&baseID))
	b64 := "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())

	// /mask gives the mask the Mask mode takes.
	mr := s.post(t, "/mask", "", map[string]any{"base64": b64, "coordinates": [][]int{{128, 40}, {10, 10}}})
	require.Equal(t, http.StatusOK, mr.status, "%s", mr.body)
	mask := mr.json(t)["mask"].(string)
	packed, err := base64.StdEncoding.DecodeString(mask)
	require.NoError(t, err)
	require.Len(t, packed, 256*256/8)

	modes := []struct {
		body map[string]any
		want int
	}{
		{map[string]any{"inference_mode": "Image to Image", "model_id": legacyID, "base_64": b64, "prompt": "x",
			"negative_prompt": "", "samples": "2", "steps": "10", "seed": "5", "strength": "0.6", "aspect_ratio": "768:768"}, 200},
		{map[string]any{"inference_mode": "Pix to Pix", "model_id": "timbrooks/instruct-pix2pix", "base_64": b64,
			"prompt": "give it a shark head", "samples": 1, "steps": 10, "seed": 5}, 200},
		{map[string]any{"inference_mode": "ControlNet Outlines", "model_id": legacyID, "base_64": b64, "prompt": "x",
			"negative_prompt": "", "steps": 10, "seed": 5, "strength": 2}, 200},
		{map[string]any{"inference_mode": "ControlNet Depth", "model_id": "runwayml/stable-diffusion-v1-5", "base_64": b64,
			"prompt": "x", "negative_prompt": "", "steps": 10, "seed": 5, "strength": 1}, 501},
		{map[string]any{"inference_mode": "ControlNet Segmentation", "model_id": "runwayml/stable-diffusion-v1-5", "base_64": b64,
			"prompt": "x", "negative_prompt": "", "steps": 10, "seed": 5, "strength": 1}, 501},
		{map[string]any{"inference_mode": "Mask", "base_64": b64, "mask": mask, "prompt": "a cat head",
			"negative_prompt": "", "seed": 5}, 200},
	}
	for _, m := range modes {
		before := s.balance(t, uid)
		r := s.post(t, "/images", tok, m.body)
		require.Equal(t, m.want, r.status, "%s: %s", m.body["inference_mode"], r.body)
		if m.want == 200 {
			require.Equal(t, "image/png", r.header.Get("Content-Type"))
			decodePNG(t, r.body)
			require.Less(t, s.balance(t, uid), before)
			var parent int64
			require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT parent_id FROM images WHERE id = $1`,
				r.header.Get("X-Image-Id")).Scan(&parent))
			require.Equal(t, baseID, fmt.Sprint(parent), "parent from the input image's hash")
			var meta map[string]any
			require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT metadata FROM images WHERE id = $1`,
				r.header.Get("X-Image-Id")).Scan(&meta))
			require.Equal(t, true, meta["has_input_image"])
			require.NotContains(t, meta, "base_64")
			require.NotContains(t, meta, "mask")
		} else {
			body := r.json(t)
			require.Contains(t, body["message"], "not supported by the nouns backend")
			require.Equal(t, "nouns", body["backend"])
			require.Equal(t, before, s.balance(t, uid), "nothing charged")
		}
	}

	ep := s.post(t, "/extend_prompt", "", map[string]any{"prompt": "a frog"})
	require.Equal(t, http.StatusOK, ep.status, "%s", ep.body)
	require.True(t, strings.HasPrefix(ep.json(t)["prompt"].(string), "a frog"))

	ir := s.post(t, "/interrogate", tok, map[string]any{"base_64": b64})
	require.Equal(t, http.StatusOK, ir.status, "%s", ir.body)
	require.Contains(t, ir.json(t)["prompt"], "noun")

	before := s.balance(t, uid)
	ur := s.post(t, "/upscale", tok, map[string]any{"base_64": b64})
	require.Equal(t, http.StatusOK, ur.status, "%s", ur.body)
	require.Equal(t, image.Rect(0, 0, 1024, 1024), decodePNG(t, ur.body).Bounds())
	require.Empty(t, ur.header.Get("X-Image-Id"))
	require.Equal(t, before-1, s.balance(t, uid))

	// The JWT routes need a token; the challenge-token routes need it.
	require.Equal(t, http.StatusUnauthorized, s.post(t, "/upscale", "", map[string]any{"base_64": b64}).status)
	req, _ := http.NewRequest(http.MethodPost, s.url+"/extend_prompt", strings.NewReader(`{"prompt":"x"}`))
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestBackendFailureRefundsAndIs502(t *testing.T) {
	t.Parallel()
	fake := a1111test.NewServer(t, a1111test.Options{})
	cfg := testConfig(t)
	cfg.Inference = app.InferenceConfig{Default: "a1111", A1111URL: fake.URL(), A1111Timeout: 10 * time.Second}
	s := start(t, cfg)
	uid, tok := s.user(t, 5)

	fake.FailNext(1, http.StatusInternalServerError, "CUDA out of memory")
	r := s.post(t, "/images", tok, txt2img(1, 2))
	require.Equal(t, http.StatusBadGateway, r.status, "%s", r.body)
	require.Contains(t, r.json(t)["message"], "a1111")
	require.Equal(t, int64(5), s.balance(t, uid), "refunded")
	var n int
	require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT count(*) FROM images WHERE user_id = $1`, uid).Scan(&n))
	require.Zero(t, n)

	// The fake works again: a real result from the a1111 backend.
	r = s.post(t, "/images", tok, txt2img(1, 1))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, int64(4), s.balance(t, uid))

	// a1111 offers no extend_prompt: 501 naming it.
	ep := s.post(t, "/extend_prompt", "", map[string]any{"prompt": "x"})
	require.Equal(t, http.StatusNotImplemented, ep.status)
	require.Equal(t, "extend_prompt", ep.json(t)["operation"])
}

func TestCapacityFullIs503WithRetryAfter(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.GPU.Slots, cfg.GPU.Queue = 1, 0
	cfg.GPU.Pacing = paced.Options{BaseSeconds: 2, Speed: 1, Slowdown: 1}
	s := start(t, cfg)
	uid, tok := s.user(t, 5)

	var wg sync.WaitGroup
	wg.Add(1)
	var first response
	go func() {
		defer wg.Done()
		first = s.post(t, "/images", tok, txt2img(1, 1))
	}()
	require.Eventually(t, func() bool { return s.capa.InFlight() == 1 }, 10*time.Second, 5*time.Millisecond)
	h := s.get(t, "/health")
	require.Equal(t, http.StatusOK, h.status)
	health := h.json(t)
	require.Equal(t, "API is up and running!", health["message"])
	require.EqualValues(t, 1, health["slots"])
	require.EqualValues(t, 1, health["in_flight"])
	require.EqualValues(t, 0, health["queued"])
	require.Equal(t, "nouns", health["backend"])
	require.Contains(t, health["models"], legacyID)

	r := s.post(t, "/images", tok, txt2img(2, 1), "X-Request-ID", "req-refused-full")
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
	require.NotEmpty(t, r.header.Get("Retry-After"))
	require.NotEmpty(t, r.json(t)["message"])
	require.Equal(t, "1", r.header.Get(gpuroute.HostFullHeader), "the proxy may send it to another host")
	wg.Wait()
	require.Equal(t, http.StatusOK, first.status)
	require.Equal(t, int64(4), s.balance(t, uid), "only the served request is charged")

	// The refused request changed nothing, its X-Request-ID included: the
	// proxy's retry of it (on this host or another sharing the ledger) is
	// served and charged once, not refused as a replay (409).
	r = s.post(t, "/images", tok, txt2img(2, 1), "X-Request-ID", "req-refused-full")
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	require.Equal(t, int64(3), s.balance(t, uid))
	r = s.post(t, "/images", tok, txt2img(2, 1), "X-Request-ID", "req-refused-full")
	require.Equal(t, http.StatusConflict, r.status, "a served request's ID stays used: %s", r.body)
	require.Equal(t, int64(3), s.balance(t, uid))
}

// pngHeader is a valid PNG signature and IHDR claiming w×h pixels, with no
// pixel data: decoding it must never be attempted.
func pngHeader(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 6
	_ = binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	chunk := append([]byte("IHDR"), ihdr...)
	b.Write(chunk)
	_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

func TestBadInputsAre4xxJSON(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	uid, tok := s.user(t, 50)
	small := image.NewRGBA(image.Rect(0, 0, 16, 16))
	var sb bytes.Buffer
	require.NoError(t, png.Encode(&sb, small))
	giant := base64.StdEncoding.EncodeToString(pngHeader(30000, 30000))
	img2img := func(b64 string) map[string]any {
		return map[string]any{"inference_mode": "Image to Image", "base_64": b64, "prompt": "x", "samples": 1, "steps": 10, "seed": 1, "strength": 0.5}
	}
	with := func(k string, v any) map[string]any {
		b := txt2img(1, 1)
		if v == nil {
			delete(b, k)
		} else {
			b[k] = v
		}
		return b
	}
	tests := []struct {
		name string
		body any
		want int
	}{
		{"not json", "{", 400},
		{"empty body", "", 400},
		{"array body", "[1]", 400},
		{"missing inference_mode", with("inference_mode", nil), 400},
		{"unknown mode", with("inference_mode", "Video"), 400},
		{"missing prompt", with("prompt", nil), 400},
		{"prompt not a string", with("prompt", 5), 400},
		{"samples not a number", with("samples", "many"), 400},
		{"samples a list", with("samples", []int{1}), 400},
		{"samples 99", with("samples", 99), 400},
		{"samples 0", with("samples", 0), 400},
		{"steps 0", with("steps", 0), 400},
		{"steps 51", with("steps", "51"), 400},
		{"seed NaN", with("seed", "NaN"), 400},
		{"5000 px aspect ratio", with("aspect_ratio", "5000:512"), 400},
		{"tiny aspect ratio", with("aspect_ratio", "8:8"), 400},
		{"bad aspect ratio", with("aspect_ratio", "square"), 400},
		{"prompt too long", with("prompt", strings.Repeat("a", 1001)), 400},
		{"missing base_64", img2img(""), 400},
		{"bad base64", img2img("data:image/png;base64,@@@not-base64@@@"), 400},
		{"base64 of text", img2img(base64.StdEncoding.EncodeToString([]byte("hello, not an image"))), 400},
		{"30000x30000 png header", img2img(giant), 400},
		{"input too small", img2img(base64.StdEncoding.EncodeToString(sb.Bytes())), 400},
		{"strength 2 for img2img", map[string]any{"inference_mode": "Image to Image", "base_64": giant, "prompt": "x", "strength": 2}, 400},
		{"mask missing", map[string]any{"inference_mode": "Mask", "base_64": giant, "prompt": "x"}, 400},
		{"unknown model is served by default", with("model_id", "no/such-model"), 200},
	}
	for _, tt := range tests {
		r := s.post(t, "/images", tok, tt.body)
		require.Equal(t, tt.want, r.status, "%s: %s", tt.name, r.body)
		if tt.want != 200 {
			require.Equal(t, "application/json", strings.Split(r.header.Get("Content-Type"), ";")[0], tt.name)
			require.NotEmpty(t, r.json(t)["message"], tt.name)
		}
	}
	require.Equal(t, int64(49), s.balance(t, uid), "only the valid request was charged")

	for _, tt := range []struct {
		path string
		body any
	}{
		{"/mask", map[string]any{"base64": giant, "coordinates": [][]int{{1, 1}}}},
		{"/mask", map[string]any{"base64": "xx", "coordinates": "nope"}},
		{"/mask", map[string]any{"coordinates": [][]int{{1, 1}}}},
		{"/extend_prompt", map[string]any{"prompt": strings.Repeat("a", 1001)}},
		{"/extend_prompt", map[string]any{}},
		{"/interrogate", map[string]any{"base_64": giant}},
	} {
		r := s.post(t, tt.path, tok, tt.body)
		require.Equal(t, http.StatusBadRequest, r.status, "%s %v: %s", tt.path, tt.body, r.body)
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	_, tok := s.user(t, 0)

	// An invalid or expired token is 401, never anonymous (S9).
	r := s.post(t, "/images", "garbage", txt2img(1, 1))
	require.Equal(t, http.StatusUnauthorized, r.status)
	require.Equal(t, auth.MsgTokenInvalid, r.json(t)["message"])
	expired, _, err := auth.Issue([]byte(secret), 1, 0, time.Hour, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	require.Equal(t, http.StatusUnauthorized, s.post(t, "/images", expired, txt2img(1, 1)).status)

	// A user without credits gets 402.
	r = s.post(t, "/images", tok, txt2img(1, 1))
	require.Equal(t, http.StatusPaymentRequired, r.status, "%s", r.body)
	require.EqualValues(t, 1, r.json(t)["required"])

	// No token: the anonymous user 67, free.
	r = s.post(t, "/images", "", txt2img(1, 3))
	require.Equal(t, http.StatusOK, r.status, "%s", r.body)
	var owner int64
	require.NoError(t, s.pool.QueryRow(context.Background(), `SELECT user_id FROM images WHERE id = $1`, r.header.Get("X-Image-Id")).Scan(&owner))
	require.Equal(t, int64(67), owner)
	require.NotEmpty(t, r.header.Get("X-RateLimit-Limit"))
	require.Equal(t, "16", r.header.Get("X-RateLimit-Limit"))

	// No challenge token: 401.
	req, _ := http.NewRequest(http.MethodPost, s.url+"/images", strings.NewReader(`{}`))
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

func TestModelsList(t *testing.T) {
	t.Parallel()
	s := start(t, testConfig(t))
	r := s.get(t, "/models")
	require.Equal(t, http.StatusOK, r.status)
	var list []struct {
		ModelID    string   `json:"model_id"`
		Backend    string   `json:"backend"`
		Available  bool     `json:"available"`
		Operations []string `json:"operations"`
	}
	require.NoError(t, json.Unmarshal(r.body, &list))
	got := map[string][]string{}
	for _, m := range list {
		require.True(t, m.Available, m.ModelID)
		require.Equal(t, "nouns", m.Backend, m.ModelID)
		got[m.ModelID] = m.Operations
	}
	for _, id := range []string{"nouns", legacyID, "timbrooks/instruct-pix2pix", "runwayml/stable-diffusion-v1-5",
		"alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef"} {
		require.Contains(t, got, id)
	}
	require.Contains(t, got["nouns"], "txt2img")
	require.NotContains(t, got["nouns"], "controlnet_depth")
	require.Equal(t, []string{"txt2img", "img2img"}, got["alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef"])

	// A row naming a backend this host lacks: listed unavailable, 503 when used.
	_, err := s.pool.Exec(context.Background(), `UPDATE models SET backend = 'replicate' WHERE model_id LIKE 'alx-ai/%'`)
	require.NoError(t, err)
	_, tok := s.user(t, 5)
	body := txt2img(1, 1)
	body["model_id"] = "alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef"
	r = s.post(t, "/images", tok, body)
	require.Equal(t, http.StatusServiceUnavailable, r.status, "%s", r.body)
}

func TestBackendTimeoutIs504AndRefunds(t *testing.T) {
	t.Parallel()
	fake := a1111test.NewServer(t, a1111test.Options{})
	fake.SetDelay(3 * time.Second)
	cfg := testConfig(t)
	cfg.Inference = app.InferenceConfig{Default: "a1111", A1111URL: fake.URL()}
	cfg.GPU.JobTimeout = 200 * time.Millisecond
	s := start(t, cfg)
	uid, tok := s.user(t, 3)
	r := s.post(t, "/images", tok, txt2img(1, 1))
	require.Equal(t, http.StatusGatewayTimeout, r.status, "%s", r.body)
	require.Equal(t, int64(3), s.balance(t, uid))
}

func TestSelfRegistration(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.PublicURL, cfg.RegisterHost = "http://10.9.8.7:8091", true
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zap.NewNop())
	require.NoError(t, err)
	defer a.Close()
	pool, err := pgxpool.New(context.Background(), cfg.DatabaseURL)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(context.Background(), `INSERT INTO api_hosts (address, draining) VALUES ($1, true)`, cfg.PublicURL)
	require.NoError(t, err)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln, nil) }()
	draining := func() bool {
		var d bool
		require.NoError(t, pool.QueryRow(context.Background(), `SELECT draining FROM api_hosts WHERE address = $1`, cfg.PublicURL).Scan(&d))
		return d
	}
	require.Eventually(t, func() bool { return !draining() }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
	require.True(t, draining())
}
