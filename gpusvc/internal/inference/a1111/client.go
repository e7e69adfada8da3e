package a1111

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/clock"
)

// call sends one JSON request and decodes the JSON answer into out. With
// serial set it first waits for this Backend's turn (bounded by ctx). Dial
// failures are retried with backoff; every other failure is returned as is:
// ctx errors wrapped (errors.Is works), HTTP and transport errors as
// *inference.UpstreamError.
func (b *Backend) call(ctx context.Context, what, method, path string, in, out any, serial bool) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = json.Marshal(in); err != nil {
			return fmt.Errorf("a1111 %s: encode request: %w", what, err)
		}
	}
	if serial {
		select {
		case b.sem <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("a1111 %s: wait for server: %w", what, ctx.Err())
		}
		defer func() { <-b.sem }()
	}
	if b.cfg.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.cfg.Timeout)
		defer cancel()
	}

	backoff := b.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		start := time.Now()
		status, respBody, err := b.do(ctx, method, path, body)
		if err == nil {
			b.log.Debug("request done", zap.String("op", what), zap.Int("status", status),
				zap.Duration("duration", time.Since(start)), zap.Int("response_bytes", len(respBody)))
			if status < 200 || status > 299 {
				return &inference.UpstreamError{Backend: Name, Status: status, Message: errorMessage(status, respBody)}
			}
			if out == nil {
				return nil
			}
			if err := json.Unmarshal(respBody, out); err != nil {
				return &inference.UpstreamError{Backend: Name, Status: status,
					Message: "invalid response from server", Err: err}
			}
			return nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			if serial && !isDialError(err) {
				// The server may still be rendering the abandoned job; stop
				// it before the next caller's turn, so that the server
				// really runs one of our jobs at a time.
				b.interrupt(context.WithoutCancel(ctx))
			}
			return fmt.Errorf("a1111 %s: %w", what, ctxErr)
		}
		if errors.Is(err, errTooLarge) {
			return &inference.UpstreamError{Backend: Name, Status: status, Message: "response too large", Err: err}
		}
		if !isDialError(err) {
			// The request may have reached the server: never send it again.
			return &inference.UpstreamError{Backend: Name, Message: "connection to server failed", Err: err}
		}
		if attempt >= b.cfg.DialRetries {
			return &inference.UpstreamError{Backend: Name, Message: "server unreachable", Err: err}
		}
		b.log.Warn("dial failed, retrying", zap.String("op", what), zap.Int("attempt", attempt+1),
			zap.Duration("backoff", backoff), zap.Error(err))
		if err := clock.Sleep(ctx, backoff); err != nil {
			return fmt.Errorf("a1111 %s: %w", what, err)
		}
		backoff *= 2
	}
}

// errTooLarge reports a response body over Config.MaxResponseBytes.
var errTooLarge = errors.New("response too large")

// do performs one HTTP exchange and reads the (capped) body.
func (b *Backend) do(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, b.cfg.MaxResponseBytes+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(data)) > b.cfg.MaxResponseBytes {
		return resp.StatusCode, nil, fmt.Errorf("%w: over %d bytes", errTooLarge, b.cfg.MaxResponseBytes)
	}
	return resp.StatusCode, data, nil
}

// isDialError reports whether err means the TCP connection (or name lookup)
// failed, so that nothing of the request was sent.
func isDialError(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns)
}

// apiError is the body A1111 sends on failure. Detail is a string from its
// own handler and a list of {loc, msg, type} from FastAPI's validation.
type apiError struct {
	Error  string          `json:"error"`
	Detail json.RawMessage `json:"detail"`
	Body   string          `json:"body"`
	Errors string          `json:"errors"`
}

// errorMessage extracts the server's own message from an error body.
func errorMessage(status int, body []byte) string {
	var e apiError
	if json.Unmarshal(body, &e) == nil {
		var detail string
		if json.Unmarshal(e.Detail, &detail) == nil && detail != "" {
			return truncate(detail)
		}
		var items []struct {
			Loc []any  `json:"loc"`
			Msg string `json:"msg"`
		}
		if json.Unmarshal(e.Detail, &items) == nil && len(items) > 0 {
			msgs := make([]string, 0, len(items))
			for _, it := range items {
				loc := make([]string, 0, len(it.Loc))
				for _, l := range it.Loc {
					loc = append(loc, fmt.Sprint(l))
				}
				msgs = append(msgs, strings.Join(loc, ".")+": "+it.Msg)
			}
			return truncate(strings.Join(msgs, "; "))
		}
		if e.Errors != "" {
			return truncate(e.Errors)
		}
		if e.Error != "" {
			return truncate(e.Error)
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

// interrupt asks the server to stop whatever it is running
// (POST /sdapi/v1/interrupt). Only called while this Backend holds its turn,
// so the job it stops is ours. Failures are logged: the server may be gone.
func (b *Backend) interrupt(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, err := b.do(ctx, http.MethodPost, "/sdapi/v1/interrupt", nil); err != nil {
		b.log.Warn("interrupt failed", zap.Error(err))
	}
}
