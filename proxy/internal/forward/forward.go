// Package forward is the proxy's data path: an http.Handler that picks an
// upstream with a balancer.Selector and forwards the request to it with
// httputil.ReverseProxy, retrying on another host only when the request
// provably never reached a backend or is idempotent and replayable.
//
// GPU routes (the table in shared/gpuroute: POST /images, /extend_prompt,
// /interrogate, /upscale, /mask, /v1/images/generations and GET /models) go
// to the GPU pool. Only a bounded prefix of their
// bodies is held (to estimate their work); a body that fits in the prefix is
// replayable, a longer one streams on like every other body, so memory does
// not grow with body size. Every other request goes to the account pool with
// its body streamed. Upstream failures answer 502, a request whose own
// deadline passed 504 and an empty pool 503 with Retry-After, all as JSON.
//
// This package writes one access-log line per upstream attempt and nothing
// else per successful request (the data path stays lean); it never reads
// more of a body than the GPU-route prefix.
package forward

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/edgepolicy"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// wantsStream reports whether r asks for a Server-Sent Events stream.
// httputil.ReverseProxy flushes text/event-stream responses at once.
func wantsStream(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.Header.Get("Accept"), "text/event-stream")
}

// Config holds the forwarding settings.
type Config struct {
	// GPUTimeout bounds a GPU-route request end to end (upstream call and
	// response); 0 means 300 s.
	GPUTimeout time.Duration
	// UpstreamTimeout bounds every other request; 0 means 30 s.
	UpstreamTimeout time.Duration
	// StreamTimeout bounds a Server-Sent Events stream (a request that
	// accepts text/event-stream, such as GET /v1/jobs/<id>/events, which
	// lasts as long as the job); 0 means 1 h.
	StreamTimeout time.Duration
	// BodyLimit is the largest request body accepted, in bytes; 0 means
	// 5 MiB.
	BodyLimit int64
	// MaxAttempts is how many hosts one request may try; 0 means 3.
	MaxAttempts int
	// RetryAfter is the Retry-After sent with 503 when no host is
	// available; 0 means 2 s.
	RetryAfter time.Duration
	// TrustedProxies are peers whose X-Forwarded-For and
	// X-Forwarded-Proto are kept (extended) rather than replaced.
	TrustedProxies []netip.Prefix
	// AccessLog receives one "request" line per upstream attempt (without
	// the caller, which would cost a stack walk); nil means the logger
	// passed to New.
	AccessLog *zap.Logger
}

func (c Config) withDefaults() Config {
	if c.GPUTimeout <= 0 {
		c.GPUTimeout = 300 * time.Second
	}
	if c.UpstreamTimeout <= 0 {
		c.UpstreamTimeout = 30 * time.Second
	}
	if c.StreamTimeout <= 0 {
		c.StreamTimeout = time.Hour
	}
	if c.BodyLimit <= 0 {
		c.BodyLimit = 5 << 20
	}
	if c.MaxAttempts <= 0 {
		c.MaxAttempts = 3
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 2 * time.Second
	}
	return c
}

// Pools names the two upstream pools and their policies.
type Pools struct {
	GPU             *balancer.Pool
	GPUSelector     balancer.Selector
	Account         *balancer.Pool
	AccountSelector balancer.Selector
}

// Proxy is the forwarding handler. It is safe for concurrent use.
type Proxy struct {
	cfg        Config
	pools      Pools
	rp         *httputil.ReverseProxy
	metrics    *Metrics
	log        *zap.Logger
	access     *zap.Logger // log without the caller: one line per attempt
	retryAfter string
	now        func() time.Time
}

// gpuPrefixSize is how much of a GPU-route body is read before the request
// is sent: enough for the JSON fields that set its work, which clients send
// before any image. A body no longer than this is held whole (and can be
// replayed); the rest of a longer body is streamed.
const gpuPrefixSize = 64 << 10

