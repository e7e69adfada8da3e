// Package bunnytest is a local fake of the BunnyCDN Storage API for tests:
// PUT /<zone>/<path> stores the body and answers 201, GET answers 200 with
// the bytes or 404, DELETE answers 200 or 404, and a wrong or missing
// AccessKey header answers 401, as the real API does.
//
// Failures can be injected per method (e.g. 500 on every PUT). This
// package is for tests only and must never be imported by production code.
package bunnytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// Server is a running fake. It is safe for concurrent use.
type Server struct {
	// URL is the base URL, to use as storage.BunnyConfig.BaseURL.
	URL string

	mu       sync.Mutex
	keys     map[string]string            // zone → access key
	objects  map[string]map[string][]byte // zone → path → bytes
	failures map[string]int               // method → status to answer
	requests []Request
}

// Request is one request the fake received.
type Request struct {
	Method, Zone, Path string
	Status             int
}

// New starts a fake with the given zones (name → access key) and stops it
// when the test ends.
func New(tb testing.TB, zones map[string]string) *Server {
	tb.Helper()
	s := &Server{keys: map[string]string{}, objects: map[string]map[string][]byte{}, failures: map[string]int{}}
	for z, k := range zones {
		s.keys[z] = k
		s.objects[z] = map[string][]byte{}
	}
	hs := httptest.NewServer(http.HandlerFunc(s.serve))
	tb.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// Fail makes every later request with method answer status (0 clears it).
func (s *Server) Fail(method string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if status == 0 {
		delete(s.failures, method)
		return
	}
	s.failures[method] = status
}

// Object returns a stored object and whether it exists.
func (s *Server) Object(zone, path string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[zone][path]
	return b, ok
}

// Put stores an object directly, bypassing the API.
func (s *Server) Put(zone, path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[zone] == nil {
		s.objects[zone] = map[string][]byte{}
	}
	s.objects[zone][path] = append([]byte(nil), data...)
}

// Count returns the number of objects in zone.
func (s *Server) Count(zone string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.objects[zone])
}

// Requests returns a copy of the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	zone, path, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	status := s.handle(w, r, zone, path)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: r.Method, Zone: zone, Path: path, Status: status})
	s.mu.Unlock()
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, zone, path string) int {
	reply := func(status int, msg string) int {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = io.WriteString(w, `{"HttpCode":`+strconv.Itoa(status)+`,"Message":"`+msg+`"}`)
		return status
	}
	s.mu.Lock()
	key, known := s.keys[zone]
	fail := s.failures[r.Method]
	s.mu.Unlock()
	if !known || r.Header.Get("AccessKey") != key {
		return reply(http.StatusUnauthorized, "Unauthorized")
	}
	if fail != 0 {
		return reply(fail, "Injected failure")
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return reply(http.StatusBadRequest, "Listing is not supported by the fake")
	}
	switch r.Method {
	case http.MethodPut:
		data, err := io.ReadAll(r.Body)
		if err != nil {
			return reply(http.StatusBadRequest, "Bad body")
		}
		s.Put(zone, path, data)
		return reply(http.StatusCreated, "File uploaded.")
	case http.MethodGet:
		data, ok := s.Object(zone, path)
		if !ok {
			return reply(http.StatusNotFound, "Object Not Found")
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(data)
		return http.StatusOK
	case http.MethodDelete:
		s.mu.Lock()
		_, ok := s.objects[zone][path]
		delete(s.objects[zone], path)
		s.mu.Unlock()
		if !ok {
			return reply(http.StatusNotFound, "Object Not Found")
		}
		return reply(http.StatusOK, "File deleted successfuly.")
	}
	return reply(http.StatusMethodNotAllowed, "Method not allowed")
}
