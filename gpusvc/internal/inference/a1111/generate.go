package a1111

import (
	"context"
	"encoding/json"
	"fmt"
	"image"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
)

// controlNetModules maps each ControlNet kind to its preprocessor.
var controlNetModules = map[inference.Op]string{
	inference.OpControlNetOutlines: "canny",
	inference.OpControlNetDepth:    "depth_midas",
	inference.OpControlNetSegment:  "seg_ofade20k",
}

// generateRequest is the body of txt2img and img2img (the fields we set).
type generateRequest struct {
	Prompt                            string            `json:"prompt"`
	NegativePrompt                    string            `json:"negative_prompt"`
	Seed                              int64             `json:"seed"`
	SamplerName                       string            `json:"sampler_name,omitempty"`
	BatchSize                         int               `json:"batch_size"`
	NIter                             int               `json:"n_iter"`
	Steps                             int               `json:"steps"`
	CFGScale                          float64           `json:"cfg_scale"`
	Width                             int               `json:"width"`
	Height                            int               `json:"height"`
	SendImages                        bool              `json:"send_images"`
	SaveImages                        bool              `json:"save_images"`
	OverrideSettings                  map[string]string `json:"override_settings,omitempty"`
	OverrideSettingsRestoreAfterwards *bool             `json:"override_settings_restore_afterwards,omitempty"`
	AlwaysOnScripts                   map[string]script `json:"alwayson_scripts,omitempty"`

	// img2img only.
	InitImages        []string `json:"init_images,omitempty"`
	DenoisingStrength *float64 `json:"denoising_strength,omitempty"`
	ImageCFGScale     *float64 `json:"image_cfg_scale,omitempty"`
	Mask              string   `json:"mask,omitempty"`
	ResizeMode        *int     `json:"resize_mode,omitempty"`
}

// script is one alwayson_scripts entry.
type script struct {
	Args []controlNetUnit `json:"args"`
}

// controlNetUnit is one ControlNet unit (sd-webui-controlnet's fields).
type controlNetUnit struct {
	Enabled       bool    `json:"enabled"`
	Module        string  `json:"module"`
	Model         string  `json:"model"`
	Weight        float64 `json:"weight"`
	Image         string  `json:"image"`
	ResizeMode    string  `json:"resize_mode"`
	PixelPerfect  bool    `json:"pixel_perfect"`
	ControlMode   string  `json:"control_mode"`
	GuidanceStart float64 `json:"guidance_start"`
	GuidanceEnd   float64 `json:"guidance_end"`
	ThresholdA    float64 `json:"threshold_a,omitempty"`
	ThresholdB    float64 `json:"threshold_b,omitempty"`
}

// generateResponse is the answer of txt2img and img2img.
type generateResponse struct {
	Images []string `json:"images"`
	Info   string   `json:"info"`
}