// New returns a proxy sending requests through transport. metrics may be nil.
func New(cfg Config, pools Pools, transport http.RoundTripper, metrics *Metrics, log *zap.Logger) *Proxy {
	cfg = cfg.withDefaults()
	p := &Proxy{
		cfg:        cfg,
		pools:      pools,
		metrics:    metrics,
		log:        log,
		access:     cmp.Or(cfg.AccessLog, log).WithOptions(zap.WithCaller(false)),
		retryAfter: strconv.Itoa(int((cfg.RetryAfter + time.Second - 1) / time.Second)),
		now:        time.Now,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      transport,
		BufferPool:     newBufferPool(),
		ModifyResponse: p.modifyResponse,
		ErrorHandler:   p.handleError,
		ErrorLog:       zap.NewStdLog(log.Named("reverseproxy")),
	}
	return p
}

// NewTransport returns the transport for upstream calls: keep-alive
// connections sized for a busy proxy (http.DefaultTransport keeps only 2
// idle connections per host), a short dial timeout so a dead host fails
// fast, and no response-header timeout (the request context bounds it).
func NewTransport() *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   3 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   256,
		IdleConnTimeout:       90 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Upstream bodies are passed through untouched.
		DisableCompression: true,
		ForceAttemptHTTP2:  false,
		WriteBufferSize:    32 << 10,
		ReadBufferSize:     32 << 10,
	}
}

// Canonical header keys, so that header maps are indexed without
// canonicalising per request.
const (
	hdrRequestID = edgepolicy.RequestIDHeader
	hdrXFF       = "X-Forwarded-For"
	hdrXFP       = "X-Forwarded-Proto"
	hdrXFH       = "X-Forwarded-Host"
	hdrUserAgent = "User-Agent"
)

// Indexes of request.vals.
const (
	valID = iota
	valXFF
	valProto
	valHost
	valEmpty
	valRespID
	numVals
)

// request is the per-request state shared between ServeHTTP and the
// ReverseProxy hooks, carried in the request context.
type request struct {
	route     gpuroute.Route
	id        string
	w         http.ResponseWriter
	in        *http.Request // as received, for a lingering close
	raw       io.Reader     // its own body (before any limit), idem
	pool      *balancer.Pool
	up        *balancer.Upstream
	body      []byte // whole GPU body when it fit in the prefix; nil when streamed
	tracked   *trackedBody
	clientCtx context.Context
	corsOwned bool // an outer handler set CORS headers; drop the upstream's

	// vals backs the one-value header slices the hooks set (each used as
	// vals[i:i+1:i+1]), so that they cost no allocation. Written once by
	// ServeHTTP before the first attempt and only read afterwards.
	vals [numVals]string

	// set by the hooks, read by ServeHTTP after rp.ServeHTTP returns
	status  int
	respAt  time.Time
	retry   bool
	failure bool
	tried   [4]*balancer.Upstream
	ntried  int
}

type ctxKey struct{}

func (r *request) skip(u *balancer.Upstream) bool {
	for _, t := range r.tried[:r.ntried] {
		if t == u {
			return true
		}
	}
	return false
}

