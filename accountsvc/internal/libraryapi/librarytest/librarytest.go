// Package librarytest runs the library API against a real database, Redis
// and a fake BunnyCDN for end-to-end tests, and gives them a small HTTP
// client. Tests talk to Env.URL only, so the same tests run through the
// proxy by pointing URL at a proxy in front of Env.Handler: when
// $LIBRARYTEST_PROXY names a proxy binary (proxy/cmd/proxy), New starts it
// in front of the API and sets URL to it (the whole-stack tests in e2e/ run
// the library tests that way).
//
// This package is for tests only and must never be imported by production
// code.
package librarytest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/libraryapi"
	"github.com/nounsai/sdserver/shared/auth"
	"github.com/nounsai/sdserver/shared/dbtest"
	"github.com/nounsai/sdserver/shared/jobs"
	"github.com/nounsai/sdserver/shared/library"
	"github.com/nounsai/sdserver/shared/media"
	"github.com/nounsai/sdserver/shared/proctest"
	"github.com/nounsai/sdserver/shared/ratelimit"
	"github.com/nounsai/sdserver/shared/storage"
	"github.com/nounsai/sdserver/shared/storage/bunnytest"
	"github.com/nounsai/sdserver/shared/web"
)

// Zone names and keys of the fake Bunny.
const (
	ImageZone = "img-zone"
	AudioZone = "audio-zone"
	VideoZone = "video-zone"
)

// ChallengeToken is the challenge token the Env accepts.
const ChallengeToken = "test-challenge-token"

// ProxyEnv is the environment variable naming a proxy binary to put in
// front of every Env (empty: tests talk to the API directly).
const ProxyEnv = "LIBRARYTEST_PROXY"

// Options tune New. The zero value is the usual setup.
type Options struct {
	// RateLimits turns the legacy limits on (off by default, so tests can
	// call a route more often than a real client may).
	RateLimits bool
	// BodyLimit is the request body limit; 0 means the legacy 5 MiB.
	BodyLimit int64
	// OnAudioQueued and OnProjectQueued, when set, stand in for the job
	// queue (the API's Jobs) and see each row queued, inside its
	// transaction; the answers then name no job.
	OnAudioQueued, OnProjectQueued func(ctx context.Context, tx pgx.Tx, id int64) error
}

// Env is a running library API.
type Env struct {
	// URL is where requests go: the proxy's URL when $LIBRARYTEST_PROXY
	// is set, else DirectURL.
	URL string
	// DirectURL is the test server serving Handler.
	DirectURL string
	// Handler is the echo handler (to put behind a proxy).
	Handler http.Handler
	Pool    *pgxpool.Pool
	Bunny   *bunnytest.Server
	Storage storage.Store
	API     *libraryapi.API
	secret  []byte
}

// New starts an Env on a fresh migrated database; everything stops when
// the test ends.
func New(tb testing.TB, opts Options) *Env {
	tb.Helper()
	pool := dbtest.New(tb)
	rdb, prefix := dbtest.Redis(tb)
	fake := bunnytest.New(tb, map[string]string{ImageZone: "ik", AudioZone: "ak", VideoZone: "vk"})
	st := storage.NewBunny(storage.BunnyConfig{
		BaseURL: fake.URL,
		Zones: map[storage.Kind]storage.Zone{
			storage.KindImage: {Name: ImageZone, AccessKey: "ik"},
			storage.KindAudio: {Name: AudioZone, AccessKey: "ak"},
			storage.KindVideo: {Name: VideoZone, AccessKey: "vk"},
		},
		Public: map[storage.Kind]string{storage.KindAudio: "https://nounsai-audio.b-cdn.net", storage.KindVideo: "https://nounsai-video.b-cdn.net"},
	}, nil)
	log := zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel))
	secret := []byte("librarytest-secret-0123456789abcdef")
	e := web.New(web.Options{Service: "librarytest", Log: log, Registry: prometheus.NewRegistry(), BodyLimit: opts.BodyLimit})
	api := libraryapi.New(libraryapi.Options{
		Pool:            pool,
		Storage:         st,
		Images:          library.NewImages(pool, st, log),
		Verifier:        &auth.Verifier{Secrets: [][]byte{secret}, Revocation: auth.NewRevocations(pool, rdb, prefix, time.Time{})},
		ChallengeTokens: []string{ChallengeToken},
		Limiter:         ratelimit.New(rdb, prefix+"rl:", ratelimit.Options{Disabled: !opts.RateLimits}),
		FFmpeg:          media.FFmpeg{},
		Jobs:            hookQueue(opts),
		Log:             log,
	})
	api.Register(e)
	// The proxy health-checks its account hosts on /health.
	e.GET("/health", func(c echo.Context) error {
		return c.JSON(http.StatusOK, map[string]string{"message": "API is up and running!"})
	})
	srv := httptest.NewServer(e)
	tb.Cleanup(func() {
		srv.Close()
		api.Wait()
	})
	env := &Env{URL: srv.URL, DirectURL: srv.URL, Handler: e, Pool: pool, Bunny: fake, Storage: st, API: api, secret: secret}
	if bin := os.Getenv(ProxyEnv); bin != "" {
		env.URL = startProxy(tb, bin, srv.URL, pool.Config().ConnString(), prefix, opts)
	}
	return env
}

