package e2e_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// target is one way into the stack: through the proxy, or directly to the
// service that owns the routes under test.
type target struct {
	name, url string
	client    *http.Client
}

// targets returns the proxy and the direct accountsvc.
func (s *stack) targets() []target {
	return []target{{"proxy", s.ProxyURL, s.client}, {"direct", s.AccountURL, s.client}}
}

// response is a finished request.
type response struct {
	status int
	header http.Header
	body   []byte
}

// JSON decodes the body into v.
func (r response) JSON(tb testing.TB, v any) {
	tb.Helper()
	require.NoError(tb, json.Unmarshal(r.body, v), "body: %s", r.body)
}

// Map decodes a JSON object body.
func (r response) Map(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	r.JSON(tb, &m)
	return m
}

// ID is the body's "id" as an integer.
func (r response) ID(tb testing.TB) int64 {
	tb.Helper()
	id, ok := r.Map(tb)["id"].(float64)
	require.True(tb, ok, "no id in %s", r.body)
	return int64(id)
}

// file is a multipart body with one file field, as the frontend's
// FormData uploads.
type file struct {
	field, filename string
	data            []byte
}

// do sends a request like the legacy frontend: the challenge token always,
// token (when set) raw in Authorization, body nil, a file (multipart), a
// string (sent as is, as JSON) or anything else (marshalled to JSON).
// headers are extra name, value pairs.
func (tg target) do(tb testing.TB, method, path, token string, body any, headers ...string) response {
	tb.Helper()
	var rd io.Reader
	contentType := ""
	switch b := body.(type) {
	case nil:
	case file:
		var buf bytes.Buffer
		mw := multipart.NewWriter(&buf)
		fw, err := mw.CreateFormFile(b.field, b.filename)
		require.NoError(tb, err)
		_, err = fw.Write(b.data)
		require.NoError(tb, err)
		require.NoError(tb, mw.Close())
		rd, contentType = &buf, mw.FormDataContentType()
	case string:
		rd, contentType = strings.NewReader(b), "application/json"
	default:
		data, err := json.Marshal(b)
		require.NoError(tb, err)
		rd, contentType = bytes.NewReader(data), "application/json"
	}
	req, err := http.NewRequest(method, tg.url+path, rd)
	require.NoError(tb, err)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("challenge-token", challenge)
	if token != "" {
		req.Header.Set("Authorization", token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := tg.client.Do(req)
	require.NoError(tb, err, "%s %s via %s", method, path, tg.name)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(tb, err)
	if resp.StatusCode >= 400 {
		require.True(tb, strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json"),
			"%s %s via %s: errors are JSON: %d %s", method, path, tg.name, resp.StatusCode, data)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: data}
}

// basicAuth is the legacy login header.
func basicAuth(user, password string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+password))
}

// verifyLink finds the verification key in an email's text.
var verifyLink = regexp.MustCompile(`/verify/([0-9a-f]{64,})\b`)

// verifyKey waits for the verification email to addr in the outbox and
// returns the key of its link.
func (s *stack) verifyKey(tb testing.TB, addr string) string {
	tb.Helper()
	var key string
	require.Eventually(tb, func() bool {
		files, err := filepath.Glob(filepath.Join(s.OutboxDir, "*.eml"))
		require.NoError(tb, err)
		for _, f := range files {
			to, text := readEmail(tb, f)
			if !strings.EqualFold(to, addr) {
				continue
			}
			if m := verifyLink.FindStringSubmatch(text); m != nil {
				key = m[1]
				return true
			}
		}
		return false
	}, 20*time.Second, 50*time.Millisecond, "no verification email to %s", addr)
	return key
}

// readEmail returns the recipient and the text part of an .eml file.
func readEmail(tb testing.TB, path string) (to, text string) {
	tb.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(tb, err)
	msg, err := mail.ReadMessage(bytes.NewReader(raw))
	require.NoError(tb, err)
	addr, err := mail.ParseAddress(msg.Header.Get("To"))
	require.NoError(tb, err)
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	require.NoError(tb, err)
	if !strings.HasPrefix(mediaType, "multipart/") {
		b, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
		require.NoError(tb, err)
		return addr.Address, string(b)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			return addr.Address, text
		}
		require.NoError(tb, err)
		if strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
			b, err := io.ReadAll(quotedprintable.NewReader(p))
			require.NoError(tb, err)
			text = string(b)
		}
	}
}

// user is a signed-up, verified, logged-in user.
type user struct {
	ID              int64
	Email, Password string
	Token           string
}

// signup runs the legacy flow through tg (signup, the key from the
// outbox, verify, login with Basic) and returns the logged-in user.
func (s *stack) signup(tb testing.TB, tg target, addr string) user {
	tb.Helper()
	const password = "correct horse battery"
	r := tg.do(tb, http.MethodPost, "/users", "",
		map[string]any{"email": addr, "password": password, "metadata": map[string]any{"theme": "dark"}})
	require.Equal(tb, http.StatusOK, r.status, "signup via %s: %s", tg.name, r.body)
	id := r.ID(tb)
	key := s.verifyKey(tb, addr)
	r = tg.do(tb, http.MethodPost, "/users/verify/"+key, "", nil)
	require.Equal(tb, http.StatusOK, r.status, "verify via %s: %s", tg.name, r.body)
	r = tg.do(tb, http.MethodPost, "/login", "", nil, "Authorization", basicAuth(addr, password))
	require.Equal(tb, http.StatusOK, r.status, "login via %s: %s", tg.name, r.body)
	tok, ok := r.Map(tb)["token"].(string)
	require.True(tb, ok, "%s", r.body)
	return user{ID: id, Email: addr, Password: password, Token: tok}
}

// credits reads the user's balance through tg.
func (u user) credits(tb testing.TB, tg target) float64 {
	tb.Helper()
	r := tg.do(tb, http.MethodGet, fmt.Sprintf("/users/%d/credits", u.ID), u.Token, nil)
	require.Equal(tb, http.StatusOK, r.status, "%s", r.body)
	c, ok := r.Map(tb)["credits"].(float64)
	require.True(tb, ok, "%s", r.body)
	return c
}

// count runs a count query on the stack's database.
// object reports whether key exists in the shared storage folder, and its
// bytes.
func (s *stack) object(tb testing.TB, key string) ([]byte, bool) {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(s.StorageDir, filepath.FromSlash(key)))
	if os.IsNotExist(err) {
		return nil, false
	}
	require.NoError(tb, err)
	return data, true
}
