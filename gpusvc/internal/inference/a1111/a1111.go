// Package a1111 is an inference.Backend for AUTOMATIC1111-compatible
// servers (A1111, Forge, SD.Next, the stable-diffusion.cpp server), spoken
// to over their /sdapi/v1 JSON API with net/http.
//
// Such a server runs one job at a time, so a Backend sends at most one
// request to its server at a time (a per-Backend semaphore acquired with the
// caller's ctx); callers that want parallelism run several servers. Requests
// are retried only when the connection could not be established (a dial
// failure), never once a request may have reached the server.
//
// This package must never decide which server or model serves a request
// (that is the caller's job) and never logs prompts or image bytes.
package a1111

import (
	"context"
	"fmt"
	"image"
	"net/http"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/config"
)

// Name is the backend's short name, as returned by Backend.Name.
const Name = "a1111"

// Defaults applied by New to zero Config fields.
const (
	DefaultTimeout          = 10 * time.Minute
	DefaultUpscaler         = "R-ESRGAN 4x+"
	DefaultInterrogator     = "clip"
	DefaultGuidance         = 7.5
	DefaultControlNetWeight = 1.0
	DefaultImageCFGScale    = 1.5
	DefaultDialRetries      = 2
	DefaultRetryBackoff     = 200 * time.Millisecond
	DefaultMaxResponseBytes = 256 << 20
)

// Config configures a Backend. Only BaseURL is required; zero values take the
// defaults above.
type Config struct {
	// BaseURL is the server's root, for example "http://gpu1:7860" (no
	// trailing /sdapi/v1).
	BaseURL string
	// Timeout bounds one HTTP exchange with the server once this Backend's
	// turn has come; the wait for the turn is bounded by the caller's ctx
	// only. Zero means DefaultTimeout; negative means no timeout of its own.
	Timeout time.Duration
	// HTTPClient sends the requests. Nil means a client of its own with no
	// client-wide timeout (Timeout and ctx bound each call).
	HTTPClient *http.Client
	// Log receives retry warnings and per-request debug lines. Nil means no
	// logging.
	Log *zap.Logger

	// Sampler is sent as sampler_name; empty lets the server choose.
	Sampler string
	// Upscaler is upscaler_1 for Upscale when the request names no model.
	// Empty means DefaultUpscaler.
	Upscaler string
	// Interrogator is the interrogate model ("clip" or "deepdanbooru") used
	// when Interrogate is given no model. Empty means DefaultInterrogator.
	Interrogator string
	// ControlNetModels names the ControlNet model per kind, keyed by
	// inference.OpControlNetOutlines/Depth/Segment. A missing kind makes
	// that operation unsupported.
	ControlNetModels map[inference.Op]string
	// ControlNetWeight is the unit weight; zero means DefaultControlNetWeight.
	ControlNetWeight float64
	// ImageCFGScale is image_cfg_scale for pix2pix; zero means
	// DefaultImageCFGScale.
	ImageCFGScale float64
	// SAMModel is sam_model_name for Segment; empty lets the
	// segment-anything extension use its default.
	SAMModel string

	// DialRetries is how many times a request whose connection could not be
	// established is tried again. Zero means DefaultDialRetries; negative
	// means never.
	DialRetries int
	// RetryBackoff is the wait before the first retry; it doubles each time.
	// Zero means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// MaxResponseBytes caps the response body read from the server. Zero
	// means DefaultMaxResponseBytes.
	MaxResponseBytes int64
}

// Backend talks to one AUTOMATIC1111-compatible server. It is safe for
// concurrent use; calls are serialised so that the server sees one request at
// a time.
type Backend struct {
	cfg    Config
	base   string
	client *http.Client
	log    *zap.Logger
	sem    chan struct{}
}

// New returns a Backend for the server at cfg.BaseURL, filling in defaults.
func New(cfg Config) *Backend {
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Upscaler == "" {
		cfg.Upscaler = DefaultUpscaler
	}
	if cfg.Interrogator == "" {
		cfg.Interrogator = DefaultInterrogator
	}
	if cfg.ControlNetWeight == 0 {
		cfg.ControlNetWeight = DefaultControlNetWeight
	}
	if cfg.ImageCFGScale == 0 {
		cfg.ImageCFGScale = DefaultImageCFGScale
	}
	if cfg.DialRetries == 0 {
		cfg.DialRetries = DefaultDialRetries
	}
	if cfg.DialRetries < 0 {
		cfg.DialRetries = 0
	}
	cfg.RetryBackoff = config.OrDefault(cfg.RetryBackoff, DefaultRetryBackoff)
	cfg.MaxResponseBytes = config.OrDefault(cfg.MaxResponseBytes, DefaultMaxResponseBytes)
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Backend{
		cfg:    cfg,
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		client: client,
		log:    log.Named("a1111"),
		sem:    make(chan struct{}, 1),
	}
}

var _ inference.Backend = (*Backend)(nil)

// Name returns "a1111".
func (b *Backend) Name() string { return Name }

// Supports reports whether the backend offers op. ControlNet kinds are
// supported only when Config.ControlNetModels names a model for them.
func (b *Backend) Supports(op inference.Op) bool {
	switch op {
	case inference.OpTxt2Img, inference.OpImg2Img, inference.OpInpaint, inference.OpPix2Pix,
		inference.OpUpscale, inference.OpInterrogate, inference.OpSegment:
		return true
	case inference.OpControlNetOutlines, inference.OpControlNetDepth, inference.OpControlNetSegment:
		return b.cfg.ControlNetModels[op] != ""
	}
	return false
}

// ExtendPrompt is not offered by A1111 servers.
func (b *Backend) ExtendPrompt(context.Context, string) (string, error) {
	return "", inference.Unsupported(Name, inference.OpExtendPrompt)
}

// Audio is not offered by A1111 servers.
func (b *Backend) Audio(_ context.Context, req inference.AudioRequest) (inference.AudioResult, error) {
	op := req.Op
	if op == "" {
		op = inference.OpTextToAudio
	}
	return inference.AudioResult{}, inference.Unsupported(Name, op)
}

// Interpolate is not offered by this adapter.
func (b *Backend) Interpolate(context.Context, inference.InterpolateRequest) ([]image.Image, error) {
	return nil, inference.Unsupported(Name, inference.OpInterpolate)
}

// upstream builds the error for a server that answered but not usefully.
func upstream(status int, format string, args ...any) error {
	return &inference.UpstreamError{Backend: Name, Status: status, Message: fmt.Sprintf(format, args...)}
}
