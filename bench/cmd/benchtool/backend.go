package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"
)

// smallJSON is the body of GET /small: a typical small API answer.
const smallJSON = `{"id":12345,"email":"someone@example.com","credits":50,"verified":true,"created_at":"2024-05-01T12:00:00Z"}`

// backend is the test upstream of the proxy benchmarks. It does as little as
// possible per request, so that what is measured is the proxy in front.
type backend struct {
	big       []byte        // the 1 MiB body
	delay     time.Duration // GET /delay
	drainRate int64         // bytes per second per upload; 0 = as fast as possible
}

// runBackend serves:
//
//	GET  /health  200 {"message":"ok","slots":64,...} (a gpusvc-shaped health body)
//	GET  /small   a 110-byte JSON object
//	GET  /1mib    1 MiB of application/octet-stream
//	GET  /delay   the small JSON after -delay (default 50ms)
//	POST any path reads and discards the body (at -drain-rate bytes/s when
//	              set), then answers {"bytes":N}
func runBackend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:0", "listen address")
	delay := fs.Duration("delay", 50*time.Millisecond, "delay of GET /delay")
	drain := fs.Int64("drain-rate", 0, "bytes per second at which a POST body is read (0 = unlimited)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	b := &backend{big: make([]byte, 1<<20), delay: *delay, drainRate: *drain}
	for i := range b.big {
		b.big[i] = byte('a' + i%26)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 3*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	if r.Method == http.MethodPost || r.Method == http.MethodPut {
		n, err := b.drainBody(r)
		if err != nil {
			http.Error(w, `{"message":"read body"}`, http.StatusBadRequest)
			return
		}
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"bytes":`+strconv.FormatInt(n, 10)+`}`)
		return
	}
	switch r.URL.Path {
	case "/health":
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"message":"ok","slots":64,"in_flight":0,"queued":0,"queue_size":0}`)
	case "/small":
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, smallJSON)
	case "/1mib":
		h.Set("Content-Type", "application/octet-stream")
		h.Set("Content-Length", strconv.Itoa(len(b.big)))
		_, _ = w.Write(b.big)
	case "/delay":
		select {
		case <-time.After(b.delay):
		case <-r.Context().Done():
			return
		}
		h.Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, smallJSON)
	default:
		http.NotFound(w, r)
	}
}

// drainBody reads and discards r's body, throttled to drainRate.
func (b *backend) drainBody(r *http.Request) (int64, error) {
	if b.drainRate <= 0 {
		return io.Copy(io.Discard, r.Body)
	}
	buf := make([]byte, 32<<10)
	var n int64
	start := time.Now()
	for {
		k, err := r.Body.Read(buf)
		n += int64(k)
		// Sleep until n bytes are due at drainRate.
		due := time.Duration(float64(n) / float64(b.drainRate) * float64(time.Second))
		if wait := due - time.Since(start); wait > 0 {
			time.Sleep(wait)
		}
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}
