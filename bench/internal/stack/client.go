package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"mime/quotedprintable"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"time"
)

// Client talks to the stack like the legacy frontend: the challenge token
// on every request, the JWT raw in Authorization. It is safe for
// concurrent use.
type Client struct {
	// Base is the URL requests go to (usually the proxy).
	Base string
	// HTTP sends the requests.
	HTTP *http.Client
}

// NewClient returns a client for base with a 60 s request timeout and
// enough idle connections for conns concurrent callers.
func NewClient(base string, conns int) *Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConnsPerHost = max(conns, 2)
	t.MaxIdleConns = max(conns, 2) * 2
	return &Client{Base: base, HTTP: &http.Client{Timeout: 60 * time.Second, Transport: t}}
}

// Response is a finished request; Err is set when no HTTP response came
// (Status 0).
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Err    error
	// Start and End are when the request was sent and its body read.
	Start, End time.Time
}

// OK reports a 2xx answer.
func (r Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Took is End - Start.
func (r Response) Took() time.Duration { return r.End.Sub(r.Start) }

// String describes the outcome in a few words for reports.
func (r Response) String() string {
	if r.Err != nil {
		return "error: " + r.Err.Error()
	}
	body := strings.TrimSpace(string(r.Body))
	if len(body) > 160 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		body = fmt.Sprintf("%d bytes of %s", len(r.Body), r.Header.Get("Content-Type"))
	}
	return fmt.Sprintf("%d %s", r.Status, body)
}

// Request is one call: Body is sent as is with ContentType.
type Request struct {
	Method, Path, Token string
	Body                []byte
	ContentType         string
	// Header holds extra headers.
	Header http.Header
}

// Do sends req; transport errors come back in Response.Err.
func (c *Client) Do(ctx context.Context, req Request) Response {
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	r := Response{Start: time.Now()}
	hr, err := http.NewRequestWithContext(ctx, req.Method, c.Base+req.Path, body)
	if err != nil {
		r.Err, r.End = err, time.Now()
		return r
	}
	hr.Header.Set("challenge-token", Challenge)
	if req.Token != "" {
		hr.Header.Set("Authorization", req.Token)
	}
	if req.ContentType != "" {
		hr.Header.Set("Content-Type", req.ContentType)
	}
	for k, vs := range req.Header {
		hr.Header[k] = vs
	}
	resp, err := c.HTTP.Do(hr)
	if err != nil {
		r.Err, r.End = err, time.Now()
		return r
	}
	defer resp.Body.Close()
	r.Status, r.Header = resp.StatusCode, resp.Header
	r.Body, r.Err = io.ReadAll(resp.Body)
	r.End = time.Now()
	return r
}

// JSON sends v marshalled as the JSON body.
func (c *Client) JSON(ctx context.Context, method, path, token string, v any) Response {
	data, err := json.Marshal(v)
	if err != nil {
		return Response{Err: err}
	}
	return c.Do(ctx, Request{Method: method, Path: path, Token: token, Body: data, ContentType: "application/json"})
}

// User is a signed-up, verified, logged-in user.
type User struct {
	ID              int64
	Email, Password string
	Token           string
}

// Password is every test user's password.
const Password = "correct horse battery staple"

// verifyLink finds the verification key in an email's text.
var verifyLink = regexp.MustCompile(`/verify/([0-9a-f]{32,})`)

// Signup runs the legacy flow (POST /users, the key from the outbox email,
// POST /users/verify/<key>, POST /login with Basic) for email.
func (c *Client) Signup(ctx context.Context, outbox, email string) (User, error) {
	u := User{Email: email, Password: Password}
	r := c.JSON(ctx, http.MethodPost, "/users", "", map[string]any{"email": email, "password": Password, "metadata": map[string]any{}})
	if r.Status != http.StatusOK {
		return u, fmt.Errorf("signup %s: %s", email, r)
	}
	var created struct {
		ID int64 `json:"id"`
	}
	if err := json.Unmarshal(r.Body, &created); err != nil || created.ID == 0 {
		return u, fmt.Errorf("signup %s: no id in %s", email, r.Body)
	}
	u.ID = created.ID
	key, err := waitVerifyKey(ctx, outbox, email, 60*time.Second)
	if err != nil {
		return u, err
	}
	if r := c.Do(ctx, Request{Method: http.MethodPost, Path: "/users/verify/" + key}); r.Status != http.StatusOK {
		return u, fmt.Errorf("verify %s: %s", email, r)
	}
	r = c.Login(ctx, email, Password)
	if r.Status != http.StatusOK {
		return u, fmt.Errorf("login %s: %s", email, r)
	}
	var in struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(r.Body, &in); err != nil || in.Token == "" {
		return u, fmt.Errorf("login %s: no token in %s", email, r.Body)
	}
	u.Token = in.Token
	return u, nil
}