// Generate runs txt2img, img2img, inpaint (img2img with a mask), pix2pix
// (img2img with image_cfg_scale; the caller routes it to an instruct-pix2pix
// checkpoint) and the ControlNet kinds (txt2img with a ControlNet unit). It
// returns exactly req.Samples images (extension extras such as detect maps
// are dropped) and Info with "seed" (int64) and "all_seeds" ([]int64) when the
// server reports them.
func (b *Backend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	if !b.Supports(req.Op) || req.Op == inference.OpUpscale || req.Op == inference.OpInterrogate ||
		req.Op == inference.OpSegment {
		return inference.ImageResult{}, inference.Unsupported(Name, req.Op)
	}
	samples := max(req.Samples, 1)
	body := generateRequest{
		Prompt:         req.Prompt,
		NegativePrompt: req.NegativePrompt,
		Seed:           req.Seed,
		SamplerName:    b.cfg.Sampler,
		BatchSize:      samples,
		NIter:          1,
		Steps:          max(req.Steps, 1),
		CFGScale:       req.Guidance,
		Width:          req.Width,
		Height:         req.Height,
		SendImages:     true,
	}
	if body.CFGScale <= 0 {
		body.CFGScale = DefaultGuidance
	}
	if req.Model != "" {
		// Keep the checkpoint loaded afterwards: restoring would reload the
		// previous one after every request.
		keep := false
		body.OverrideSettings = map[string]string{"sd_model_checkpoint": req.Model}
		body.OverrideSettingsRestoreAfterwards = &keep
	}
	if req.Op != inference.OpTxt2Img {
		if req.Init == nil {
			return inference.ImageResult{}, fmt.Errorf("a1111 %s: missing input image", req.Op)
		}
		if body.Width == 0 || body.Height == 0 {
			r := req.Init.Bounds()
			body.Width, body.Height = r.Dx(), r.Dy()
		}
	}
	if body.Width == 0 || body.Height == 0 {
		body.Width, body.Height = 512, 512
	}

	path := "/sdapi/v1/img2img"
	switch req.Op {
	case inference.OpTxt2Img:
		path = "/sdapi/v1/txt2img"
	case inference.OpImg2Img, inference.OpInpaint, inference.OpPix2Pix:
		init, err := encodePNG(req.Init)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("a1111 %s: input image: %w", req.Op, err)
		}
		body.InitImages = []string{init}
		resize := 0
		body.ResizeMode = &resize
		strength := req.Strength
		if req.Op == inference.OpPix2Pix {
			if strength <= 0 {
				strength = 1
			}
			scale := b.cfg.ImageCFGScale
			body.ImageCFGScale = &scale
		}
		body.DenoisingStrength = &strength
		if req.Op == inference.OpInpaint {
			if req.Mask == nil {
				return inference.ImageResult{}, fmt.Errorf("a1111 inpaint: missing mask")
			}
			mask, err := encodePNG(binaryMask(req.Mask))
			if err != nil {
				return inference.ImageResult{}, fmt.Errorf("a1111 inpaint: mask: %w", err)
			}
			body.Mask = mask
		}
	default: // ControlNet kinds
		path = "/sdapi/v1/txt2img"
		control, err := encodePNG(req.Init)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("a1111 %s: control image: %w", req.Op, err)
		}
		unit := controlNetUnit{
			Enabled:       true,
			Module:        controlNetModules[req.Op],
			Model:         b.cfg.ControlNetModels[req.Op],
			Weight:        b.cfg.ControlNetWeight,
			Image:         control,
			ResizeMode:    "Crop and Resize",
			PixelPerfect:  true,
			ControlMode:   "Balanced",
			GuidanceStart: 0,
			GuidanceEnd:   1,
		}
		if req.Op == inference.OpControlNetOutlines {
			// The legacy pipeline used Canny with thresholds 100/200.
			unit.ThresholdA, unit.ThresholdB = 100, 200
		}
		body.AlwaysOnScripts = map[string]script{"controlnet": {Args: []controlNetUnit{unit}}}
	}

	var resp generateResponse
	if err := b.call(ctx, string(req.Op), "POST", path, body, &resp, true); err != nil {
		return inference.ImageResult{}, err
	}
	if len(resp.Images) < samples {
		return inference.ImageResult{}, upstream(200, "server returned %d images, want %d", len(resp.Images), samples)
	}
	images := make([]image.Image, 0, samples)
	for i, s := range resp.Images[:samples] {
		img, err := decodeImage(s)
		if err != nil {
			return inference.ImageResult{}, &inference.UpstreamError{Backend: Name, Status: 200,
				Message: fmt.Sprintf("invalid image %d in response", i), Err: err}
		}
		images = append(images, img)
	}
	return inference.ImageResult{Images: images, Info: decodeInfo(resp.Info)}, nil
}

// generationInfo is the part of the response's info we keep.
type generationInfo struct {
	Seed        *int64  `json:"seed"`
	AllSeeds    []int64 `json:"all_seeds"`
	SDModelName string  `json:"sd_model_name"`
	SDModelHash string  `json:"sd_model_hash"`
}

// decodeInfo decodes the info JSON string (a second JSON decode). Servers
// that send no info (stable-diffusion.cpp sends "") give nil.
func decodeInfo(s string) map[string]any {
	if s == "" {
		return nil
	}
	var gi generationInfo
	if json.Unmarshal([]byte(s), &gi) != nil {
		return nil
	}
	info := map[string]any{}
	if gi.Seed != nil {
		info["seed"] = *gi.Seed
	}
	if len(gi.AllSeeds) > 0 {
		info["all_seeds"] = gi.AllSeeds
	}
	if gi.SDModelName != "" {
		info["sd_model_name"] = gi.SDModelName
	}
	if gi.SDModelHash != "" {
		info["sd_model_hash"] = gi.SDModelHash
	}
	if len(info) == 0 {
		return nil
	}
	return info
}