// val returns vals[i] as a one-element header value.
func (r *request) val(i int) []string { return r.vals[i : i+1 : i+1] }

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	st := &request{route: gpuroute.Lookup(r.Method, r.URL.Path), w: w, in: r, raw: r.Body, clientCtx: r.Context()}
	_, st.corsOwned = w.Header()["Access-Control-Allow-Origin"]
	st.id = edgepolicy.RequestID(r.Header)
	p.forwardedValues(r, st)

	pool, sel, timeout := p.pools.Account, p.pools.AccountSelector, p.cfg.UpstreamTimeout
	job := balancer.Job{}
	if st.route != gpuroute.None {
		pool, sel, timeout = p.pools.GPU, p.pools.GPUSelector, p.cfg.GPUTimeout
		prefix, ok := p.readPrefix(w, r, st)
		if !ok {
			return
		}
		job.Work = balancer.EstimatePrefix(st.route, prefix, st.body != nil)
	} else if wantsStream(r) {
		timeout = p.cfg.StreamTimeout
	} else if r.ContentLength > p.cfg.BodyLimit {
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
		return
	} else if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.BodyLimit)
		st.tracked = &trackedBody{rc: r.Body}
	}

	st.pool = pool
	ctx, cancel := context.WithTimeout(context.WithValue(r.Context(), ctxKey{}, st), timeout)
	defer cancel()
	out := r.WithContext(ctx)

	for attempt := 0; ; attempt++ {
		now := p.now()
		var skip func(*balancer.Upstream) bool
		if st.ntried > 0 {
			skip = st.skip
		}
		up := sel.Select(pool.Hosts(), job, now, skip)
		if up == nil {
			if attempt == 0 {
				p.metrics.noHost(st.route)
				w.Header().Set("Retry-After", p.retryAfter)
				p.writeError(w, st, http.StatusServiceUnavailable, "")
			} else {
				p.writeError(w, st, http.StatusBadGateway, "")
			}
			break
		}
		st.up, st.retry, st.failure, st.status, st.respAt = up, false, false, 0, time.Time{}
		if st.ntried < len(st.tried) {
			st.tried[st.ntried] = up
			st.ntried++
		}
		switch {
		case st.body != nil:
			out.Body = io.NopCloser(bytes.NewReader(st.body))
			out.ContentLength = int64(len(st.body))
		case st.tracked != nil:
			// A fresh wrapper per attempt: the previous one was closed by
			// the transport.
			st.tracked = &trackedBody{rc: st.tracked.rc}
			out.Body = st.tracked
		}
		p.attempt(w, out, st, up, job, now, start)
		if !st.retry || attempt+1 >= p.cfg.MaxAttempts {
			if st.retry {
				p.writeError(w, st, http.StatusBadGateway, "")
			}
			break
		}
		p.metrics.retried(st.route)
	}
}

// forwardedValues computes, once per request, the header values rewrite
// and modifyResponse set on every attempt.
func (p *Proxy) forwardedValues(r *http.Request, st *request) {
	st.vals[valID] = st.id
	st.vals[valRespID] = st.id
	peer := peerAddr(r.RemoteAddr)
	trusted := p.trusted(peer)
	if peer.IsValid() {
		xff := peerString(r.RemoteAddr, peer)
		if prior := r.Header[hdrXFF]; trusted && len(prior) > 0 {
			xff = joinComma(prior) + ", " + xff
		}
		st.vals[valXFF] = xff
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	} else if v := r.Header[hdrXFP]; trusted && len(v) > 0 && (v[0] == "https" || v[0] == "http") {
		proto = v[0]
	}
	st.vals[valProto] = proto
	st.vals[valHost] = r.Host
}

// attempt sends the request to up once. The ticket is settled in a defer
// because ReverseProxy aborts the handler with a panic when the response
// body cannot be copied.
func (p *Proxy) attempt(w http.ResponseWriter, out *http.Request, st *request, up *balancer.Upstream, job balancer.Job, now, start time.Time) {
	ticket := up.Start(job.Work, now)
	defer func() {
		end := p.now()
		learnAt := st.respAt
		if learnAt.IsZero() {
			learnAt = end
		}
		ticket.Done(learnAt, learns(st))
		p.metrics.observe(up, st.route, st.status, end.Sub(start))
		// One access-log line per upstream attempt. The path is not logged:
		// account routes carry secrets in it (/verify/<key>, reset keys).
		if ce := p.access.Check(zap.InfoLevel, "request"); ce != nil {
			ce.Write(zap.String("request_id", st.id), zap.String("method", out.Method),
				zap.Stringer("route", st.route), zap.String("upstream", up.Address),
				zap.Int("status", st.status), zap.Duration("latency", end.Sub(start)))
		}
	}()
	p.rp.ServeHTTP(w, out)
}

