package forward

// The httputil.ReverseProxy hooks: rewrite builds each attempt's outbound
// request, modifyResponse takes the upstream's answer and handleError a
// failed attempt, deciding whether ServeHTTP may retry it on another host.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"syscall"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/proxy/internal/balancer"
	"github.com/nounsai/sdserver/shared/edgepolicy"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// rewrite builds the outbound request. SetURL joins the target's path; an
// empty target path adds no slash (legacy hosts are bare http://ip:port).
// ReverseProxy itself sets an empty User-Agent when the client sent none.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(ctxKey{}).(*request)
	pr.SetURL(st.up.URL)
	h := pr.Out.Header
	h.Set(edgepolicy.RequestIDHeader, st.id)
	if st.xff != "" {
		h.Set("X-Forwarded-For", st.xff)
	}
	h.Set("X-Forwarded-Proto", st.proto)
	h.Del(gpuroute.SlotNoticeHeader)
	if st.notice {
		h.Set(gpuroute.SlotNoticeHeader, "1")
	}
	if pr.In.Host != "" {
		h.Set("X-Forwarded-Host", pr.In.Host)
	}
	if st.body != nil {
		body := st.body
		pr.Out.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
}

// forwardedFor returns the X-Forwarded-For and X-Forwarded-Proto values for
// r's upstream requests: the peer appended to a trusted proxy's list (or
// alone), and the scheme the client used (a trusted proxy's word for it, or
// this connection's).
func (p *Proxy) forwardedFor(r *http.Request) (xff, proto string) {
	peer := peerAddr(r.RemoteAddr)
	trusted := p.trusted(peer)
	if peer.IsValid() {
		xff = peer.String()
		if prior := r.Header.Values("X-Forwarded-For"); trusted && len(prior) > 0 {
			xff = strings.Join(prior, ", ") + ", " + xff
		}
	}
	proto = "http"
	if r.TLS != nil {
		proto = "https"
	} else if v := r.Header.Values("X-Forwarded-Proto"); trusted && len(v) > 0 && (v[0] == "https" || v[0] == "http") {
		proto = v[0]
	}
	return xff, proto
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

// modifyResponse runs when the upstream's response headers arrive.
// ReverseProxy then copies resp.Header to the client's header map.
func (p *Proxy) modifyResponse(resp *http.Response) error {
	st := resp.Request.Context().Value(ctxKey{}).(*request)
	st.status = resp.StatusCode
	st.respAt = p.now()
	if resp.Header.Get(gpuroute.HostFullHeader) != "" {
		resp.Header.Del(gpuroute.HostFullHeader)
		if resp.StatusCode == http.StatusServiceUnavailable && p.mayTryElsewhere(st) {
			return errHostFull
		}
	}
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
	resp.Header.Set(edgepolicy.RequestIDHeader, st.id)
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

// errHostFull is modifyResponse's error for a host that refused the
// request as full (gpuroute.HostFullHeader) when another host may take it.
var errHostFull = errors.New("host full")

// mayTryElsewhere reports whether a request a host refused as full may go
// to another host: its body is buffered (the refusing host read it), it has
// attempts left, and some available host has not been tried.
func (p *Proxy) mayTryElsewhere(st *request) bool {
	if st.body == nil || st.ntried >= p.cfg.MaxAttempts {
		return false
	}
	now := p.now()
	for _, u := range st.pool.Hosts() {
		if u.Available(now) && !st.skip(u) {
			return true
		}
	}
	return false
}

// handleError runs when the upstream call failed before a response. It
// either asks ServeHTTP to retry on another host (writing nothing) or
// answers the client.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	st := r.Context().Value(ctxKey{}).(*request)
	if errors.Is(err, errHostFull) {
		// Not a failure of the host: it was full (modifyResponse).
		st.retry = true
		return
	}
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
