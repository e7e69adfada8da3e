// Package replicate is an inference.Backend for the Replicate predictions
// API (https://api.replicate.com/v1), spoken to with net/http.
//
// Each operation creates a prediction (POST /predictions with a version and
// the model's input, asking the server to wait with "Prefer: wait"), polls
// it until it reaches a terminal status, downloads its outputs (URLs or data:
// URIs) and decodes them. When the caller's ctx ends first, the prediction is
// cancelled on Replicate (so it stops costing money) and ctx's error is
// returned. 429 answers are retried after Retry-After; 5xx answers only for
// GETs; a create is never re-sent once it may have reached the server.
//
// Offered: txt2img and img2img on the legacy SDXL model, MusicGen
// (text_to_audio, audio_melody, audio_extend) and Demucs (audio_split).
//
// This package must never log the API token, prompts or media bytes.
package replicate

import (
	"context"
	"fmt"
	"image"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/config"
)

// Name is the backend's short name, as returned by Backend.Name.
const Name = "replicate"

// LegacySDXLModel is the SDXL fine-tune the legacy system ran on Replicate.
const LegacySDXLModel = "alx-ai/sdxl-noggles-nowrong:9a487e8991d1d9a2ea46a3e4933cafff201f5512b037cc046ff1cce878b143ef"

// Defaults applied by New to zero Config fields.
const (
	DefaultBaseURL       = "https://api.replicate.com/v1"
	DefaultPollInterval  = time.Second
	DefaultMaxRetries    = 3
	DefaultRetryBackoff  = 500 * time.Millisecond
	DefaultMaxRetryAfter = time.Minute
	DefaultCancelTimeout = 10 * time.Second
	DefaultMaxOutput     = 64 << 20
	DefaultGuidance      = 7.5

	// DefaultMusicGenModel and DefaultDemucsModel are PLACEHOLDERS (written
	// from memory, not verified against Replicate): ops must set
	// Config.MusicGenModel and Config.DemucsModel to the versions they have
	// tested.
	DefaultMusicGenModel = "meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
	DefaultDemucsModel   = "cjwbw/demucs:25a173108cff36ef9f80f854c162d01df9e6528be175794b81158fa03836d953"
	// DefaultMusicGenVersion is MusicGen's model_version input.
	DefaultMusicGenVersion = "stereo-melody-large"
)

// Config configures a Backend. Zero values take the defaults above; Token
// is required by the real API.
type Config struct {
	// BaseURL is the API root. Empty means DefaultBaseURL.
	BaseURL string
	// Token is the API token, sent as "Authorization: Bearer <token>" to the
	// API host only (never to output download hosts).
	Token string
	// HTTPClient sends the requests. Nil means a client of its own with no
	// client-wide timeout (ctx bounds each call).
	HTTPClient *http.Client
	// PollInterval is the wait between polls of a running prediction. Zero
	// means DefaultPollInterval.
	PollInterval time.Duration
	// Wait is sent as "Prefer: wait=<seconds>" on create. Zero sends
	// "Prefer: wait" (the server's default, 60 s); negative sends no Prefer
	// header (pure polling). While a create waits, a cancelled ctx cannot
	// cancel the prediction (its ID is not known yet); a ctx deadline is
	// passed along as Cancel-After so Replicate stops it anyway.
	Wait time.Duration
	// Log receives retry warnings and cancel failures. Nil means no logging.
	Log *zap.Logger
	// Versions maps a model given without ":version" ("owner/name") to its
	// version ID. A model given as "owner/name:version" needs no entry.
	Versions map[string]string
	// MusicGenModel is the MusicGen model ("owner/name:version") used for
	// audio requests whose Model is not a model reference. Empty means
	// DefaultMusicGenModel (a placeholder).
	MusicGenModel string
	// MusicGenVersion is MusicGen's model_version input when the request
	// does not name one. Empty means DefaultMusicGenVersion.
	MusicGenVersion string
	// DemucsModel is the Demucs model ("owner/name:version") for
	// audio_split. Empty means DefaultDemucsModel (a placeholder).
	DemucsModel string
	// MaxRetries bounds retries of 429s, GET 5xx and dial failures per call.
	// Zero means DefaultMaxRetries; negative means none.
	MaxRetries int
	// RetryBackoff is the wait before the first retry when the server sends
	// no Retry-After; it doubles each time. Zero means DefaultRetryBackoff.
	RetryBackoff time.Duration
	// MaxRetryAfter caps an honoured Retry-After. Zero means
	// DefaultMaxRetryAfter.
	MaxRetryAfter time.Duration
	// CancelTimeout bounds the cancel call made after ctx ended. Zero means
	// DefaultCancelTimeout.
	CancelTimeout time.Duration
	// MaxOutputBytes caps each API response and downloaded output. Zero
	// means DefaultMaxOutput.
	MaxOutputBytes int64
}

