package accountapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/nounsai/sdserver/accountsvc/internal/app"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/dbtest"
)

const challenge = "test-challenge-token"

// env is a running accountsvc (app.New, real PostgreSQL and Redis, the
// outbox email backend in a temp dir) and a pool on its database.
type env struct {
	tb     testing.TB
	h      http.Handler
	pool   *pgxpool.Pool
	outbox string
}

func newEnv(tb testing.TB, rateLimits bool) *env {
	tb.Helper()
	dbURL := dbtest.NewURL(tb)
	_, prefix := dbtest.Redis(tb)
	redisURL := dbtest.RedisURL()
	outbox := tb.TempDir()
	rl := "off"
	if rateLimits {
		rl = "on"
	}
	cfg, err := app.LoadConfig(config.FromMap(map[string]string{
		"DATABASE_URL":         dbURL,
		"REDIS_URL":            redisURL,
		"REDIS_PREFIX":         prefix,
		"OUTBOX_DIR":           outbox,
		"STORAGE_DIR":          tb.TempDir(),
		"RATE_LIMITS":          rl,
		"CHALLENGE_TOKEN":      challenge,
		"APP_BASE_URL":         "http://app.test",
		"SIGNUP_BONUS_CREDITS": "50",
		"SHUTDOWN_TIMEOUT":     "5s",
	}))
	require.NoError(tb, err)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zaptest.NewLogger(tb, zaptest.Level(zap.WarnLevel)))
	require.NoError(tb, err)
	tb.Cleanup(func() {
		cancel()
		a.Close()
	})
	pool, err := pgxpool.New(context.Background(), dbURL)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return &env{tb: tb, h: a.Handler(), pool: pool, outbox: outbox}
}

// response is a recorded answer.
type response struct {
	Code   int
	Header http.Header
	Body   string
}

func (r response) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	require.NoError(tb, json.Unmarshal([]byte(r.Body), &m), r.Body)
	return m
}

// req describes a request; Headers may include "RemoteAddr".
type req struct {
	Method, Path string
	Body         string
	Headers      map[string]string
}

func (e *env) do(r req) response {
	e.tb.Helper()
	var body io.Reader
	if r.Body != "" {
		body = strings.NewReader(r.Body)
	}
	hr := httptest.NewRequest(r.Method, r.Path, body)
	for k, v := range r.Headers {
		if k == "RemoteAddr" {
			hr.RemoteAddr = v
			continue
		}
		hr.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	e.h.ServeHTTP(w, hr)
	res := response{Code: w.Code, Header: w.Header(), Body: w.Body.String()}
	if res.Code >= 400 {
		require.Contains(e.tb, res.Header.Get("Content-Type"), "application/json", "%s %s: %d %s", r.Method, r.Path, res.Code, res.Body)
	}
	return res
}

func ct(extra ...string) map[string]string {
	h := map[string]string{"challenge-token": challenge}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

func basic(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

func jsonBody(tb testing.TB, v any) string {
	tb.Helper()
	b, err := json.Marshal(v)
	require.NoError(tb, err)
	return string(b)
}

// email is one message of the outbox, decoded.
type email struct {
	To, Subject, Text string
}

// waitEmail waits for an outbox message to `to` with subject, returns it
// and removes its file (so the next wait sees the next one).
func (e *env) waitEmail(to, subject string) email {
	e.tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		files, err := filepath.Glob(filepath.Join(e.outbox, "*.eml"))
		require.NoError(e.tb, err)
		for _, f := range files {
			m := readEML(e.tb, f)
			if strings.EqualFold(m.To, to) && m.Subject == subject {
				require.NoError(e.tb, os.Remove(f))
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	e.tb.Fatalf("no email %q to %s in the outbox", subject, to)
	return email{}
}

func readEML(tb testing.TB, path string) email {
	tb.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(tb, err)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(tb, err)
	to, err := mail.ParseAddress(msg.Header.Get("To"))
	require.NoError(tb, err)
	out := email{To: to.Address, Subject: msg.Header.Get("Subject")}
	_, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(tb, err)
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		require.NoError(tb, err)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			b, err := io.ReadAll(quotedprintable.NewReader(p))
			require.NoError(tb, err)
			out.Text = string(b)
		}
	}
	return out
}

var linkKey = regexp.MustCompile(`http://app\.test/(verify|reset)/([0-9a-f]{96})\b`)

// keyOf extracts the key of the link in m.
func keyOf(tb testing.TB, m email, kind string) string {
	tb.Helper()
	sm := linkKey.FindStringSubmatch(m.Text)
	require.NotNil(tb, sm, m.Text)
	require.Equal(tb, kind, sm[1])
	return sm[2]
}

// signup posts a legacy signup body and returns the id.
func (e *env) signup(addr, password string, extra map[string]any) int64 {
	e.tb.Helper()
	body := map[string]any{"email": addr, "password": password, "metadata": map[string]any{"theme": "dark"}}
	for k, v := range extra {
		body[k] = v
	}
	r := e.do(req{Method: http.MethodPost, Path: "/users", Body: jsonBody(e.tb, body), Headers: ct()})
	require.Equal(e.tb, http.StatusOK, r.Code, r.Body)
	return int64(r.JSON(e.tb)["id"].(float64))
}

// verifiedUser signs up and verifies addr, returning the id.
func (e *env) verifiedUser(addr, password string, extra map[string]any) int64 {
	e.tb.Helper()
	id := e.signup(addr, password, extra)
	key := keyOf(e.tb, e.waitEmail(addr, "NounsAI Playground Verification"), "verify")
	r := e.do(req{Method: http.MethodPost, Path: "/users/verify/" + key, Headers: ct()})
	require.Equal(e.tb, http.StatusOK, r.Code, r.Body)
	return id
}

// login returns a token.
func (e *env) login(addr, password string) string {
	e.tb.Helper()
	r := e.do(req{Method: http.MethodPost, Path: "/login", Headers: ct("Authorization", basic(addr, password))})
	require.Equal(e.tb, http.StatusOK, r.Code, r.Body)
	return r.JSON(e.tb)["token"].(string)
}