// learns reports whether the attempt st may teach its host's speed: only a
// 2xx answer of a route that measures GPU work (gpuroute). An error answer
// (400, 401, 402, 429, ...) comes back in milliseconds without any, and POST
// /v1/images/generations only queues a job that a worker runs later,
// anywhere; learning from either would make the host look far faster than
// it is.
func learns(st *request) bool {
	return st.route.MeasuresWork() && !st.failure && st.status >= 200 && st.status < 300
}

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

// isEventStream reports whether the media type ct is text/event-stream.
func isEventStream(ct string) bool {
	const es = "text/event-stream"
	return len(ct) >= len(es) && strings.EqualFold(ct[:len(es)], es)
}

// rewrite builds the outbound request. SetURL joins the target's path; an
// empty target path adds no slash (legacy hosts are bare http://ip:port).
// The header values were computed once by forwardedValues.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*request)
	pr.SetURL(st.up.URL)
	h := pr.Out.Header
	h[hdrRequestID] = st.val(valID)
	if st.vals[valXFF] != "" {
		h[hdrXFF] = st.val(valXFF)
	}
	h[hdrXFP] = st.val(valProto)
	if st.vals[valHost] != "" {
		h[hdrXFH] = st.val(valHost)
	}
	if _, ok := h[hdrUserAgent]; !ok {
		// ReverseProxy would set an empty one (so that Go's default is not
		// sent), allocating.
		h[hdrUserAgent] = st.val(valEmpty)
	}
	if st.body != nil {
		body := st.body
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
}

// modifyResponse runs when the upstream's response headers arrive.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(ctxKey{}).(*request)
	st.status = resp.StatusCode
	st.respAt = p.now()
	// Before moveHeaders empties resp.Header.
	fault := resp.StatusCode >= 500 && hostFault(resp)
	if st.corsOwned {
		// Two Access-Control-Allow-Origin values make browsers reject
		// the response.
		delete(resp.Header, "Access-Control-Allow-Origin")
		delete(resp.Header, "Access-Control-Allow-Credentials")
		delete(resp.Header, "Access-Control-Expose-Headers")
		// The edge already varies on Origin; keep the upstream's other
		// Vary values only.
		if v := resp.Header["Vary"]; len(v) > 0 {
			kept := v[:0]
			for _, x := range v {
				if !strings.EqualFold(x, "Origin") {
					kept = append(kept, x)
				}
			}
			if len(kept) == 0 {
				delete(resp.Header, "Vary")
			} else {
				resp.Header["Vary"] = kept
			}
		}
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		moveHeaders(st.w.Header(), resp.Header)
		st.w.Header()[hdrRequestID] = st.val(valRespID)
	} else {
		// The upgrade handshake reads the response's own headers.
		resp.Header[hdrRequestID] = st.val(valRespID)
	}
	switch {
	case resp.StatusCode < 500:
		st.up.RecordSuccess()
	case fault:
		st.failure = true
		if st.pool.OthersAvailable(st.up, st.respAt) {
			st.up.RecordFailure(balancer.Fail5xx, st.respAt)
		} else {
			// Ejecting the pool's last host would only turn its answers
			// into 503 "no healthy upstream".
			st.up.CountFailure(balancer.Fail5xx)
		}
	}
	// Other 5xx (see hostFault) neither count against the host nor for it.
	return nil
}

// hostFault reports whether a 5xx response signals a broken host, for the
// passive health check: a 500, or a 502, 503 or 504 that is neither a
// service's own JSON error answer (a dependency of the service failed, for
// example its storage or an inference API; the host itself works) nor a 503
// with Retry-After (the host is full, legitimately busy). A 501 (operation
// not offered by this host) and any other 5xx are deliberate answers, not
// faults.
func hostFault(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusInternalServerError:
		return true
	case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		if resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" {
			return false
		}
		return !isJSON(resp.Header.Get("Content-Type"))
	}
	return false
}

// isJSON reports whether the media type ct is application/json, which our
// services' error handler answers and an intermediary's error page is not.
func isJSON(ct string) bool {
	const js = "application/json"
	return len(ct) >= len(js) && strings.EqualFold(ct[:len(js)], js)
}

