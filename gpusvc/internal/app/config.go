package app

import (
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/nounsai/sdserver/gpusvc/internal/generate"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/a1111"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/nouns"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/paced"
	"github.com/nounsai/sdserver/gpusvc/internal/inference/replicate"
	"github.com/nounsai/sdserver/gpusvc/internal/worker"
	"github.com/nounsai/sdserver/shared/config"
	"github.com/nounsai/sdserver/shared/credits"
	"github.com/nounsai/sdserver/shared/email"
	"github.com/nounsai/sdserver/shared/storage"
)

// Config is gpusvc's configuration. Each field names its environment
// variable (and legacy config.json key) in LoadConfig.
type Config struct {
	config.Common
	// Storage is the media storage (STORAGE_BACKEND, ...).
	Storage storage.Config
	// Credits is the ledger's pricing (PRICE_*).
	Credits credits.Config
	// Inference selects and configures the backends.
	Inference InferenceConfig
	// GPU is this host's capacity and simulated speed.
	GPU GPUConfig
	// Limits bound the generation requests (MAX_SAMPLES, MAX_STEPS,
	// MIN_SIDE, MAX_SIDE, MAX_PROMPT_CHARS, MAX_INPUT_BYTES,
	// MAX_INPUT_SIDE).
	Limits generate.Limits
	// PublicURL is the address the proxies reach this host at
	// (PUBLIC_URL), e.g. http://10.0.0.7:8091.
	PublicURL string
	// RegisterHost makes gpusvc add PublicURL to api_hosts on start and
	// mark it draining on shutdown (REGISTER_HOST, default false).
	RegisterHost bool
	// Worker configures the durable-job workers (WORKER_CONCURRENCY,
	// JOB_*, AUDIO_DURATION, VIDEO_*).
	Worker worker.Config
	// Email sends the video project emails (EMAIL_BACKEND, ...).
	Email email.Config
	// Charging configures the holds on synchronous charges.
	Charging ChargingConfig
}

// ChargingConfig bounds the credit holds of synchronous requests (see
// shared/credits, "Holds"): a request's charge is refunded by the sweeper
// when it is neither settled nor released within HoldFor().
type ChargingConfig struct {
	// HoldMargin is added to GPU_QUEUE_WAIT + GENERATION_TIMEOUT to make
	// a hold's deadline, covering storage and slack (CHARGE_HOLD_MARGIN,
	// default 60s).
	HoldMargin time.Duration
	// SweepInterval is how often this host refunds holds past their
	// deadline, left by any host that died (CHARGE_SWEEP_INTERVAL,
	// default 15s).
	SweepInterval time.Duration
}

// HoldFor is the deadline of a synchronous request's charge hold: the
// longest the request may wait for a slot and run, plus the margin.
func (c Config) HoldFor() time.Duration {
	return c.GPU.QueueWait + c.GPU.JobTimeout + c.Charging.HoldMargin
}

// InferenceConfig selects the backends.
type InferenceConfig struct {
	// Default is the backend of models rows without one and of unknown
	// model ids (INFERENCE_BACKEND: nouns, a1111 or replicate; default
	// nouns, the built-in CPU backend).
	Default string
	// DefaultModel is the model name passed to the default backend when a
	// row names none (INFERENCE_DEFAULT_MODEL; default "" except for
	// replicate, where it is the legacy SDXL model).
	DefaultModel string
	// A1111URL is the AUTOMATIC1111-compatible server (A1111_URL, legacy
	// a1111_url); empty means no a1111 backend.
	A1111URL string
	// A1111Timeout bounds one call to it (A1111_TIMEOUT, default 10m).
	A1111Timeout time.Duration
	// ReplicateToken is the Replicate API token (REPLICATE_API_TOKEN,
	// legacy replicate_api_key); empty means no replicate backend unless
	// ReplicateURL is set (fakes).
	ReplicateToken string
	// ReplicateURL is the API root (REPLICATE_URL, default the real API).
	ReplicateURL string
	// FFmpegPath is ffmpeg for the nouns audio operations (FFMPEG_PATH).
	FFmpegPath string
}

// GPUConfig is this host's capacity.
type GPUConfig struct {
	// Slots is the number of concurrent jobs, one per GPU (GPU_SLOTS,
	// default 1).
	Slots int
	// Queue is how many jobs may wait for a slot (GPU_QUEUE, default 4);
	// beyond that requests get 503 with Retry-After.
	Queue int
	// QueueWait bounds the wait for a slot (GPU_QUEUE_WAIT, default 60s).
	QueueWait time.Duration
	// JobTimeout bounds one job's inference (GENERATION_TIMEOUT, default
	// 230s, so that with GPU_QUEUE_WAIT a request ends before the proxy's
	// 300 s GPU_TIMEOUT); beyond it the request gets 504 and a refund.
	JobTimeout time.Duration
	// Pacing selects the paced fake backend for benchmarks and fault
	// drills: with GPU_BASE_SECONDS > 0 every backend is wrapped so that
	// each image job holds its slot for work units × GPU_BASE_SECONDS ×
	// GPU_SLOWDOWN / GPU_SPEED seconds before the backend runs
	// (GPU_BASE_SECONDS default 0 = off, no wrapper; GPU_SPEED and
	// GPU_SLOWDOWN default 1). A work unit is one 512×512, 25-step Text
	// to Image sample, the proxy's scale.
	Pacing paced.Options
}

