package forward_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/nounsai/sdserver/proxy/internal/forward"
)

// postRaw sends a POST with a body of n bytes the way browsers and
// Python's urllib do (no Expect: 100-continue): the whole body first, then
// the response is read. chunked sends it without a Content-Length. It
// returns the status and body, or the error that ended the exchange.
func postRaw(t *testing.T, addr, path string, n int, chunked bool) (int, string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer conn.Close()
	framing := fmt.Sprintf("Content-Length: %d", n)
	if chunked {
		framing = "Transfer-Encoding: chunked"
	}
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n%s\r\n\r\n", path, framing); err != nil {
		return 0, "", err
	}
	chunk := bytes.Repeat([]byte("a"), 64<<10)
	for sent := 0; sent < n; sent += len(chunk) {
		c := chunk[:min(len(chunk), n-sent)]
		if chunked {
			if _, err := fmt.Fprintf(conn, "%x\r\n", len(c)); err != nil {
				return 0, "", err
			}
		}
		if _, err := conn.Write(c); err != nil {
			return 0, "", err
		}
		if chunked {
			if _, err := io.WriteString(conn, "\r\n"); err != nil {
				return 0, "", err
			}
		}
	}
	if chunked {
		if _, err := io.WriteString(conn, "0\r\n\r\n"); err != nil {
			return 0, "", err
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// TestTooLargeBodyGetsReadable413: a 10 MB body over the limit, sent
// without Expect by a client that writes it whole before reading, gets the
// 413 JSON (lingering close) instead of a connection reset, on a GPU route
// and an account route, with and without Content-Length.
func TestTooLargeBodyGetsReadable413(t *testing.T) {
	t.Parallel()
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(backend.Close)
	f := newFixture(t, forward.Config{BodyLimit: 1 << 20}, []string{backend.URL}, []string{backend.URL})
	for _, path := range []string{"/images", "/users/1/images"} {
		for _, chunked := range []bool{false, true} {
			status, body, err := postRaw(t, f.proxy.Listener.Addr().String(), path, 10<<20, chunked)
			require.NoError(t, err, "%s chunked=%v", path, chunked)
			require.Equal(t, http.StatusRequestEntityTooLarge, status, "%s chunked=%v", path, chunked)
			require.JSONEq(t, `{"error":"File size exceeds the allowed limit"}`, body, "%s chunked=%v", path, chunked)
		}
	}
}
