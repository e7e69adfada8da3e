package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/clock"
)

// prediction is the part of Replicate's prediction object we read.
type prediction struct {
	ID      string          `json:"id"`
	Status  string          `json:"status"`
	Output  json.RawMessage `json:"output"`
	Error   json.RawMessage `json:"error"`
	URLs    predictionURLs  `json:"urls"`
	Metrics struct {
		PredictTime float64 `json:"predict_time"`
	} `json:"metrics"`
}

type predictionURLs struct {
	Get    string `json:"get"`
	Cancel string `json:"cancel"`
}

// terminal reports whether status is final.
func terminal(status string) bool {
	switch status {
	case "succeeded", "failed", "canceled", "aborted":
		return true
	}
	return false
}

// run creates a prediction of version with input, waits for it and returns
// it once succeeded. When ctx ends first the prediction is cancelled.
func (b *Backend) run(ctx context.Context, what, version string, input map[string]any) (*prediction, error) {
	body, err := json.Marshal(map[string]any{"version": version, "input": input})
	if err != nil {
		return nil, fmt.Errorf("replicate %s: encode input: %w", what, err)
	}
	header := http.Header{}
	switch {
	case b.cfg.Wait == 0:
		header.Set("Prefer", "wait")
	case b.cfg.Wait > 0:
		header.Set("Prefer", "wait="+strconv.Itoa(max(1, int(b.cfg.Wait.Seconds()))))
	}
	if dl, ok := ctx.Deadline(); ok {
		// Let Replicate stop the prediction itself if we cannot cancel it.
		secs := int(math.Ceil(time.Until(dl).Seconds()))
		header.Set("Cancel-After", strconv.Itoa(max(1, secs))+"s")
	}
	var p prediction
	if err := b.callJSON(ctx, what, http.MethodPost, b.cfg.BaseURL+"/predictions", header, body, &p); err != nil {
		return nil, err
	}
	if p.ID == "" {
		return nil, &inference.UpstreamError{Backend: Name, Status: http.StatusOK, Message: "prediction without id"}
	}
	for !terminal(p.Status) {
		if err := clock.Sleep(ctx, b.cfg.PollInterval); err != nil {
			b.cancel(ctx, &p)
			return nil, fmt.Errorf("replicate %s: prediction %s: %w", what, p.ID, err)
		}
		var next prediction
		if err := b.callJSON(ctx, what, http.MethodGet, b.apiURL(p.URLs.Get, "/predictions/"+p.ID), nil, nil, &next); err != nil {
			// Whatever went wrong, do not leave the prediction running.
			b.cancel(ctx, &p)
			if ctx.Err() != nil {
				return nil, fmt.Errorf("replicate %s: prediction %s: %w", what, p.ID, ctx.Err())
			}
			return nil, err
		}
		if next.ID == "" {
			next.ID, next.URLs = p.ID, p.URLs
		}
		p = next
	}
	switch p.Status {
	case "succeeded":
		return &p, nil
	case "failed":
		msg := errorText(p.Error)
		if msg == "" {
			msg = "prediction failed"
		}
		return nil, &inference.UpstreamError{Backend: Name, Message: msg}
	default:
		return nil, &inference.UpstreamError{Backend: Name, Message: "prediction " + p.Status}
	}
}

// errorText renders a prediction's error field (a string, or occasionally
// an object).
func errorText(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return truncate(s)
	}
	return truncate(string(raw))
}

// cancel asks Replicate to stop p, with a fresh short context because ctx
// has usually ended already. Failures are logged, not returned: the caller
// is already returning an error of its own.
func (b *Backend) cancel(ctx context.Context, p *prediction) {
	cctx, done := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.CancelTimeout)
	defer done()
	target := b.apiURL(p.URLs.Cancel, "/predictions/"+p.ID+"/cancel")
	if err := b.callJSON(cctx, "cancel", http.MethodPost, target, nil, nil, nil); err != nil {
		b.log.Warn("cancel prediction failed", zap.String("prediction_id", p.ID), zap.Error(err))
		return
	}
	b.log.Debug("prediction canceled", zap.String("prediction_id", p.ID))
}

// apiURL returns u when it points at the API host (so the token may be sent
// there), else BaseURL+fallback.
func (b *Backend) apiURL(u, fallback string) string {
	if u != "" && b.sameHost(u) {
		return u
	}
	return b.cfg.BaseURL + fallback
}

