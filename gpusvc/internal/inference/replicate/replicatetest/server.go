// Package replicatetest runs a fake Replicate predictions API for tests: an
// httptest server that checks the bearer token, validates the inputs of the
// models the replicate adapter uses (the legacy SDXL model, MusicGen,
// Demucs; told apart by their input fields) and answers with prediction
// objects that move starting → processing → succeeded over successive GETs.
// Outputs are served by the fake itself: real PNGs of the requested size
// filled with SeedColor(seed+i), and MP3 frames for audio.
//
// Knobs: FailNext (problem-details errors), RateLimitNext (429 with
// Retry-After), FailPredictionsNext (predictions that end "failed"),
// SetDelay, and inspection with Requests, Predictions and Canceled.
//
// This package is for tests only; it must never be imported by production
// code.
package replicatetest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultToken is the API token a Server accepts when Options.Token is
// empty.
const DefaultToken = "r8_fake_test_token"

// DefaultPolls is Options.Polls when zero.
const DefaultPolls = 2

// Options configures a Server. The zero value is a working server.
type Options struct {
	// Token is the accepted bearer token. Empty means DefaultToken.
	Token string
	// Polls is how many GETs of a prediction it takes to reach its terminal
	// status: the create answers "starting", GETs before the last answer
	// "processing". Zero means DefaultPolls; negative means the create
	// already answers the terminal status.
	Polls int
	// HonourWait makes a create carrying "Prefer: wait" answer the terminal
	// prediction at once (as when the model finishes within the wait).
	HonourWait bool
	// Versions, when non-nil, are the only accepted versions; others answer
	// 404 like an unknown version.
	Versions []string
	// DataURIOutputs makes outputs data: URIs instead of URLs on the fake.
	DataURIOutputs bool
}

// Request is one request the Server received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// JSON decodes the request body into a generic map, failing tb on error.
func (r Request) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("replicatetest: request body is not a JSON object: %v", err)
	}
	return m
}

// Prediction is the fake's view of one created prediction.
type Prediction struct {
	ID      string
	Version string
	Kind    string // "sdxl", "musicgen" or "demucs"
	Input   map[string]any
	Status  string
	Gets    int // GETs received for it
}

type prediction struct {
	Prediction
	output   any
	errText  string
	willFail bool
	created  time.Time
}

type file struct {
	contentType string
	data        []byte
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu          sync.Mutex
	requests    []Request
	predictions map[string]*prediction
	order       []string
	files       map[string]file
	canceled    []string
	nextID      int
	failN       int
	failMethod  string
	failStatus  int
	failDetail  string
	limitN      int
	limitAfter  time.Duration
	predFailN   int
	predFailMsg string
	delay       time.Duration
}

// NewServer starts a fake and registers its Close with tb.Cleanup.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Token == "" {
		opts.Token = DefaultToken
	}
	if opts.Polls == 0 {
		opts.Polls = DefaultPolls
	}
	s := &Server{opts: opts, predictions: map[string]*prediction{}, files: map[string]file{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/predictions", s.api(s.handleCreate))
	mux.HandleFunc("GET /v1/predictions/{id}", s.api(s.handleGet))
	mux.HandleFunc("POST /v1/predictions/{id}/cancel", s.api(s.handleCancel))
	mux.HandleFunc("GET /files/{name}", s.handleFile)
	s.srv = httptest.NewServer(s.record(mux))
	tb.Cleanup(s.Close)
	return s
}

// URL is the API base URL (Config.BaseURL for the adapter), ending in /v1.
func (s *Server) URL() string { return s.srv.URL + "/v1" }

// Token is the bearer token the fake accepts.
func (s *Server) Token() string { return s.opts.Token }

// Close shuts the server down; delayed requests are released. It is safe to
// call more than once.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// FailNext makes the next n API calls (create, get, cancel) answer status
// with a problem-details body whose detail is detail.
func (s *Server) FailNext(n, status int, detail string) {
	s.FailNextMethod("", n, status, detail)
}

// FailNextMethod is FailNext counting only API calls with this HTTP method
// ("GET" for polls, "POST" for creates and cancels; "" for any).
func (s *Server) FailNextMethod(method string, n, status int, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failMethod, s.failN, s.failStatus, s.failDetail = method, n, status, detail
}

// RateLimitNext makes the next n API calls answer 429 with a Retry-After
// of retryAfter (whole seconds, rounded up).
func (s *Server) RateLimitNext(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limitN, s.limitAfter = n, retryAfter
}

// FailPredictionsNext makes the next n predictions created end in status
// "failed" with errText as their error.
func (s *Server) FailPredictionsNext(n int, errText string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.predFailN, s.predFailMsg = n, errText
}

// SetDelay makes every later API call wait d before being handled (0 = no
// wait). A waiting request ends early when the client goes away.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns a copy of every request received, in arrival order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsTo returns the received requests with this method and path.
func (s *Server) RequestsTo(method, path string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Method == method && r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// Predictions returns the predictions created, in creation order.
func (s *Server) Predictions() []Prediction {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Prediction, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.predictions[id].Prediction)
	}
	return out
}

// Canceled returns the IDs of the predictions a cancel call was received
// for, in order.
func (s *Server) Canceled() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.canceled...)
}