// Login sends POST /login with HTTP basic authentication.
func (c *Client) Login(ctx context.Context, email, password string) Response {
	req, err := http.NewRequest(http.MethodPost, "/", nil)
	if err != nil {
		return Response{Err: err}
	}
	req.SetBasicAuth(email, password)
	return c.Do(ctx, Request{Method: http.MethodPost, Path: "/login", Header: http.Header{"Authorization": req.Header["Authorization"]}})
}

// waitVerifyKey polls the outbox for the verification email to email.
func waitVerifyKey(ctx context.Context, outbox, email string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		files, _ := filepath.Glob(filepath.Join(outbox, "*.eml"))
		for _, f := range files {
			raw, err := os.ReadFile(f)
			if err != nil || !bytes.Contains(raw, []byte(email)) {
				continue
			}
			text, _ := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(raw)))
			if m := verifyLink.FindSubmatch(text); m != nil {
				return string(m[1]), nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return "", fmt.Errorf("no verification email to %s in %s after %s", email, outbox, within)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Credits reads the user's balance (GET /users/<id>/credits).
func (c *Client) Credits(ctx context.Context, u User) (float64, error) {
	r := c.Do(ctx, Request{Method: http.MethodGet, Path: fmt.Sprintf("/users/%d/credits", u.ID), Token: u.Token})
	if r.Status != http.StatusOK {
		return 0, fmt.Errorf("credits of user %d: %s", u.ID, r)
	}
	var out struct {
		Credits *float64 `json:"credits"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil || out.Credits == nil {
		return 0, fmt.Errorf("credits of user %d: %s", u.ID, r.Body)
	}
	return *out.Credits, nil
}

// seeds makes every generation request unique, so that no two are served
// from the same stored image.
var seeds atomic.Int64

// Model is the legacy frontend's Text to Image model, served by gpusvc's
// built-in backend.
const Model = "alxdfy/noggles-v21-6400-best"

// Generate sends the legacy Text to Image body (one 512×512 sample of 25
// steps: one work unit, price PRICE_TXT2IMG) with a fresh seed.
func (c *Client) Generate(ctx context.Context, u User) Response {
	seed := seeds.Add(1) + time.Now().UnixNano()%1_000_000*1000
	body := fmt.Sprintf(`{"inference_mode":"Text to Image","model_id":%q,"prompt":"a frog wearing noggles",`+
		`"negative_prompt":"","samples":1,"steps":25,"seed":%d,"aspect_ratio":"512:512"}`, Model, seed)
	return c.Do(ctx, Request{Method: http.MethodPost, Path: "/images", Token: u.Token, Body: []byte(body), ContentType: "application/json"})
}

// Upload sends POST /user-images with a multipart body holding data as an
// image file (the frontend's FormData upload).
func (c *Client) Upload(ctx context.Context, u User, name string, data []byte) Response {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile("image", name)
	if err == nil {
		_, err = fw.Write(data)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return Response{Err: err}
	}
	return c.Do(ctx, Request{Method: http.MethodPost, Path: "/user-images", Token: u.Token, Body: buf.Bytes(), ContentType: mw.FormDataContentType()})
}

// Healthy reports whether the proxy lists g as a healthy GPU host
// (GET /admin/hosts with the admin token).
func (s *Stack) Healthy(ctx context.Context, g *Service) (bool, error) {
	c := &Client{Base: s.Proxy.URL(), HTTP: &http.Client{Timeout: 2 * time.Second}}
	r := c.Do(ctx, Request{Method: http.MethodGet, Path: "/admin/hosts", Header: http.Header{"X-Admin-Token": {AdminToken}}})
	if r.Status != http.StatusOK {
		return false, fmt.Errorf("GET /admin/hosts: %s", r)
	}
	var out struct {
		GPU []struct {
			Address string `json:"address"`
			State   string `json:"state"`
			Healthy bool   `json:"healthy"`
		} `json:"gpu"`
	}
	if err := json.Unmarshal(r.Body, &out); err != nil {
		return false, fmt.Errorf("GET /admin/hosts: %w", err)
	}
	for _, h := range out.GPU {
		if strings.TrimRight(h.Address, "/") == g.URL() {
			return h.Healthy && h.State == "up", nil
		}
	}
	return false, fmt.Errorf("%s is not in the proxy's pool", g.URL())
}
