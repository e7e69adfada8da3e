package a1111

import (
	"context"
	"fmt"
	"image"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
)

// upscaleRequest is the body of POST /sdapi/v1/extra-single-image.
type upscaleRequest struct {
	Image           string `json:"image"`
	ResizeMode      int    `json:"resize_mode"`
	UpscalingResize int    `json:"upscaling_resize"`
	Upscaler1       string `json:"upscaler_1"`
}

// upscaleResponse is its answer.
type upscaleResponse struct {
	Image string `json:"image"`
}

// Upscale enlarges req.Image by req.Scale (2 or 4) with the upscaler named
// by req.Model, or Config.Upscaler when empty.
func (b *Backend) Upscale(ctx context.Context, req inference.UpscaleRequest) (image.Image, error) {
	if req.Scale < 1 || req.Scale > 8 {
		return nil, fmt.Errorf("a1111 upscale: scale %d out of range 1..8", req.Scale)
	}
	img, err := encodePNG(req.Image)
	if err != nil {
		return nil, fmt.Errorf("a1111 upscale: %w", err)
	}
	upscaler := req.Model
	if upscaler == "" {
		upscaler = b.cfg.Upscaler
	}
	body := upscaleRequest{Image: img, ResizeMode: 0, UpscalingResize: req.Scale, Upscaler1: upscaler}
	var resp upscaleResponse
	if err := b.call(ctx, string(inference.OpUpscale), "POST", "/sdapi/v1/extra-single-image", body, &resp, true); err != nil {
		return nil, err
	}
	out, err := decodeImage(resp.Image)
	if err != nil {
		return nil, &inference.UpstreamError{Backend: Name, Status: 200, Message: "invalid image in response", Err: err}
	}
	return out, nil
}

// interrogateRequest is the body of POST /sdapi/v1/interrogate.
type interrogateRequest struct {
	Image string `json:"image"`
	Model string `json:"model"`
}

// interrogateResponse is its answer.
type interrogateResponse struct {
	Caption string `json:"caption"`
}

// Interrogate captions img. model names the interrogator ("clip" or
// "deepdanbooru"); anything else (such as a checkpoint name) means
// Config.Interrogator.
func (b *Backend) Interrogate(ctx context.Context, model string, img image.Image) (string, error) {
	enc, err := encodePNG(img)
	if err != nil {
		return "", fmt.Errorf("a1111 interrogate: %w", err)
	}
	if model != "clip" && model != "deepdanbooru" {
		model = b.cfg.Interrogator
	}
	var resp interrogateResponse
	if err := b.call(ctx, string(inference.OpInterrogate), "POST", "/sdapi/v1/interrogate",
		interrogateRequest{Image: enc, Model: model}, &resp, true); err != nil {
		return "", err
	}
	return resp.Caption, nil
}

// samRequest is the body of POST /sam/sam-predict (segment-anything
// extension).
type samRequest struct {
	InputImage        string   `json:"input_image"`
	SAMModelName      string   `json:"sam_model_name,omitempty"`
	SAMPositivePoints [][2]int `json:"sam_positive_points"`
	SAMNegativePoints [][2]int `json:"sam_negative_points"`
}

// samResponse is its answer; masks are candidates, best first.
type samResponse struct {
	Masks []string `json:"masks"`
}

// Segment asks the segment-anything extension for a mask grown from
// req.Points and returns the first candidate as a W×H row-major []bool
// (W×H of req.Image; true = white = selected).
func (b *Backend) Segment(ctx context.Context, req inference.SegmentRequest) ([]bool, error) {
	if len(req.Points) == 0 {
		return nil, fmt.Errorf("a1111 segment: no points")
	}
	enc, err := encodePNG(req.Image)
	if err != nil {
		return nil, fmt.Errorf("a1111 segment: %w", err)
	}
	r := req.Image.Bounds()
	points := make([][2]int, 0, len(req.Points))
	for _, p := range req.Points {
		// Points are relative to the image's own origin.
		points = append(points, [2]int{p.X - r.Min.X, p.Y - r.Min.Y})
	}
	body := samRequest{InputImage: enc, SAMModelName: b.cfg.SAMModel,
		SAMPositivePoints: points, SAMNegativePoints: [][2]int{}}
	var resp samResponse
	if err := b.call(ctx, string(inference.OpSegment), "POST", "/sam/sam-predict", body, &resp, true); err != nil {
		return nil, err
	}
	if len(resp.Masks) == 0 {
		return nil, upstream(200, "server returned no mask")
	}
	mask, err := decodeImage(resp.Masks[0])
	if err != nil {
		return nil, &inference.UpstreamError{Backend: Name, Status: 200, Message: "invalid mask in response", Err: err}
	}
	return maskBits(mask, r.Dx(), r.Dy()), nil
}