// sameHost reports whether u has the API's scheme and host.
func (b *Backend) sameHost(u string) bool {
	pu, err := url.Parse(u)
	return err == nil && pu.Scheme == b.base.Scheme && pu.Host == b.base.Host
}

// callJSON sends one API request (with auth) and decodes the JSON answer
// into out (nil = discard).
func (b *Backend) callJSON(ctx context.Context, what, method, target string, header http.Header, body []byte, out any) error {
	if header == nil {
		header = http.Header{}
	}
	header.Set("Authorization", "Bearer "+b.cfg.Token)
	header.Set("Accept", "application/json")
	if body != nil {
		header.Set("Content-Type", "application/json")
	}
	data, err := b.send(ctx, what, method, target, header, body)
	if err != nil {
		return err
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return &inference.UpstreamError{Backend: Name, Status: http.StatusOK, Message: "invalid response from server", Err: err}
	}
	return nil
}

// errTooLarge reports a body over Config.MaxOutputBytes.
var errTooLarge = errors.New("response too large")

// send performs an HTTP exchange with retries: dial failures always (nothing
// was sent), 429 always (the request was refused, honouring Retry-After),
// 5xx and other transport errors for GET only. It returns the body of a 2xx
// answer; anything else becomes *inference.UpstreamError (or ctx's error).
func (b *Backend) send(ctx context.Context, what, method, target string, header http.Header, body []byte) ([]byte, error) {
	backoff := b.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		status, respHeader, data, err := b.do(ctx, method, target, header, body)
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("replicate %s: %w", what, ctxErr)
		}
		var retry bool
		var wait time.Duration
		var final error
		switch {
		case errors.Is(err, errTooLarge):
			return nil, &inference.UpstreamError{Backend: Name, Status: status, Message: "response too large", Err: err}
		case err != nil:
			retry = isDialError(err) || method == http.MethodGet
			final = &inference.UpstreamError{Backend: Name, Message: "connection to server failed", Err: err}
			if isDialError(err) {
				final = &inference.UpstreamError{Backend: Name, Message: "server unreachable", Err: err}
			}
		case status >= 200 && status <= 299:
			return data, nil
		default:
			retry = status == http.StatusTooManyRequests || (status >= 500 && method == http.MethodGet)
			wait = retryAfter(respHeader.Get("Retry-After"), time.Now())
			final = &inference.UpstreamError{Backend: Name, Status: status, Message: problemMessage(status, data)}
		}
		if !retry || attempt >= b.cfg.MaxRetries {
			return nil, final
		}
		if wait <= 0 {
			wait = backoff
			backoff *= 2
		}
		wait = min(wait, b.cfg.MaxRetryAfter)
		b.log.Warn("request failed, retrying", zap.String("op", what), zap.String("method", method),
			zap.Int("status", status), zap.Int("attempt", attempt+1), zap.Duration("wait", wait))
		if err := clock.Sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("replicate %s: %w", what, err)
		}
	}
}

// do performs one HTTP exchange and reads the (capped) body.
func (b *Backend) do(ctx context.Context, method, target string, header http.Header, body []byte) (int, http.Header, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return 0, nil, nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxOutputBytes+1))
	if err != nil {
		return 0, nil, nil, err
	}
	if int64(len(data)) > b.cfg.MaxOutputBytes {
		return resp.StatusCode, resp.Header, nil, fmt.Errorf("%w: over %d bytes", errTooLarge, b.cfg.MaxOutputBytes)
	}
	return resp.StatusCode, resp.Header, data, nil
}

// isDialError reports whether err means the connection (or name lookup)
// failed, so that nothing of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// retryAfter parses a Retry-After header (seconds or an HTTP date); zero
// means absent or unparsable.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return time.Duration(max(secs, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}

// problem is Replicate's problem-details error body.
type problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// problemMessage extracts the server's own message from an error body.
func problemMessage(status int, body []byte) string {
	var p problem
	if json.Unmarshal(body, &p) == nil {
		if p.Detail != "" {
			return truncate(p.Detail)
		}
		if p.Title != "" {
			return truncate(p.Title)
		}
	}
	if text := strings.TrimSpace(string(body)); text != "" && !strings.HasPrefix(text, "<") {
		return truncate(text)
	}
	return http.StatusText(status)
}

// truncate keeps error messages (which reach clients) short.
func truncate(s string) string {
	const limit = 500
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "…"
}