// startProxy runs the proxy binary bin in front of direct, on the Env's
// database (api_hosts, empty) and Redis prefix, and returns its URL.
func startProxy(tb testing.TB, bin, direct, databaseURL, redisPrefix string, opts Options) string {
	tb.Helper()
	redisURL := dbtest.RedisURL()
	bodyLimit := opts.BodyLimit
	if bodyLimit == 0 {
		bodyLimit = 5 << 20
	}
	return proctest.Start(tb, bin, map[string]string{
		"HTTP_ADDR":       "127.0.0.1:0",
		"DATABASE_URL":    databaseURL,
		"REDIS_URL":       redisURL,
		"REDIS_PREFIX":    redisPrefix,
		"ACCOUNTSVC_URLS": direct,
		"CHALLENGE_TOKEN": ChallengeToken,
		"JWT_SECRET":      "librarytest-proxy-secret-0123456789",
		"BODY_LIMIT":      fmt.Sprint(bodyLimit),
		// The API's own limits are what the tests check.
		"RATE_LIMITS":      "off",
		"LOG_FORMAT":       "json",
		"LOG_LEVEL":        "info",
		"SHUTDOWN_TIMEOUT": "1s",
	})
}

// User is a signed-up user and a valid token for it.
type User struct {
	ID    int64
	Token string
}

// NewUser inserts a verified user and issues a token.
func (e *Env) NewUser(tb testing.TB, email string) User {
	tb.Helper()
	var id int64
	err := e.Pool.QueryRow(context.Background(),
		`INSERT INTO users (email, password, is_verified, metadata) VALUES ($1, 'x', true, '{}') RETURNING id`, email).Scan(&id)
	require.NoError(tb, err)
	tok, _, err := auth.Issue(e.secret, id, 0, time.Hour, time.Now())
	require.NoError(tb, err)
	return User{ID: id, Token: tok}
}

// File is a multipart body with one file field.
type File struct {
	Field, Filename string
	Data            []byte
}

// Response is a finished request.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// JSON decodes the body into v.
func (r Response) JSON(tb testing.TB, v any) {
	tb.Helper()
	require.NoError(tb, json.Unmarshal(r.Body, v), "body: %s", r.Body)
}

// Map decodes a JSON object body.
func (r Response) Map(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	r.JSON(tb, &m)
	return m
}

// Do sends a request to e.URL+path. token, when set, goes in Authorization
// (raw, as the legacy frontend sends it); every request carries the
// challenge token, as the frontend does. body is nil, a File (multipart),
// []byte or string (sent as is), or anything else (sent as JSON).
func (e *Env) Do(tb testing.TB, method, path, token string, body any) Response {
	tb.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case File:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, err := mw.CreateFormFile(b.Field, b.Filename)
		require.NoError(tb, err)
		_, _ = fw.Write(b.Data)
		require.NoError(tb, mw.Close())
		rd, contentType = &buf, mw.FormDataContentType()
	case []byte:
		rd, contentType = bytes.NewReader(b), echo.MIMEApplicationJSON
	case string:
		rd, contentType = strings.NewReader(b), echo.MIMEApplicationJSON
	default:
		data, err := json.Marshal(b)
		require.NoError(tb, err)
		rd, contentType = bytes.NewReader(data), echo.MIMEApplicationJSON
	}
	req, err := http.NewRequest(method, e.URL+path, rd)
	require.NoError(tb, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("challenge-token", ChallengeToken)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(tb, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}

// Upload returns a multipart body with data as the file field.
func Upload(field, filename string, data []byte) File {
	return File{Field: field, Filename: filename, Data: data}
}

// queueHooks is a libraryapi.Queue that calls the test's hooks.
type queueHooks struct {
	audio, project func(ctx context.Context, tx pgx.Tx, id int64) error
}

// hookQueue returns the hooks of opts as the API's queue; nil when there
// are none.
func hookQueue(opts Options) libraryapi.Queue {
	if opts.OnAudioQueued == nil && opts.OnProjectQueued == nil {
		return nil
	}
	return queueHooks{audio: opts.OnAudioQueued, project: opts.OnProjectQueued}
}

func (q queueHooks) OnAudioQueued(ctx context.Context, tx pgx.Tx, id int64) error {
	if q.audio == nil {
		return nil
	}
	return q.audio(ctx, tx, id)
}

func (q queueHooks) OnProjectQueued(ctx context.Context, tx pgx.Tx, id int64) error {
	if q.project == nil {
		return nil
	}
	return q.project(ctx, tx, id)
}

func (queueHooks) ForAudio(context.Context, int64) (jobs.Job, error) {
	return jobs.Job{}, jobs.ErrJobNotFound
}

func (queueHooks) ForVideoProject(context.Context, int64) (jobs.Job, error) {
	return jobs.Job{}, jobs.ErrJobNotFound
}
