// Package inference defines the operations a generation backend offers and
// the request/response types they exchange. Backends (the built-in nouns
// renderer, AUTOMATIC1111-compatible servers, Replicate) live in
// sub-packages and implement Backend; the HTTP layer and the job workers only
// ever talk to this interface.
//
// This package must never perform I/O itself, and must never import a
// backend sub-package.
package inference

import (
	"context"
	"errors"
	"fmt"
	"image"
)

// Op names one operation a backend may support. The string values appear in
// error messages, the models table's capabilities column and GET /models.
type Op string

// The operations a backend may offer.
const (
	OpTxt2Img            Op = "txt2img"
	OpImg2Img            Op = "img2img"
	OpInpaint            Op = "inpaint"
	OpControlNetOutlines Op = "controlnet_outlines"
	OpControlNetDepth    Op = "controlnet_depth"
	OpControlNetSegment  Op = "controlnet_segmentation"
	OpPix2Pix            Op = "pix2pix"
	OpUpscale            Op = "upscale"
	OpInterrogate        Op = "interrogate"
	OpExtendPrompt       Op = "extend_prompt"
	OpSegment            Op = "segment" // mask from points (legacy /mask)
	OpTextToAudio        Op = "text_to_audio"
	OpAudioMelody        Op = "audio_melody"
	OpAudioExtend        Op = "audio_extend"
	OpAudioSplit         Op = "audio_split"
	OpInterpolate        Op = "interpolate" // in-between video frames
)

// AllOps lists every operation in a stable order, for capability listings.
var AllOps = []Op{
	OpTxt2Img, OpImg2Img, OpInpaint, OpControlNetOutlines, OpControlNetDepth,
	OpControlNetSegment, OpPix2Pix, OpUpscale, OpInterrogate, OpExtendPrompt,
	OpSegment, OpTextToAudio, OpAudioMelody, OpAudioExtend, OpAudioSplit, OpInterpolate,
}

// ErrUnsupported is returned (wrapped in *UnsupportedError) when a backend is
// asked for an operation it does not offer. The HTTP layer maps it to 501.
var ErrUnsupported = errors.New("operation not supported")

// UnsupportedError names the operation and the backend that lacks it.
type UnsupportedError struct {
	Op      Op
	Backend string
}

func (e *UnsupportedError) Error() string {
	return fmt.Sprintf("%s is not supported by the %s backend", e.Op, e.Backend)
}

// Unwrap lets errors.Is(err, ErrUnsupported) match.
func (e *UnsupportedError) Unwrap() error { return ErrUnsupported }

// Unsupported returns the error a backend gives for an operation it lacks.
func Unsupported(backend string, op Op) error {
	return &UnsupportedError{Op: op, Backend: backend}
}

// UpstreamError reports that a remote inference server failed. Message is
// the server's own (safe to show to the client); Status is its HTTP status
// when there was one. The HTTP layer maps it to 502.
type UpstreamError struct {
	Backend string
	Status  int
	Message string
	Err     error
}

func (e *UpstreamError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s backend: upstream status %d: %s", e.Backend, e.Status, e.Message)
	}
	return fmt.Sprintf("%s backend: %s", e.Backend, e.Message)
}

// Unwrap returns the underlying cause, if any.
func (e *UpstreamError) Unwrap() error { return e.Err }

// ImageRequest is one image-producing request. Which fields matter depends
// on Op; backends ignore the rest.
type ImageRequest struct {
	Op             Op
	Model          string // the backend's own model name (models.backend_model)
	Prompt         string
	NegativePrompt string
	Samples        int   // images to produce, ≥ 1
	Steps          int   // sampling steps, ≥ 1
	Seed           int64 // deterministic seed
	Width, Height  int   // output size in pixels (txt2img); 0 = derive from Init
	Strength       float64
	Guidance       float64     // classifier-free guidance; 0 = backend default (7.5)
	Init           image.Image // input image for every op but txt2img
	Mask           image.Image // inpaint: non-zero alpha/white = repaint
}

// ImageResult is what a backend produced. Images are in generation order.
type ImageResult struct {
	Images []image.Image
	// Info is backend-specific metadata worth keeping with the image row
	// (for example the resolved Nouns traits). May be nil.
	Info map[string]any
}

// UpscaleRequest asks for an image enlarged by Scale (2 or 4).
type UpscaleRequest struct {
	Model string
	Image image.Image
	Scale int
}

// SegmentRequest asks for a mask grown from foreground points.
type SegmentRequest struct {
	Image  image.Image
	Points []image.Point
}

// AudioRequest asks for audio. Which fields matter depends on Op.
type AudioRequest struct {
	Op          Op
	Model       string
	Prompt      string
	Seed        int64
	DurationSec float64
	Melody      []byte // audio_melody: the conditioning audio (MP3)
	Parent      []byte // audio_extend / audio_split: the source audio (MP3)
}

// AudioResult holds encoded audio outputs (MP3). Split returns one per stem,
// with Names giving the stem names in the same order.
type AudioResult struct {
	Tracks [][]byte
	Names  []string
}

// Backend is one inference backend. Implementations must be safe for
// concurrent use; any per-server serialisation (A1111 runs one job at a
// time) is the backend's own business. Every method honours ctx
// cancellation. A method for an operation the backend does not offer
// returns Unsupported(name, op).
type Backend interface {
	// Name is the backend's short name: "nouns", "a1111", "replicate".
	Name() string
	// Supports reports whether the backend offers op at all.
	Supports(op Op) bool
	// Generate runs txt2img, img2img, inpaint, controlnet_* and pix2pix.
	Generate(ctx context.Context, req ImageRequest) (ImageResult, error)
	// Upscale enlarges an image.
	Upscale(ctx context.Context, req UpscaleRequest) (image.Image, error)
	// Interrogate describes an image as a prompt.
	Interrogate(ctx context.Context, model string, img image.Image) (string, error)
	// ExtendPrompt enriches a prompt.
	ExtendPrompt(ctx context.Context, prompt string) (string, error)
	// Segment returns a W×H boolean mask (row-major, true = selected).
	Segment(ctx context.Context, req SegmentRequest) ([]bool, error)
	// Audio runs the audio operations.
	Audio(ctx context.Context, req AudioRequest) (AudioResult, error)
	// Interpolate returns n in-between frames from a to b (exclusive of
	// both), the same size as a, for video projects.
	Interpolate(ctx context.Context, req InterpolateRequest) ([]image.Image, error)
}

// InterpolateRequest asks for N frames between two keyframes. Prompt and
// Seed let generative backends guide the walk.
type InterpolateRequest struct {
	Model  string
	From   image.Image
	To     image.Image
	N      int
	Prompt string
	Seed   int64
}