// Backend talks to the Replicate API. It is safe for concurrent use.
type Backend struct {
	cfg    Config
	base   *url.URL
	client *http.Client
	log    *zap.Logger
}

// New returns a Backend, filling in defaults. An unparsable BaseURL makes
// every call fail.
func New(cfg Config) *Backend {
	if cfg.BaseURL == "" {
		cfg.BaseURL = DefaultBaseURL
	}
	cfg.BaseURL = strings.TrimRight(cfg.BaseURL, "/")
	base, err := url.Parse(cfg.BaseURL)
	if err != nil {
		base = &url.URL{}
	}
	cfg.PollInterval = config.OrDefault(cfg.PollInterval, DefaultPollInterval)
	if cfg.MusicGenModel == "" {
		cfg.MusicGenModel = DefaultMusicGenModel
	}
	if cfg.MusicGenVersion == "" {
		cfg.MusicGenVersion = DefaultMusicGenVersion
	}
	if cfg.DemucsModel == "" {
		cfg.DemucsModel = DefaultDemucsModel
	}
	if cfg.MaxRetries == 0 {
		cfg.MaxRetries = DefaultMaxRetries
	}
	if cfg.MaxRetries < 0 {
		cfg.MaxRetries = 0
	}
	cfg.RetryBackoff = config.OrDefault(cfg.RetryBackoff, DefaultRetryBackoff)
	cfg.MaxRetryAfter = config.OrDefault(cfg.MaxRetryAfter, DefaultMaxRetryAfter)
	cfg.CancelTimeout = config.OrDefault(cfg.CancelTimeout, DefaultCancelTimeout)
	cfg.MaxOutputBytes = config.OrDefault(cfg.MaxOutputBytes, DefaultMaxOutput)
	client := cfg.HTTPClient
	if client == nil {
		client = &http.Client{}
	}
	log := cfg.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Backend{cfg: cfg, base: base, client: client, log: log.Named("replicate")}
}

var _ inference.Backend = (*Backend)(nil)

// Name returns "replicate".
func (b *Backend) Name() string { return Name }

// Supports reports whether the backend offers op.
func (b *Backend) Supports(op inference.Op) bool {
	switch op {
	case inference.OpTxt2Img, inference.OpImg2Img, inference.OpTextToAudio, inference.OpAudioMelody,
		inference.OpAudioExtend, inference.OpAudioSplit:
		return true
	}
	return false
}

// Upscale is not offered.
func (b *Backend) Upscale(context.Context, inference.UpscaleRequest) (image.Image, error) {
	return nil, inference.Unsupported(Name, inference.OpUpscale)
}

// Interrogate is not offered.
func (b *Backend) Interrogate(context.Context, string, image.Image) (string, error) {
	return "", inference.Unsupported(Name, inference.OpInterrogate)
}

// ExtendPrompt is not offered.
func (b *Backend) ExtendPrompt(context.Context, string) (string, error) {
	return "", inference.Unsupported(Name, inference.OpExtendPrompt)
}

// Segment is not offered.
func (b *Backend) Segment(context.Context, inference.SegmentRequest) ([]bool, error) {
	return nil, inference.Unsupported(Name, inference.OpSegment)
}

// Interpolate is not offered.
func (b *Backend) Interpolate(context.Context, inference.InterpolateRequest) ([]image.Image, error) {
	return nil, inference.Unsupported(Name, inference.OpInterpolate)
}

var versionID = regexp.MustCompile(`^[0-9a-f]{64}$`)

// resolveVersion returns the version ID for model: the part after ':' in
// "owner/name:version", Config.Versions[model], or model itself when it is
// a bare version ID.
func (b *Backend) resolveVersion(model string) (string, error) {
	if i := strings.LastIndexByte(model, ':'); i >= 0 && i < len(model)-1 {
		return model[i+1:], nil
	}
	if v := b.cfg.Versions[model]; v != "" {
		return v, nil
	}
	if versionID.MatchString(model) {
		return model, nil
	}
	return "", fmt.Errorf("replicate: no version known for model %q", model)
}
