package generate

import (
	"fmt"
	"math"
	"strings"
	"unicode/utf8"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// ModeOp returns the operation of a legacy inference_mode (gpuroute's
// modes, docs/legacy-contract.md §11) and its canonical spelling, or a 400
// naming the valid modes.
func ModeOp(mode string) (inference.Op, gpuroute.Mode, error) {
	if m, ok := gpuroute.ParseMode(mode); ok {
		for op, w := range opWork {
			if w.mode == m {
				return op, m, nil
			}
		}
	}
	var names []string
	for _, m := range gpuroute.Modes() {
		names = append(names, string(m))
	}
	return "", "", apperr.Invalid(fmt.Sprintf("inference_mode must be one of: %s", strings.Join(names, ", "))).
		WithField("field", "inference_mode")
}

// Limits bound a generation request (legacy defect S13). The zero value is
// not usable; start from DefaultLimits.
type Limits struct {
	// MaxSamples bounds samples (images per request); at least 1.
	MaxSamples int
	// MaxSteps bounds steps; at least 1.
	MaxSteps int
	// MinSide and MaxSide bound each side of a generated image in pixels.
	MinSide, MaxSide int
	// MaxPromptChars bounds prompt and negative_prompt, in characters.
	MaxPromptChars int
	// MaxInputBytes bounds a decoded input image (base_64), in bytes.
	MaxInputBytes int
	// MaxInputSide bounds each side of an input image, checked from its
	// header before any pixel is decoded.
	MaxInputSide int
	// UpscaleInputSide is the longest side an /upscale input is shrunk to
	// (legacy 384); the output is 4× that at most.
	UpscaleInputSide int
	// MaxPoints bounds the coordinates of /mask.
	MaxPoints int
	// MaxDecodedBytes bounds the memory one decoded input image takes
	// (width × height × bytes per pixel, from its header); zero means no
	// bound beyond MaxInputSide.
	MaxDecodedBytes int64
}

// DefaultLimits are the limits of the issue: samples 1–4, steps 1–50, sides
// 64–1024 px, prompts ≤ 1000 characters, inputs ≤ 5 MB, ≤ 4096×4096 and
// ≤ 64 MiB decoded (an 8-bit RGBA 4096×4096; a 16-bit one is refused).
var DefaultLimits = Limits{
	MaxSamples:       4,
	MaxSteps:         50,
	MinSide:          64,
	MaxSide:          1024,
	MaxPromptChars:   1000,
	MaxInputBytes:    5 << 20,
	MaxInputSide:     4096,
	UpscaleInputSide: 384,
	MaxPoints:        64,
	MaxDecodedBytes:  64 << 20,
}

// Validate reports a limit that cannot work, naming its variable.
func (l Limits) Validate() error {
	switch {
	case l.MaxSamples < 1:
		return fmt.Errorf("MAX_SAMPLES: must be at least 1")
	case l.MaxSteps < 1:
		return fmt.Errorf("MAX_STEPS: must be at least 1")
	case l.MinSide < 8 || l.MaxSide < l.MinSide || l.MaxSide > 4096:
		return fmt.Errorf("MIN_SIDE/MAX_SIDE: need 8 <= MIN_SIDE <= MAX_SIDE <= 4096")
	case l.MaxPromptChars < 1:
		return fmt.Errorf("MAX_PROMPT_CHARS: must be at least 1")
	case l.MaxInputBytes < 1024:
		return fmt.Errorf("MAX_INPUT_BYTES: must be at least 1024")
	case l.MaxInputSide < l.MinSide:
		return fmt.Errorf("MAX_INPUT_SIDE: must be at least MIN_SIDE")
	}
	return nil
}

// ImageJob is one validated-to-type POST /images request. The HTTP layer
// fills it from the legacy body; Service.GenerateImages checks the ranges.
type ImageJob struct {
	// UserID is the caller (the anonymous account when Anonymous).
	UserID    int64
	Anonymous bool
	// Key identifies the request for idempotent charging (the request ID).
	Key string

	// Mode is the canonical legacy inference_mode and Op its operation.
	Mode gpuroute.Mode
	Op   inference.Op
	// ModelID is the requested model_id ("" for the default).
	ModelID        string
	Prompt         string
	NegativePrompt string
	Samples        int
	Steps          int
	Seed           int64
	// AspectRatio is the legacy "W:H" string (Text to Image only) and
	// Width/Height its parsed sides.
	AspectRatio   string
	Width, Height int
	// Strength is the mode's strength (denoise 0–1 or edge thickness
	// −5..5); HasStrength reports whether the request sent one.
	Strength    float64
	HasStrength bool
	// Input is the decoded base_64 image (every mode but Text to Image).
	Input []byte
	// Mask is the decoded bit-packed mask (Mask mode).
	Mask []byte
	// ParentID is the request's parent_id, nil when absent, null or -1.
	ParentID *int64
}

// checkPrompt validates a prompt's length in characters.
func checkPrompt(field, s string, max int) error {
	if !utf8.ValidString(s) {
		return invalidField(field, field+" must be valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > max {
		return invalidField(field, fmt.Sprintf("%s must be at most %d characters", field, max))
	}
	return nil
}

// invalidField is a 400 naming the offending field.
func invalidField(field, msg string) error {
	return apperr.Invalid(msg).WithField("field", field)
}

// Validate checks j against l and fills in per-mode fixed values. The
// pipeline calls it; the async route calls it too, to refuse a bad request
// before queueing it.
func (j *ImageJob) Validate(l Limits) error {
	if err := checkPrompt("prompt", j.Prompt, l.MaxPromptChars); err != nil {
		return err
	}
	if err := checkPrompt("negative_prompt", j.NegativePrompt, l.MaxPromptChars); err != nil {
		return err
	}
	switch j.Op {
	case inference.OpControlNetOutlines, inference.OpControlNetDepth, inference.OpControlNetSegment:
		j.Samples = 1 // legacy: always one image, samples not read
	case inference.OpInpaint:
		// Legacy: one image, 25 steps, model_id not read (the default
		// model serves every Mask request).
		j.Samples, j.Steps, j.ModelID = 1, 25, ""
	}
	if j.Samples < 1 || j.Samples > l.MaxSamples {
		return invalidField("samples", fmt.Sprintf("samples must be between 1 and %d", l.MaxSamples))
	}
	if j.Steps < 1 || j.Steps > l.MaxSteps {
		return invalidField("steps", fmt.Sprintf("steps must be between 1 and %d", l.MaxSteps))
	}
	if j.Op == inference.OpTxt2Img {
		for _, side := range []struct {
			name string
			v    int
		}{{"width", j.Width}, {"height", j.Height}} {
			if side.v < l.MinSide || side.v > l.MaxSide {
				return invalidField("aspect_ratio", fmt.Sprintf("aspect_ratio %s must be between %d and %d pixels", side.name, l.MinSide, l.MaxSide))
			}
		}
	} else if len(j.Input) == 0 {
		return invalidField("base_64", fmt.Sprintf("base_64 is required for %s", j.Mode))
	}
	if len(j.Input) > l.MaxInputBytes {
		return apperr.TooLarge(fmt.Sprintf("base_64 must decode to at most %d bytes", l.MaxInputBytes)).WithField("field", "base_64")
	}
	switch j.Op {
	case inference.OpImg2Img:
		if !j.HasStrength {
			j.Strength = 0.5 // the legacy inference() default
		}
		if !(j.Strength >= 0 && j.Strength <= 1) {
			return invalidField("strength", "strength must be between 0 and 1 for Image to Image")
		}
	case inference.OpControlNetOutlines:
		// Legacy int(): a fractional strength is truncated.
		j.Strength = math.Trunc(j.Strength)
		if !(j.Strength >= -5 && j.Strength <= 5) {
			return invalidField("strength", "strength must be between -5 and 5 for ControlNet Outlines")
		}
	case inference.OpControlNetDepth, inference.OpControlNetSegment:
		j.Strength = 0 // read but unused by the legacy pipelines
	case inference.OpInpaint:
		if len(j.Mask) == 0 {
			return invalidField("mask", "mask is required for Mask")
		}
	}
	return nil
}
