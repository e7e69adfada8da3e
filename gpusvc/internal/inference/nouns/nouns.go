// Package nouns is the built-in inference backend named "nouns": it runs on
// any CPU, is deterministic, and makes real images from the Nouns artwork
// (package nounsart) plus small, honest image and audio algorithms for the
// other operations. See Backend.Supports for what it offers.
//
// It must never call a remote service; the only external program it runs is
// ffmpeg, for MP3 encoding and decoding.
package nouns

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"os/exec"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/nounsart"
	"github.com/nounsai/sdserver/shared/apperr"
)

// Name is the backend's name.
const Name = "nouns"

// Limits on inputs.
const (
	// MaxSide is the largest width or height of any input or output image.
	MaxSide = 4096
	// MaxSamples is the most images one request may ask for.
	MaxSamples = 16
	// MaxPromptLen is the longest prompt accepted, in bytes.
	MaxPromptLen = 4000
	// DefaultSize is the txt2img side when Width/Height are 0.
	DefaultSize = 512
	// MaxTotalPixels bounds samples × width × height of one request's
	// distinct output images (64 Mpx ≈ 256 MB of RGBA).
	MaxTotalPixels = 64 << 20
)

// Options configures a Backend. The zero value is usable.
type Options struct {
	// FFmpegPath is the ffmpeg binary for audio; "" looks up "ffmpeg" on
	// PATH. When it cannot be found the audio operations are unsupported.
	FFmpegPath string
}

// Backend is the nouns backend. It is immutable after New and safe for
// concurrent use.
type Backend struct {
	art    *nounsart.Art
	colors []color.RGBA // every colour a Noun can contain
	ffmpeg string       // "" when audio is unavailable
}

// New parses the embedded artwork (once per Backend) and looks up ffmpeg.
func New(opts Options) (*Backend, error) {
	art, err := nounsart.Load()
	if err != nil {
		return nil, fmt.Errorf("load nouns art: %w", err)
	}
	b := &Backend{art: art, colors: art.Colors()}
	path := opts.FFmpegPath
	if path == "" {
		path = "ffmpeg"
	}
	if p, err := exec.LookPath(path); err == nil {
		b.ffmpeg = p
	}
	return b, nil
}

// Art returns the artwork the backend renders.
func (b *Backend) Art() *nounsart.Art { return b.art }

// Name returns "nouns".
func (b *Backend) Name() string { return Name }

// Supports reports the operations this backend really performs:
// everything except controlnet_depth, controlnet_segmentation,
// audio_melody and audio_split; the audio operations only when ffmpeg was
// found.
func (b *Backend) Supports(op inference.Op) bool {
	switch op {
	case inference.OpTxt2Img, inference.OpImg2Img, inference.OpInpaint, inference.OpPix2Pix,
		inference.OpControlNetOutlines, inference.OpUpscale, inference.OpInterrogate,
		inference.OpExtendPrompt, inference.OpSegment, inference.OpInterpolate:
		return true
	case inference.OpTextToAudio, inference.OpAudioExtend:
		return b.ffmpeg != ""
	}
	return false
}

// Generate runs txt2img, img2img, inpaint, pix2pix and controlnet_outlines.
// Info holds "art" (the data version), "seeds" (the request seed of each
// sample) and "traits" (per sample, each layer's index and name) for the
// operations that render a Noun.
func (b *Backend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	switch req.Op {
	case inference.OpTxt2Img, inference.OpImg2Img, inference.OpInpaint, inference.OpPix2Pix, inference.OpControlNetOutlines:
	default:
		return inference.ImageResult{}, inference.Unsupported(Name, req.Op)
	}
	if len(req.Prompt) > MaxPromptLen {
		return inference.ImageResult{}, apperr.Invalid(fmt.Sprintf("prompt longer than %d bytes", MaxPromptLen))
	}
	samples := req.Samples
	if samples < 1 {
		samples = 1
	}
	if samples > MaxSamples {
		return inference.ImageResult{}, apperr.Invalid(fmt.Sprintf("samples must be at most %d", MaxSamples))
	}
	if req.Op == inference.OpTxt2Img {
		return b.txt2img(ctx, req, samples)
	}
	if req.Init == nil {
		return inference.ImageResult{}, apperr.Invalid(fmt.Sprintf("%s needs an input image", req.Op))
	}
	init, err := toRGBA(req.Init)
	if err != nil {
		return inference.ImageResult{}, err
	}
	switch req.Op {
	case inference.OpImg2Img:
		return b.img2img(ctx, init, req, samples)
	case inference.OpInpaint:
		return b.inpaint(ctx, init, req, samples)
	case inference.OpPix2Pix:
		return b.pix2pix(ctx, init, req, samples)
	case inference.OpControlNetOutlines:
		return b.outlines(ctx, init, req, samples)
	}
	return inference.ImageResult{}, inference.Unsupported(Name, req.Op)
}

// checkBudget rejects requests whose outputs would exceed MaxTotalPixels.
func checkBudget(samples, w, h int) error {
	if samples*w*h > MaxTotalPixels {
		return apperr.Invalid(fmt.Sprintf("samples × width × height must be at most %d pixels", MaxTotalPixels))
	}
	return nil
}

// toRGBA copies img into a new *image.RGBA whose bounds start at 0,0, after
// checking its size against MaxSide.
func toRGBA(img image.Image) (*image.RGBA, error) {
	r := img.Bounds()
	if r.Dx() < 1 || r.Dy() < 1 {
		return nil, apperr.Invalid("image is empty")
	}
	if r.Dx() > MaxSide || r.Dy() > MaxSide {
		return nil, apperr.Invalid(fmt.Sprintf("image sides must be at most %d pixels", MaxSide))
	}
	dst := image.NewRGBA(image.Rect(0, 0, r.Dx(), r.Dy()))
	draw.Draw(dst, dst.Bounds(), img, r.Min, draw.Src)
	return dst, nil
}
