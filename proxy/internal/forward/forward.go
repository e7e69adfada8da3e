// Package forward is the proxy's data path: an http.Handler that picks an
// upstream with a balancer.Selector and forwards the request to it with
// httputil.ReverseProxy, retrying on another host only when the request
// provably never reached a backend or is idempotent and replayable.
//
// GPU routes (POST /images, /extend_prompt, /interrogate, /upscale, /mask,
// /v1/images/generations) go to the GPU pool; their bodies (at most the body
// limit) are buffered so their work can be estimated and the request
// replayed. Every other request goes to the account pool with its body
// streamed. Upstream failures answer 502, upstream timeouts 504 and an empty
// pool 503 with Retry-After, all as JSON.
//
// This package must never log per successful request (the data path stays
// lean) and must never read a streamed body itself.
package forward

import (
	"bytes"
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
)

// Route classes a request can belong to; they index the metrics.
const (
	RouteAccount = iota
	RouteImages
	RouteExtendPrompt
	RouteInterrogate
	RouteUpscale
	RouteMask
	RouteGenerations
	numRoutes
)

// routeNames are the metric label values of the route classes.
var routeNames = [numRoutes]string{"account", "images", "extend_prompt", "interrogate", "upscale", "mask", "v1_images_generations"}

// Classify returns the route class of a request: one of the GPU routes for a
// POST to a GPU path, else RouteAccount.
func Classify(method, path string) int {
	if method != http.MethodPost {
		return RouteAccount
	}
	switch path {
	case "/images":
		return RouteImages
	case "/extend_prompt":
		return RouteExtendPrompt
	case "/interrogate":
		return RouteInterrogate
	case "/upscale":
		return RouteUpscale
	case "/mask":
		return RouteMask
	case "/v1/images/generations":
		return RouteGenerations
	}
	return RouteAccount
}

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
	// 5 MiB. GPU-route bodies are buffered up to this size.
	BodyLimit int64
	// MaxAttempts is how many hosts one request may try; 0 means 3.
	MaxAttempts int
	// RetryAfter is the Retry-After sent with 503 when no host is
	// available; 0 means 2 s.
	RetryAfter time.Duration
	// TrustedProxies are peers whose X-Forwarded-For and
	// X-Forwarded-Proto are kept (extended) rather than replaced.
	TrustedProxies []netip.Prefix
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
	retryAfter string
	now        func() time.Time
	bufs       sync.Pool // *[]byte for GPU bodies
}

