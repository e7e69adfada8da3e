package forward

import (
	"encoding/json"
	"net/http"

	"github.com/nounsai/sdserver/shared/edgepolicy"
)

// Public messages of the proxy's own error answers. The body shapes follow
// the legacy API: {"message": ...}, and {"error": ...} for 413.
const (
	msgBadGateway  = "upstream host failed"
	msgTimeout     = "upstream host timed out"
	msgUnavailable = "no healthy upstream host, retry later"
	msgTooLarge    = "File size exceeds the allowed limit"
)

var cannedBodies = map[int][]byte{
	http.StatusBadGateway:            mustJSON("message", msgBadGateway),
	http.StatusGatewayTimeout:        mustJSON("message", msgTimeout),
	http.StatusServiceUnavailable:    mustJSON("message", msgUnavailable),
	http.StatusRequestEntityTooLarge: mustJSON("error", msgTooLarge),
}

func mustJSON(key, msg string) []byte {
	b, err := json.Marshal(map[string]string{key: msg})
	if err != nil {
		panic(err)
	}
	return append(b, '\n')
}

// writeError answers the client with status and a JSON body: the canned
// body for the status, or {"message": msg} when msg is set. A 413 is
// followed by a lingering close (edgepolicy.Linger), so that a client
// writing its whole body before reading gets to read it.
func (p *Proxy) writeError(w http.ResponseWriter, st *request, status int, msg string) {
	body := cannedBodies[status]
	if msg != "" || body == nil {
		if msg == "" {
			msg = http.StatusText(status)
		}
		body = mustJSON("message", msg)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Request-ID", st.id)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	st.status = status
	if status == http.StatusRequestEntityTooLarge {
		edgepolicy.Linger(w, st.in, st.raw)
	}
}
