package forward

// Request bodies: the bounded prefix of a GPU-route body read for the work
// estimate, and the tracked stream that tells a failed attempt whether any
// of the body was sent. Answers that end a request early close it with a
// lingering close (writeError).

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// gpuPrefixSize is how much of a GPU-route body is read before the request
// is sent: enough for the JSON fields that set its work, which clients send
// before any image. A body no longer than this is held whole (and can be
// replayed); the rest of a longer body is streamed.
const gpuPrefixSize = 64 << 10

// readPrefix reads the start of a GPU-route body, at most gpuPrefixSize
// bytes, and returns it for the work estimate. A body that ends within the
// prefix is kept whole in st.body (replayable); a longer one is sent as the
// prefix followed by the rest of the stream, through st.tracked, so that at
// most the prefix is held in memory. It answers the client itself and
// returns false when the body is too large or unreadable.
func (p *Proxy) readPrefix(w http.ResponseWriter, r *http.Request, st *request) ([]byte, bool) {
	if r.ContentLength > p.cfg.BodyLimit {
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
		return nil, false
	}
	if r.Body == nil || r.Body == http.NoBody {
		st.body = []byte{}
		return st.body, true
	}
	body := http.MaxBytesReader(w, r.Body, p.cfg.BodyLimit)
	size := gpuPrefixSize
	if r.ContentLength >= 0 && r.ContentLength < gpuPrefixSize {
		size = int(r.ContentLength) + 1 // one more, to see the end
	}
	// Not pooled: after a response that came before the whole body was
	// sent, the transport may still be reading the prefix when ServeHTTP
	// returns.
	buf := make([]byte, size)
	n, err := io.ReadFull(body, buf)
	switch {
	case err == nil:
		st.tracked = &trackedBody{rc: prefixedBody{Reader: io.MultiReader(bytes.NewReader(buf), body), Closer: body}}
		return buf, true
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
		st.body = buf[:n]
		return st.body, true
	}
	var maxBytes *http.MaxBytesError
	if errors.As(err, &maxBytes) {
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
	} else if r.Context().Err() == nil {
		p.writeError(w, st, http.StatusBadRequest, "could not read the request body")
	}
	return nil, false
}

// prefixedBody is a GPU body's prefix followed by the rest of the stream.
type prefixedBody struct {
	io.Reader
	io.Closer
}

// trackedBody passes a streamed request body through and records whether
// any of it was read, so a failed attempt can tell whether it may retry.
// Close does not close the underlying body (the server does that); it only
// stops further reads through this wrapper.
type trackedBody struct {
	rc     io.ReadCloser
	read   atomic.Bool
	closed atomic.Bool
}

func (b *trackedBody) Read(p []byte) (int, error) {
	if b.closed.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	if n > 0 || err != io.EOF {
		b.read.Store(true)
	}
	return n, err
}

func (b *trackedBody) Close() error {
	b.closed.Store(true)
	return nil
}

func (b *trackedBody) used() bool { return b.read.Load() }

// copyBufSize is the size of the ReverseProxy's copy buffers.
const copyBufSize = 32 << 10

// bufferPool implements httputil.BufferPool with 32 KiB buffers. It pools
// array pointers, so that neither Get nor Put allocates. Kept because it is
// measurable: without it ReverseProxy allocates a 32 KiB buffer for every
// response it copies, and BenchmarkDataPathSmallGET allocates 40.7 KB per
// request instead of 7.9 KB (go test -bench DataPathSmallGET, Dec 2026).
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool { return &bufferPool{} }

func (b *bufferPool) Get() []byte {
	if a, ok := b.p.Get().(*[copyBufSize]byte); ok {
		return a[:]
	}
	return new([copyBufSize]byte)[:]
}

func (b *bufferPool) Put(x []byte) {
	if len(x) == copyBufSize {
		b.p.Put((*[copyBufSize]byte)(x))
	}
}