// record stores every request before routing it.
func (s *Server) record(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 256<<20))
		if err != nil {
			writeProblem(w, http.StatusBadRequest, "Bad request", "cannot read body")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
		s.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

// api wraps an API handler with auth, the knobs and the delay.
func (s *Server) api(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+s.opts.Token {
			writeProblem(w, http.StatusUnauthorized, "Unauthenticated", "You did not pass a valid authentication token")
			return
		}
		s.mu.Lock()
		delay := s.delay
		limited := s.limitN > 0
		after := s.limitAfter
		if limited {
			s.limitN--
		}
		failed := !limited && s.failN > 0 && (s.failMethod == "" || s.failMethod == r.Method)
		status, detail := s.failStatus, s.failDetail
		if failed {
			s.failN--
		}
		s.mu.Unlock()

		if delay > 0 {
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				return
			}
		}
		switch {
		case limited:
			secs := int((after + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(secs))
			writeProblem(w, http.StatusTooManyRequests, "Request was throttled",
				fmt.Sprintf("Request was throttled. Your rate limit resets in ~%ds.", secs))
		case failed:
			writeProblem(w, status, http.StatusText(status), detail)
		default:
			h(w, r)
		}
	}
}

// problem is Replicate's problem-details error body.
type problem struct {
	Type   string `json:"type,omitempty"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

func writeProblem(w http.ResponseWriter, status int, title, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(problem{Title: title, Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// handleFile serves an output file (no auth, like replicate.delivery).
func (s *Server) handleFile(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	f, ok := s.files[r.PathValue("name")]
	s.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", f.contentType)
	_, _ = w.Write(f.data)
}

// view renders a prediction object as the API does. Callers hold s.mu.
func (s *Server) view(p *prediction) map[string]any {
	base := s.srv.URL + "/v1/predictions/" + p.ID
	v := map[string]any{
		"id":           p.ID,
		"model":        "fake/" + p.Kind,
		"version":      p.Version,
		"input":        p.Input,
		"logs":         "",
		"output":       nil,
		"error":        nil,
		"status":       p.Status,
		"source":       "api",
		"data_removed": false,
		"created_at":   p.created.UTC().Format(time.RFC3339Nano),
		"urls": map[string]string{
			"get": base, "cancel": base + "/cancel", "web": "https://replicate.com/p/" + p.ID,
		},
	}
	switch p.Status {
	case "processing":
		v["logs"] = "50%|█████     | 5/10\n"
	case "succeeded":
		v["output"] = p.output
		v["logs"] = "100%|██████████| 10/10\n"
		v["metrics"] = map[string]any{"predict_time": 1.25, "total_time": 1.5}
		v["completed_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	case "failed":
		v["error"] = p.errText
		v["completed_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	case "canceled":
		v["completed_at"] = time.Now().UTC().Format(time.RFC3339Nano)
	}
	return v
}

// finish moves p to its terminal status. Callers hold s.mu.
func (p *prediction) finish() {
	if p.willFail {
		p.Status = "failed"
	} else {
		p.Status = "succeeded"
	}
}

// handleCreate serves POST /v1/predictions.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Version string         `json:"version"`
		Input   map[string]any `json:"input"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeProblem(w, http.StatusBadRequest, "Invalid request", "request body is not valid JSON")
		return
	}
	if body.Version == "" {
		writeProblem(w, http.StatusUnprocessableEntity, "Invalid version or not permitted", "version is required")
		return
	}
	if s.opts.Versions != nil && !contains(s.opts.Versions, body.Version) {
		writeProblem(w, http.StatusNotFound, "Invalid version or not permitted",
			"The specified version does not exist (or perhaps you don't have permission to use it?)")
		return
	}
	if body.Input == nil {
		writeProblem(w, http.StatusUnprocessableEntity, "Input validation failed", "- input: input is required")
		return
	}
	kind, outputs, msg := s.validate(body.Input)
	if msg != "" {
		writeProblem(w, http.StatusUnprocessableEntity, "Input validation failed", msg)
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	s.nextID++
	id := fmt.Sprintf("fake%08dpred", s.nextID)
	p := &prediction{
		Prediction: Prediction{ID: id, Version: body.Version, Kind: kind, Input: body.Input, Status: "starting"},
		created:    time.Now(),
	}
	if s.predFailN > 0 {
		s.predFailN--
		p.willFail, p.errText = true, s.predFailMsg
	}
	p.output = s.storeOutputs(id, outputs)
	s.predictions[id] = p
	s.order = append(s.order, id)
	if s.opts.Polls < 0 || (s.opts.HonourWait && strings.HasPrefix(r.Header.Get("Prefer"), "wait")) {
		p.finish()
	}
	writeJSON(w, http.StatusCreated, s.view(p))
}

// handleGet serves GET /v1/predictions/{id}.
func (s *Server) handleGet(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.predictions[r.PathValue("id")]
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not found", "prediction not found")
		return
	}
	p.Gets++
	if p.Status == "starting" || p.Status == "processing" {
		if p.Gets >= s.opts.Polls {
			p.finish()
		} else {
			p.Status = "processing"
		}
	}
	writeJSON(w, http.StatusOK, s.view(p))
}

// handleCancel serves POST /v1/predictions/{id}/cancel.
func (s *Server) handleCancel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := r.PathValue("id")
	p, ok := s.predictions[id]
	if !ok {
		writeProblem(w, http.StatusNotFound, "Not found", "prediction not found")
		return
	}
	s.canceled = append(s.canceled, id)
	if p.Status == "starting" || p.Status == "processing" {
		p.Status = "canceled"
	}
	writeJSON(w, http.StatusOK, s.view(p))
}

func contains(list []string, v string) bool {
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}
