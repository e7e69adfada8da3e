package storage

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/nounsai/sdserver/shared/apperr"
)

// BunnyConfig configures the Bunny backend.
type BunnyConfig struct {
	// BaseURL is the Storage API endpoint without a trailing slash, e.g.
	// https://storage.bunnycdn.com.
	BaseURL string
	// Zones maps each kind to its storage zone; a kind without a zone
	// fails every operation.
	Zones map[Kind]Zone
	// Public maps each kind to its pull-zone base URL; "" means no URL.
	Public map[Kind]string
	// Timeout bounds one request when NewBunny builds the client; zero
	// means 60s.
	Timeout time.Duration
}

// Bunny is the BunnyCDN Storage API backend: PUT (201), GET and DELETE (200)
// on <BaseURL>/<zone>/<key> with the zone's AccessKey header.
type Bunny struct {
	cfg    BunnyConfig
	client *http.Client
}

// NewBunny returns a Bunny backend. client nil means a client whose
// timeout is cfg.Timeout.
func NewBunny(cfg BunnyConfig, client *http.Client) *Bunny {
	if client == nil {
		t := cfg.Timeout
		if t <= 0 {
			t = 60 * time.Second
		}
		client = &http.Client{Timeout: t}
	}
	return &Bunny{cfg: cfg, client: client}
}

func (b *Bunny) request(ctx context.Context, method string, kind Kind, key string, body []byte) (*http.Response, error) {
	if err := checkArgs(kind, key); err != nil {
		return nil, err
	}
	zone, ok := b.cfg.Zones[kind]
	if !ok || zone.Name == "" {
		return nil, fmt.Errorf("storage: no bunny zone for %s", kind)
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, b.cfg.BaseURL+"/"+zone.Name+"/"+key, rd)
	if err != nil {
		return nil, fmt.Errorf("storage: build %s %s: %w", method, key, err)
	}
	req.Header.Set("AccessKey", zone.AccessKey)
	if body != nil {
		req.Header.Set("Content-Type", "application/octet-stream")
		req.ContentLength = int64(len(body))
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("storage: bunny %s %s %s: %w", method, kind, key, err)
	}
	return resp, nil
}

// drain reads a little of the body (for the error message) and closes it.
func drain(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_ = resp.Body.Close()
	return string(bytes.TrimSpace(b))
}

// Put implements Store: PUT, expecting 201.
func (b *Bunny) Put(ctx context.Context, kind Kind, key string, data []byte) error {
	if data == nil {
		data = []byte{}
	}
	resp, err := b.request(ctx, http.MethodPut, kind, key, data)
	if err != nil {
		return apperr.Wrap(apperr.KindBadGateway, "Storage upload failed", err)
	}
	msg := drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return apperr.Wrap(apperr.KindBadGateway, "Storage upload failed",
			fmt.Errorf("storage: bunny PUT %s %s: status %d: %s", kind, key, resp.StatusCode, msg))
	}
	return nil
}

// Get implements Store: GET, expecting 200 (404 wraps ErrNotFound).
func (b *Bunny) Get(ctx context.Context, kind Kind, key string) ([]byte, error) {
	resp, err := b.request(ctx, http.MethodGet, kind, key, nil)
	if err != nil {
		return nil, apperr.Wrap(apperr.KindBadGateway, "Storage download failed", err)
	}
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound:
		_ = drain(resp)
		return nil, fmt.Errorf("storage: bunny GET %s %s: %w", kind, key, ErrNotFound)
	default:
		msg := drain(resp)
		return nil, apperr.Wrap(apperr.KindBadGateway, "Storage download failed",
			fmt.Errorf("storage: bunny GET %s %s: status %d: %s", kind, key, resp.StatusCode, msg))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxObjectSize+1))
	if err != nil {
		return nil, apperr.Wrap(apperr.KindBadGateway, "Storage download failed",
			fmt.Errorf("storage: bunny GET %s %s: read: %w", kind, key, err))
	}
	if len(data) > MaxObjectSize {
		return nil, fmt.Errorf("storage: bunny GET %s %s: object larger than %d bytes", kind, key, MaxObjectSize)
	}
	return data, nil
}

// Delete implements Store: DELETE, expecting 200; 404 counts as done.
func (b *Bunny) Delete(ctx context.Context, kind Kind, key string) error {
	resp, err := b.request(ctx, http.MethodDelete, kind, key, nil)
	if err != nil {
		return apperr.Wrap(apperr.KindBadGateway, "Storage delete failed", err)
	}
	msg := drain(resp)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNotFound {
		return apperr.Wrap(apperr.KindBadGateway, "Storage delete failed",
			fmt.Errorf("storage: bunny DELETE %s %s: status %d: %s", kind, key, resp.StatusCode, msg))
	}
	return nil
}

// URL implements Store: <pull-zone base>/<key>, or "" without a base.
func (b *Bunny) URL(kind Kind, key string) string {
	base := b.cfg.Public[kind]
	if base == "" {
		return ""
	}
	return base + "/" + key
}
