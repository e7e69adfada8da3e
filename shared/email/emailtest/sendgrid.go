// Package emailtest is a local fake of SendGrid's v3 mail/send endpoint,
// following its documented contract: Bearer API key (401 otherwise), a JSON
// body with personalizations[].to[].email, from.email, subject and
// content[] (400 otherwise), 202 Accepted with an empty body on success.
package emailtest

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
)

// Mail is one accepted request body, decoded.
type Mail struct {
	Personalizations []struct {
		To []struct {
			Email string `json:"email"`
			Name  string `json:"name,omitempty"`
		} `json:"to"`
	} `json:"personalizations"`
	From struct {
		Email string `json:"email"`
		Name  string `json:"name,omitempty"`
	} `json:"from"`
	Subject string `json:"subject"`
	Content []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
}

// SendGrid is a running fake. Its methods are safe for concurrent use.
type SendGrid struct {
	URL string
	key string

	mu       sync.Mutex
	mails    []Mail
	failNext int
}

// NewSendGrid starts a fake accepting key; it stops at test cleanup.
func NewSendGrid(tb testing.TB, key string) *SendGrid {
	tb.Helper()
	f := &SendGrid{key: key}
	srv := httptest.NewServer(http.HandlerFunc(f.serve))
	tb.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// FailNext makes the next n sends answer 500.
func (f *SendGrid) FailNext(n int) {
	f.mu.Lock()
	f.failNext = n
	f.mu.Unlock()
}

// Mails returns the accepted messages so far.
func (f *SendGrid) Mails() []Mail {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Mail(nil), f.mails...)
}

func writeErr(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"errors": []map[string]any{{"message": msg, "field": nil, "help": nil}}})
}

func (f *SendGrid) serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost || r.URL.Path != "/v3/mail/send" {
		writeErr(w, http.StatusNotFound, "not found")
		return
	}
	if r.Header.Get("Authorization") != "Bearer "+f.key {
		writeErr(w, http.StatusUnauthorized, "The provided authorization grant is invalid, expired, or revoked")
		return
	}
	var m Mail
	if err := json.NewDecoder(r.Body).Decode(&m); err != nil {
		writeErr(w, http.StatusBadRequest, "Bad Request")
		return
	}
	if len(m.Personalizations) == 0 || len(m.Personalizations[0].To) == 0 || m.Personalizations[0].To[0].Email == "" {
		writeErr(w, http.StatusBadRequest, "The personalizations field is required and must have at least one personalization.")
		return
	}
	if m.From.Email == "" || m.Subject == "" || len(m.Content) == 0 {
		writeErr(w, http.StatusBadRequest, "from, subject and content are required")
		return
	}
	for _, c := range m.Content {
		if c.Type == "" || c.Value == "" {
			writeErr(w, http.StatusBadRequest, "content type and value are required")
			return
		}
	}
	f.mu.Lock()
	fail := f.failNext > 0
	if fail {
		f.failNext--
	} else {
		f.mails = append(f.mails, m)
	}
	f.mu.Unlock()
	if fail {
		writeErr(w, http.StatusInternalServerError, "internal error")
		return
	}
	w.WriteHeader(http.StatusAccepted)
}
