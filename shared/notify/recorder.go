package notify

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// Recorder is a local fake Discord webhook endpoint for the local stack:
// an http.Handler that accepts POSTed webhook messages (answering 204 like
// Discord), keeps them in memory and, when Dir is set, appends each as one
// JSON line to Dir/discord.jsonl. Safe for concurrent use.
type Recorder struct {
	// Dir, when not "", receives discord.jsonl.
	Dir string

	mu       sync.Mutex
	messages []Message
}

// NewRecorder returns a recorder writing to dir ("" keeps memory only).
func NewRecorder(dir string) *Recorder { return &Recorder{Dir: dir} }

// ServeHTTP records one message.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, `{"message": "405: Method Not Allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	var m Message
	if err != nil || json.Unmarshal(body, &m) != nil || len(m.Embeds) == 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message": "Cannot send an empty message", "code": 50006}`))
		return
	}
	r.mu.Lock()
	r.messages = append(r.messages, m)
	dir := r.Dir
	if dir != "" {
		if err := os.MkdirAll(dir, 0o750); err == nil {
			if f, err := os.OpenFile(filepath.Join(dir, "discord.jsonl"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o640); err == nil {
				line, _ := json.Marshal(struct {
					At time.Time `json:"at"`
					Message
				}{time.Now().UTC(), m})
				_, _ = f.Write(append(line, '\n'))
				_ = f.Close()
			}
		}
	}
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// Messages returns a copy of the recorded messages, oldest first.
func (r *Recorder) Messages() []Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Message(nil), r.messages...)
}
