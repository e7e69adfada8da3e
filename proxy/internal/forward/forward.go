// Package forward is the proxy's data path: an http.Handler that picks an
// upstream with a balancer.Selector and forwards the request to it with
// httputil.ReverseProxy, retrying on another host only when the request
// provably never reached a backend, is idempotent and replayable, or was
// refused by a full GPU host (gpuroute.HostFullHeader) with its body held.
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
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/admission"
	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/config"
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
	// Admission, when set, holds GPU requests that do GPU work
	// (gpuroute.Route.MeasuresWork) until the fleet has a slot for them,
	// in a fair queue; nil sends them at once.
	Admission *admission.Controller
	// AccessLog receives one "request" line per upstream attempt (without
	// the caller, which would cost a stack walk); nil means the logger
	// passed to New.
	AccessLog *zap.Logger
}

func (c Config) withDefaults() Config {
	c.GPUTimeout = config.OrDefault(c.GPUTimeout, 300*time.Second)
	c.UpstreamTimeout = config.OrDefault(c.UpstreamTimeout, 30*time.Second)
	c.StreamTimeout = config.OrDefault(c.StreamTimeout, time.Hour)
	c.BodyLimit = config.OrDefault(c.BodyLimit, 5<<20)
	c.MaxAttempts = config.OrDefault(c.MaxAttempts, 3)
	c.RetryAfter = config.OrDefault(c.RetryAfter, 2*time.Second)
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

	// notice: the request asks its host for the slot notice
	// (slotnotice.go); nw is then the writer the client's answer goes
	// through, and admitted its admission ticket (zero without admission).
	notice   bool
	nw       noticeWriter
	admitted admission.Ticket

	// X-Forwarded-For and X-Forwarded-Proto for the upstream, computed
	// once by ServeHTTP (forwardedFor); xff is empty when the peer's
	// address does not parse.
	xff   string
	proto string

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
	st := &request{route: gpuroute.Lookup(r.Method, r.URL.Path), w: w, in: r, raw: r.Body, clientCtx: r.Context()}
	_, st.corsOwned = w.Header()["Access-Control-Allow-Origin"]
	st.id = edgepolicy.RequestID(r.Header)
	st.xff, st.proto = p.forwardedFor(r)

	pool, sel, timeout := p.pools.Account, p.pools.AccountSelector, p.cfg.UpstreamTimeout
	job := balancer.Job{}
	if st.route != gpuroute.None {
		pool, sel, timeout = p.pools.GPU, p.pools.GPUSelector, p.cfg.GPUTimeout
		prefix, ok := p.readPrefix(w, r, st)
		if !ok {
			return
		}
		job.Work = balancer.EstimatePrefix(st.route, prefix, st.body != nil)
		if st.route.MeasuresWork() {
			st.notice = true
			st.nw.ResponseWriter = w
			w = &st.nw
			st.w = w
			if p.cfg.Admission != nil {
				ticket, ok := p.admit(w, r, st, job.Work)
				if !ok {
					return
				}
				st.admitted = ticket
				defer ticket.Done()
			}
		}
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

// admit waits for the admission controller's leave to send a GPU request.
// A refusal is answered here (503 with Retry-After and the queue headers);
// a client that left gets nothing (499 in the metrics' terms).
func (p *Proxy) admit(w http.ResponseWriter, r *http.Request, st *request, work float64) (admission.Ticket, bool) {
	ticket, err := p.cfg.Admission.Admit(r.Context(), r, work)
	if err == nil {
		ticket.Headers(w.Header())
		return ticket, true
	}
	var refusal *admission.Refusal
	if errors.As(err, &refusal) {
		refusal.Headers(w.Header())
		p.writeError(w, st, http.StatusServiceUnavailable, refusal.Message)
	} else {
		st.status = 499
	}
	return ticket, false
}

// attempt sends the request to up once. The ticket is settled in a defer
// because ReverseProxy aborts the handler with a panic when the response
// body cannot be copied.
func (p *Proxy) attempt(w http.ResponseWriter, out *http.Request, st *request, up *balancer.Upstream, job balancer.Job, now, start time.Time) {
	ticket := up.Start(job.Work, now)
	var settled atomic.Bool
	if st.notice {
		out = p.withSlotNotice(out, st, ticket, &settled)
	}
	defer func() {
		end := p.now()
		learnAt := st.respAt
		if learnAt.IsZero() {
			learnAt = end
		}
		if settled.CompareAndSwap(false, true) {
			ticket.Done(learnAt, learns(st))
		}
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
