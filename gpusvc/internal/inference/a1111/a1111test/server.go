// Package a1111test runs a fake AUTOMATIC1111 server for tests: an
// httptest server that validates the request fields the a1111 adapter sends
// and answers in the documented /sdapi/v1 response shapes (base64 PNGs
// without a data: prefix, info as a JSON string, errors as
// {error, detail, body, errors}). Images are real PNGs of the requested size,
// filled with SeedColor(seed) so tests can tell which seed made them.
//
// Knobs let tests make the next requests fail (FailNext, DropNext), slow
// every request down (SetDelay), inspect what was received (Requests) and
// check how many requests overlapped (MaxInFlight).
//
// This package is for tests only; it must never be imported by production
// code.
package a1111test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// DefaultModels are the checkpoint titles a Server lists when Options.Models
// is nil.
var DefaultModels = []string{
	"noggles-v21-6400-best.safetensors [a1b2c3d4e5]",
	"instruct-pix2pix-00-22000.safetensors [fbc31a67aa]",
}

// DefaultUpscalers are the upscaler names a Server accepts when
// Options.Upscalers is nil.
var DefaultUpscalers = []string{"None", "Lanczos", "Nearest", "R-ESRGAN 4x+", "ESRGAN_4x"}

// DefaultCaption is the caption Interrogate answers when Options.Caption is
// empty.
const DefaultCaption = "a pixel art character wearing noggles"

// Options configures a Server. The zero value is a working server.
type Options struct {
	// Models are the checkpoint titles listed by /sdapi/v1/sd-models and
	// accepted in override_settings.sd_model_checkpoint. Nil means
	// DefaultModels.
	Models []string
	// Upscalers are the accepted upscaler_1 values. Nil means
	// DefaultUpscalers.
	Upscalers []string
	// Caption is the interrogate answer. Empty means DefaultCaption.
	Caption string
	// JPEG makes generated images JPEG instead of PNG (samples_format jpg).
	JPEG bool
	// Delay is waited before answering every request (see SetDelay).
	Delay time.Duration
}

// Request is one request the Server received.
type Request struct {
	Method string
	Path   string
	Header http.Header
	// Body is the raw request body.
	Body []byte
}

// JSON decodes the request body into a generic map, failing tb on error.
func (r Request) JSON(tb testing.TB) map[string]any {
	tb.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.Body, &m); err != nil {
		tb.Fatalf("a1111test: request body is not a JSON object: %v", err)
	}
	return m
}

// Server is a running fake. Its methods are safe for concurrent use.
type Server struct {
	srv  *httptest.Server
	opts Options

	mu          sync.Mutex
	requests    []Request
	failN       int
	failStatus  int
	failMessage string
	dropN       int
	delay       time.Duration
	inFlight    int
	maxInFlight int
}

// NewServer starts a fake server and registers its Close with tb.Cleanup.
func NewServer(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Models == nil {
		opts.Models = DefaultModels
	}
	if opts.Upscalers == nil {
		opts.Upscalers = DefaultUpscalers
	}
	if opts.Caption == "" {
		opts.Caption = DefaultCaption
	}
	s := &Server{opts: opts, delay: opts.Delay}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /sdapi/v1/txt2img", s.handleTxt2Img)
	mux.HandleFunc("POST /sdapi/v1/img2img", s.handleImg2Img)
	mux.HandleFunc("POST /sdapi/v1/extra-single-image", s.handleUpscale)
	mux.HandleFunc("POST /sdapi/v1/interrogate", s.handleInterrogate)
	mux.HandleFunc("POST /sam/sam-predict", s.handleSAM)
	mux.HandleFunc("GET /sdapi/v1/sd-models", s.handleModels)
	// Interrupt answers at once, outside the knobs (it is global and does
	// not queue behind the running job in A1111 either).
	top := http.NewServeMux()
	top.HandleFunc("POST /sdapi/v1/interrupt", s.handleInterrupt)
	top.Handle("/", s.wrap(mux))
	s.srv = httptest.NewServer(top)
	tb.Cleanup(s.Close)
	return s
}

// URL is the server's base URL (Config.BaseURL for the adapter).
func (s *Server) URL() string { return s.srv.URL }

// Close shuts the server down; requests still being delayed are released.
// It is safe to call more than once.
func (s *Server) Close() {
	s.srv.CloseClientConnections()
	s.srv.Close()
}

// FailNext makes the next n requests (any endpoint) answer status with an
// A1111 error body whose detail and errors are message.
func (s *Server) FailNext(n, status int, message string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failN, s.failStatus, s.failMessage = n, status, message
}

// DropNext makes the next n requests close the connection after the
// request was read, without answering (a crash mid-request).
func (s *Server) DropNext(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropN = n
}

// SetDelay makes every later request wait d before being handled (0 = no
// wait). A waiting request ends early when the client goes away.
func (s *Server) SetDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.delay = d
}

// Requests returns a copy of every request received so far, in arrival
// order (including failed and dropped ones).
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// RequestsTo returns the received requests whose path is path.
func (s *Server) RequestsTo(path string) []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.Path == path {
			out = append(out, r)
		}
	}
	return out
}

// InFlight is the number of requests being handled right now.
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// MaxInFlight is the largest number of requests handled at once so far.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// handleInterrupt records POST /sdapi/v1/interrupt and answers 200 with an
// empty JSON object, as A1111 does.
func (s *Server) handleInterrupt(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone()})
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{})
}

// wrap records the request, tracks concurrency and applies the knobs.
func (s *Server) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 512<<20))
		if err != nil {
			writeError(w, http.StatusBadRequest, "HTTPException", "cannot read body")
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))

		s.mu.Lock()
		s.requests = append(s.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		s.inFlight++
		s.maxInFlight = max(s.maxInFlight, s.inFlight)
		delay := s.delay
		drop := s.dropN > 0
		if drop {
			s.dropN--
		}
		fail := !drop && s.failN > 0
		status, message := s.failStatus, s.failMessage
		if fail {
			s.failN--
		}
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight--
			s.mu.Unlock()
		}()

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
		case drop:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					_ = conn.Close()
					return
				}
			}
			panic(http.ErrAbortHandler)
		case fail:
			kind := "RuntimeError"
			if status < 500 {
				kind = "HTTPException"
			}
			writeError(w, status, kind, message)
		default:
			next.ServeHTTP(w, r)
		}
	})
}

// apiError is A1111's error body.
type apiError struct {
	Error  string `json:"error"`
	Detail string `json:"detail"`
	Body   string `json:"body"`
	Errors string `json:"errors"`
}

// writeError answers an A1111 error.
func writeError(w http.ResponseWriter, status int, kind, message string) {
	writeJSON(w, status, apiError{Error: kind, Detail: message, Body: "", Errors: message})
}

// invalid answers a validation failure (422, as A1111 does).
func invalid(w http.ResponseWriter, message string) {
	writeError(w, http.StatusUnprocessableEntity, "HTTPException", message)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeBody decodes the JSON body into v, rejecting unknown shapes.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body)
	if err := dec.Decode(v); err != nil {
		return errors.New("request body is not valid JSON for this endpoint: " + err.Error())
	}
	return nil
}