// New returns a proxy sending requests through transport. metrics may be nil.
func New(cfg Config, pools Pools, transport http.RoundTripper, metrics *Metrics, log *zap.Logger) *Proxy {
	cfg = cfg.withDefaults()
	p := &Proxy{
		cfg:        cfg,
		pools:      pools,
		metrics:    metrics,
		log:        log,
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

// request is the per-request state shared between ServeHTTP and the
// ReverseProxy hooks, carried in the request context.
type request struct {
	route     int
	id        string
	up        *balancer.Upstream
	body      []byte // buffered GPU body; nil when streamed
	tracked   *trackedBody
	clientCtx context.Context
	corsOwned bool // an outer handler set CORS headers; drop the upstream's

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

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := p.now()
	st := &request{route: Classify(r.Method, r.URL.Path), clientCtx: r.Context()}
	_, st.corsOwned = w.Header()["Access-Control-Allow-Origin"]
	st.id = r.Header.Get("X-Request-ID")
	if !validRequestID(st.id) {
		st.id = newRequestID()
	}

	pool, sel, timeout := p.pools.Account, p.pools.AccountSelector, p.cfg.UpstreamTimeout
	job := balancer.Job{}
	if st.route != RouteAccount {
		pool, sel, timeout = p.pools.GPU, p.pools.GPUSelector, p.cfg.GPUTimeout
		buf, ok := p.readBody(w, r, st)
		if !ok {
			return
		}
		defer p.bufs.Put(buf)
		job.Work = balancer.Estimate(r.URL.Path, st.body)
	} else if wantsStream(r) {
		timeout = p.cfg.StreamTimeout
	} else if r.ContentLength > p.cfg.BodyLimit {
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
		return
	} else if r.Body != nil && r.Body != http.NoBody {
		r.Body = http.MaxBytesReader(w, r.Body, p.cfg.BodyLimit)
		st.tracked = &trackedBody{rc: r.Body}
	}

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
		ticket.Done(learnAt, !st.failure && st.status != 0 && st.status < 500)
		p.metrics.observe(up, st.route, st.status, end.Sub(start))
		// One access-log line per upstream attempt. The path is not logged:
		// account routes carry secrets in it (/verify/<key>, reset keys).
		p.log.Info("request", zap.String("request_id", st.id), zap.String("method", out.Method),
			zap.String("route", routeNames[st.route]), zap.String("upstream", up.Address),
			zap.Int("status", st.status), zap.Duration("latency", end.Sub(start)))
	}()
	p.rp.ServeHTTP(w, out)
}

// readBody buffers a GPU-route body (at most BodyLimit) into st.body. It
// answers the client itself and returns false when the body is too large or
// unreadable. The returned buffer goes back to p.bufs when done.
func (p *Proxy) readBody(w http.ResponseWriter, r *http.Request, st *request) (*[]byte, bool) {
	if r.ContentLength > p.cfg.BodyLimit {
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
		return nil, false
	}
	bp, _ := p.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	buf := bytes.NewBuffer((*bp)[:0])
	if r.ContentLength > 0 {
		buf.Grow(int(r.ContentLength))
	}
	n, err := buf.ReadFrom(io.LimitReader(r.Body, p.cfg.BodyLimit+1))
	*bp = buf.Bytes()[:0:buf.Cap()]
	switch {
	case n > p.cfg.BodyLimit:
		p.bufs.Put(bp)
		p.writeError(w, st, http.StatusRequestEntityTooLarge, "")
		return nil, false
	case err != nil:
		p.bufs.Put(bp)
		if r.Context().Err() == nil {
			p.writeError(w, st, http.StatusBadRequest, "could not read the request body")
		}
		return nil, false
	}
	st.body = buf.Bytes()
	return bp, true
}

// rewrite builds the outbound request.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*request)
	pr.SetURL(st.up.URL)
	// SetURL joins the target's path; an empty target path must not add a
	// slash, and legacy hosts are bare http://ip:port.
	h := pr.Out.Header
	h.Set("X-Request-ID", st.id)
	peer := peerAddr(pr.In.RemoteAddr)
	trusted := p.trusted(peer)
	xff := peer.String()
	if prior := pr.In.Header["X-Forwarded-For"]; trusted && len(prior) > 0 {
		xff = joinComma(prior) + ", " + xff
	}
	if peer.IsValid() {
		h["X-Forwarded-For"] = []string{xff}
	}
	proto := "http"
	if pr.In.TLS != nil {
		proto = "https"
	} else if v := pr.In.Header.Get("X-Forwarded-Proto"); trusted && (v == "https" || v == "http") {
		proto = v
	}
	h["X-Forwarded-Proto"] = []string{proto}
	if pr.In.Host != "" {
		h["X-Forwarded-Host"] = []string{pr.In.Host}
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
	resp.Header.Set("X-Request-ID", st.id)
	if st.corsOwned {
		// Two Access-Control-Allow-Origin values make browsers reject
		// the response.
		delete(resp.Header, "Access-Control-Allow-Origin")
		delete(resp.Header, "Access-Control-Allow-Credentials")
		delete(resp.Header, "Access-Control-Expose-Headers")
	}
	if resp.StatusCode >= 500 {
		st.failure = true
		st.up.RecordFailure(balancer.Fail5xx, st.respAt)
	} else {
		st.up.RecordSuccess()
	}
	return nil
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
	case errors.Is(err, context.DeadlineExceeded):
		st.status = http.StatusGatewayTimeout
		st.up.RecordFailure(balancer.FailTimeout, now)
		p.writeError(w, st, st.status, "")
		return
	}
	st.up.RecordFailure(balancer.FailConnect, now)
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

// bufferPool implements httputil.BufferPool with 32 KiB buffers.
type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

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