// moveHeaders moves the upstream's response headers (already canonical and
// stripped of hop-by-hop ones) into the client's header map, appending to
// values already there, as ReverseProxy's copy would but without
// canonicalising each key again or copying each value slice. An event-stream
// Content-Type stays in src: ReverseProxy reads it to flush each event, and
// copies it itself.
func moveHeaders(dst, src http.Header) {
	for k, vv := range src {
		if k == "Content-Type" && len(vv) > 0 && isEventStream(vv[0]) {
			continue
		}
		if prior, ok := dst[k]; ok {
			dst[k] = append(prior, vv...)
		} else {
			dst[k] = vv
		}
		delete(src, k)
	}
}

// handleError runs when the upstream call failed before a response. It
// either asks ServeHTTP to retry on another host (writing nothing) or
// answers the client.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(ctxKey{}).(*request)
	st.failure = true
	now := p.now()
	var maxBytes *http.MaxBytesError
	switch {
	case st.clientCtx.Err() != nil:
		// The client went away; its request says nothing about the host.
		st.status = 499
		return
	case errors.As(err, &maxBytes):
		st.status = http.StatusRequestEntityTooLarge
		p.writeError(w, st, st.status, "")
		return
	case errors.Is(r.Context().Err(), context.DeadlineExceeded):
		// The request's own deadline passed (also when it did so while
		// dialling).
		st.status = http.StatusGatewayTimeout
		st.up.RecordFailure(balancer.FailTimeout, now)
		p.writeError(w, st, st.status, "")
		return
	case !isDialError(err) && errors.Is(err, context.DeadlineExceeded):
		// A transport timeout after the request may have reached the host.
		st.up.RecordFailure(balancer.FailTimeout, now)
	default:
		// A dial error (refused, or a dial timeout: a blackholed host,
		// which also matches context.DeadlineExceeded) or a broken
		// connection.
		st.up.RecordFailure(balancer.FailConnect, now)
	}
	st.status = http.StatusBadGateway
	if p.replayable(r, st, err) {
		st.retry = true
		return
	}
	p.log.Warn("upstream request failed", zap.String("request_id", st.id),
		zap.String("upstream", st.up.Address), zap.Error(err))
	p.writeError(w, st, st.status, "")
}

// replayable reports whether a failed request may go to another host: it
// provably never reached a backend (a dial error, with its body unread), or
// it is idempotent and its body can be sent again.
func (p *Proxy) replayable(r *http.Request, st *request, err error) bool {
	bodyIntact := st.body != nil || st.tracked == nil || !st.tracked.used()
	if isDialError(err) {
		return bodyIntact
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodPut, http.MethodDelete:
		return st.body != nil || st.tracked == nil
	}
	return false
}

// isDialError reports whether err happened while connecting, so the request
// cannot have been seen by the host.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
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
// array pointers, so that neither Get nor Put allocates.
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

func (p *Proxy) trusted(a netip.Addr) bool {
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr parses the IP of a RemoteAddr ("ip:port").
func peerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		a, _ := netip.ParseAddr(remote)
		return a.Unmap()
	}
	return ap.Addr().Unmap()
}

// peerString returns a.String() for the peer a parsed from remote, without
// allocating in the common case of a plain IPv4 "ip:port" (which netip only
// accepts in canonical form).
func peerString(remote string, a netip.Addr) string {
	if a.Is4() && !strings.HasPrefix(remote, "[") {
		switch strings.Count(remote, ":") {
		case 0:
			return remote
		case 1:
			return remote[:strings.IndexByte(remote, ':')]
		}
	}
	return a.String()
}

func joinComma(vs []string) string {
	if len(vs) == 1 {
		return vs[0]
	}
	n := 0
	for _, v := range vs {
		n += len(v) + 2
	}
	b := make([]byte, 0, n)
	for i, v := range vs {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = append(b, v...)
	}
	return string(b)
}