// LoadConfig reads the configuration from l and validates it.
func LoadConfig(l *config.Loader) (Config, error) {
	common := config.LoadCommon(l, "127.0.0.1:8091")
	def := generate.DefaultLimits
	cfg := Config{
		Common:  common,
		Storage: storage.LoadConfig(l),
		Credits: credits.LoadConfig(l, common.Environment),
		Inference: InferenceConfig{
			Default:        l.String("INFERENCE_BACKEND", "inference_backend", nouns.Name),
			A1111URL:       l.String("A1111_URL", "a1111_url", ""),
			A1111Timeout:   l.Duration("A1111_TIMEOUT", "", a1111.DefaultTimeout),
			ReplicateToken: l.Credential("REPLICATE_API_TOKEN", "replicate_api_key", ""),
			ReplicateURL:   l.String("REPLICATE_URL", "", ""),
			FFmpegPath:     l.String("FFMPEG_PATH", "", ""),
		},
		GPU: GPUConfig{
			Slots:      l.Int("GPU_SLOTS", "", 1),
			Queue:      l.Int("GPU_QUEUE", "", 4),
			QueueWait:  l.Duration("GPU_QUEUE_WAIT", "", 60*time.Second),
			JobTimeout: l.Duration("GENERATION_TIMEOUT", "", 230*time.Second),
			Pacing: paced.Options{
				BaseSeconds: l.Float("GPU_BASE_SECONDS", "", 0),
				Speed:       l.Float("GPU_SPEED", "", 1),
				Slowdown:    l.Float("GPU_SLOWDOWN", "", 1),
			},
		},
		Limits: generate.Limits{
			MaxSamples:       l.Int("MAX_SAMPLES", "", def.MaxSamples),
			MaxSteps:         l.Int("MAX_STEPS", "", def.MaxSteps),
			MinSide:          l.Int("MIN_SIDE", "", def.MinSide),
			MaxSide:          l.Int("MAX_SIDE", "", def.MaxSide),
			MaxPromptChars:   l.Int("MAX_PROMPT_CHARS", "", def.MaxPromptChars),
			MaxInputBytes:    l.Int("MAX_INPUT_BYTES", "", def.MaxInputBytes),
			MaxInputSide:     l.Int("MAX_INPUT_SIDE", "", def.MaxInputSide),
			UpscaleInputSide: def.UpscaleInputSide,
			MaxPoints:        def.MaxPoints,
		},
		PublicURL:    l.String("PUBLIC_URL", "public_url", ""),
		RegisterHost: l.Bool("REGISTER_HOST", "", false),
		Worker:       worker.LoadConfig(l),
		Email:        email.LoadConfig(l),
		Charging: ChargingConfig{
			HoldMargin:    l.Duration("CHARGE_HOLD_MARGIN", "", time.Minute),
			SweepInterval: l.Duration("CHARGE_SWEEP_INTERVAL", "", 15*time.Second),
		},
	}
	defModel := ""
	if cfg.Inference.Default == replicate.Name {
		defModel = replicate.LegacySDXLModel
	}
	cfg.Inference.DefaultModel = l.String("INFERENCE_DEFAULT_MODEL", "", defModel)
	if err := l.Check(cfg.Validate()); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Validate reports every bad setting, naming its variable.
func (c Config) Validate() error {
	errs := []error{c.Common.Validate(), c.Storage.Validate(), c.Credits.Validate(), c.Limits.Validate(),
		c.Worker.Validate(), c.Email.Validate()}
	bad := func(name, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
	}
	switch c.Inference.Default {
	case nouns.Name:
	case a1111.Name:
		if c.Inference.A1111URL == "" {
			bad("A1111_URL", "is required when INFERENCE_BACKEND=a1111")
		}
	case replicate.Name:
		if c.Inference.ReplicateToken == "" && c.Inference.ReplicateURL == "" {
			bad("REPLICATE_API_TOKEN", "is required when INFERENCE_BACKEND=replicate")
		}
	default:
		bad("INFERENCE_BACKEND", "must be nouns, a1111 or replicate, got %q", c.Inference.Default)
	}
	for name, v := range map[string]string{"A1111_URL": c.Inference.A1111URL, "REPLICATE_URL": c.Inference.ReplicateURL, "PUBLIC_URL": c.PublicURL} {
		if v == "" {
			continue
		}
		if u, err := url.Parse(v); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad(name, "must be an http(s) URL")
		}
	}
	if c.GPU.Slots < 1 || c.GPU.Slots > 64 {
		bad("GPU_SLOTS", "must be between 1 and 64")
	}
	if c.GPU.Queue < 0 || c.GPU.Queue > 10000 {
		bad("GPU_QUEUE", "must be between 0 and 10000")
	}
	if c.GPU.QueueWait < 0 {
		bad("GPU_QUEUE_WAIT", "must not be negative")
	}
	if c.GPU.JobTimeout <= 0 {
		bad("GENERATION_TIMEOUT", "must be positive")
	}
	if c.GPU.Pacing.BaseSeconds < 0 || c.GPU.Pacing.BaseSeconds > 600 {
		bad("GPU_BASE_SECONDS", "must be between 0 and 600")
	}
	if c.GPU.Pacing.Speed <= 0 || c.GPU.Pacing.Speed > 1000 {
		bad("GPU_SPEED", "must be above 0 and at most 1000")
	}
	if c.GPU.Pacing.Slowdown <= 0 || c.GPU.Pacing.Slowdown > 1000 {
		bad("GPU_SLOWDOWN", "must be above 0 and at most 1000")
	}
	if c.Charging.HoldMargin < 0 {
		bad("CHARGE_HOLD_MARGIN", "must not be negative")
	}
	if c.Charging.SweepInterval < 10*time.Millisecond || c.Charging.SweepInterval > time.Hour {
		bad("CHARGE_SWEEP_INTERVAL", "must be between 10ms and 1h")
	}
	if c.RegisterHost && c.PublicURL == "" {
		bad("PUBLIC_URL", "is required when REGISTER_HOST=true")
	}
	return errors.Join(errs...)
}
