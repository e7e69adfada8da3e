// Package paced is a slow fake inference backend for benchmarks and fault
// tests: it wraps a real backend and holds every image operation for the
// time a GPU of a given speed would take before calling it, so that
// scheduling and fault drills see realistic job lengths on a machine
// without a GPU. gpusvc selects it by configuration only
// (GPU_BASE_SECONDS > 0 wraps every backend); production runs without it.
//
// This package must never be selected implicitly, and never pace audio or
// video operations (they run at the wrapped backend's own speed).
package paced

import (
	"context"
	"image"
	"time"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/clock"
	"github.com/nounsai/sdserver/shared/config"
)

// Options configure the pacing: an image operation waits Units(op, req) ×
// BaseSeconds × Slowdown / Speed seconds before the wrapped backend runs.
type Options struct {
	// BaseSeconds is the simulated time of one work unit (a 512×512,
	// 25-step, 1-sample Text to Image); 0 adds nothing.
	BaseSeconds float64
	// Speed is the simulated GPU's relative speed (0 means 1): 0.5 makes
	// every job take twice as long.
	Speed float64
	// Slowdown multiplies the simulated time (0 means 1).
	Slowdown float64
	// ImageUnits returns the work units of an image request; RouteUnits
	// those of the other model routes (Upscale, Interrogate, ExtendPrompt,
	// Segment). Both are required (gpusvc passes its work-unit table).
	ImageUnits func(op inference.Op, req inference.ImageRequest) float64
	RouteUnits func(op inference.Op) float64
}

// Backend is a backend whose image operations are paced. It keeps the
// wrapped backend's name, so models and metrics see the same backend. It
// is safe for concurrent use when the wrapped backend is.
type Backend struct {
	inference.Backend
	opts Options
}

// New wraps b.
func New(b inference.Backend, opts Options) *Backend {
	opts.Speed = config.OrDefault(opts.Speed, 1)
	opts.Slowdown = config.OrDefault(opts.Slowdown, 1)
	return &Backend{Backend: b, opts: opts}
}

// Delay returns the simulated time of units work units.
func (b *Backend) Delay(units float64) time.Duration {
	if b.opts.BaseSeconds <= 0 || units <= 0 {
		return 0
	}
	return time.Duration(units * b.opts.BaseSeconds * b.opts.Slowdown / b.opts.Speed * float64(time.Second))
}

// wait sleeps the simulated time of units, or until ctx ends.
func (b *Backend) wait(ctx context.Context, units float64) error {
	return clock.Sleep(ctx, b.Delay(units))
}

// Generate paces, then generates.
func (b *Backend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	if err := b.wait(ctx, b.opts.ImageUnits(req.Op, req)); err != nil {
		return inference.ImageResult{}, err
	}
	return b.Backend.Generate(ctx, req)
}

// Upscale paces, then upscales.
func (b *Backend) Upscale(ctx context.Context, req inference.UpscaleRequest) (image.Image, error) {
	if err := b.wait(ctx, b.opts.RouteUnits(inference.OpUpscale)); err != nil {
		return nil, err
	}
	return b.Backend.Upscale(ctx, req)
}

// Interrogate paces, then interrogates.
func (b *Backend) Interrogate(ctx context.Context, model string, img image.Image) (string, error) {
	if err := b.wait(ctx, b.opts.RouteUnits(inference.OpInterrogate)); err != nil {
		return "", err
	}
	return b.Backend.Interrogate(ctx, model, img)
}

// ExtendPrompt paces, then extends.
func (b *Backend) ExtendPrompt(ctx context.Context, prompt string) (string, error) {
	if err := b.wait(ctx, b.opts.RouteUnits(inference.OpExtendPrompt)); err != nil {
		return "", err
	}
	return b.Backend.ExtendPrompt(ctx, prompt)
}

// Segment paces, then segments.
func (b *Backend) Segment(ctx context.Context, req inference.SegmentRequest) ([]bool, error) {
	if err := b.wait(ctx, b.opts.RouteUnits(inference.OpSegment)); err != nil {
		return nil, err
	}
	return b.Backend.Segment(ctx, req)
}
