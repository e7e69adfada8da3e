package a1111test

import (
	"encoding/json"
	"fmt"
	"image"
	"net/http"
	"slices"
	"strings"
)

// generateBody is the subset of txt2img/img2img fields the fake validates.
type generateBody struct {
	Prompt                            *string           `json:"prompt"`
	NegativePrompt                    string            `json:"negative_prompt"`
	Seed                              *int64            `json:"seed"`
	SamplerName                       string            `json:"sampler_name"`
	BatchSize                         *int              `json:"batch_size"`
	NIter                             *int              `json:"n_iter"`
	Steps                             *int              `json:"steps"`
	CFGScale                          *float64          `json:"cfg_scale"`
	Width                             *int              `json:"width"`
	Height                            *int              `json:"height"`
	OverrideSettings                  map[string]any    `json:"override_settings"`
	OverrideSettingsRestoreAfterwards *bool             `json:"override_settings_restore_afterwards"`
	AlwaysOnScripts                   map[string]script `json:"alwayson_scripts"`

	InitImages        []string `json:"init_images"`
	DenoisingStrength *float64 `json:"denoising_strength"`
	ImageCFGScale     *float64 `json:"image_cfg_scale"`
	Mask              string   `json:"mask"`
}

type script struct {
	Args []controlNetUnit `json:"args"`
}

type controlNetUnit struct {
	Enabled         *bool    `json:"enabled"`
	Module          string   `json:"module"`
	Model           string   `json:"model"`
	Weight          *float64 `json:"weight"`
	Image           string   `json:"image"`
	SaveDetectedMap *bool    `json:"save_detected_map"`
}

// ControlNetModules are the preprocessors the fake accepts.
var ControlNetModules = []string{"none", "canny", "depth_midas", "seg_ofade20k", "openpose", "lineart"}

// check is the fake's field validation: it returns a message for the first
// invalid field, or "".
func (s *Server) checkCommon(b *generateBody) string {
	switch {
	case b.Prompt == nil:
		return "prompt is required by the fake"
	case b.Seed == nil:
		return "seed is required by the fake"
	case b.Steps == nil || *b.Steps < 1 || *b.Steps > 150:
		return "steps must be 1..150"
	case b.BatchSize == nil || *b.BatchSize < 1 || *b.BatchSize > 8:
		return "batch_size must be 1..8"
	case b.NIter != nil && (*b.NIter < 1 || *b.NIter > 8):
		return "n_iter must be 1..8"
	case b.CFGScale == nil || *b.CFGScale <= 0 || *b.CFGScale > 30:
		return "cfg_scale must be in (0, 30]"
	case b.Width == nil || b.Height == nil || *b.Width < 64 || *b.Height < 64 ||
		*b.Width > 2048 || *b.Height > 2048 || *b.Width%8 != 0 || *b.Height%8 != 0:
		return "width and height must be multiples of 8 in 64..2048"
	}
	if ck, ok := b.OverrideSettings["sd_model_checkpoint"]; ok {
		name, _ := ck.(string)
		if !slices.Contains(s.opts.Models, name) {
			return fmt.Sprintf("checkpoint %q not found", name)
		}
	}
	return ""
}

// handleTxt2Img serves POST /sdapi/v1/txt2img (with optional ControlNet).
func (s *Server) handleTxt2Img(w http.ResponseWriter, r *http.Request) {
	var b generateBody
	if err := decodeBody(r, &b); err != nil {
		invalid(w, err.Error())
		return
	}
	if msg := s.checkCommon(&b); msg != "" {
		invalid(w, msg)
		return
	}
	if len(b.InitImages) > 0 || b.Mask != "" {
		invalid(w, "init_images and mask are img2img fields")
		return
	}
	extras, msg := s.checkControlNet(b.AlwaysOnScripts, *b.Width, *b.Height)
	if msg != "" {
		invalid(w, msg)
		return
	}
	s.answerGenerate(w, &b, extras)
}

// handleImg2Img serves POST /sdapi/v1/img2img (inpainting when mask is set).
func (s *Server) handleImg2Img(w http.ResponseWriter, r *http.Request) {
	var b generateBody
	if err := decodeBody(r, &b); err != nil {
		invalid(w, err.Error())
		return
	}
	if msg := s.checkCommon(&b); msg != "" {
		invalid(w, msg)
		return
	}
	if len(b.InitImages) == 0 {
		writeError(w, http.StatusNotFound, "HTTPException", "Init image not found")
		return
	}
	init, err := decodeB64Image(b.InitImages[0], false)
	if err != nil {
		invalid(w, "init_images[0]: "+err.Error())
		return
	}
	if b.DenoisingStrength == nil || *b.DenoisingStrength < 0 || *b.DenoisingStrength > 1 {
		invalid(w, "denoising_strength must be in 0..1")
		return
	}
	if b.ImageCFGScale != nil && (*b.ImageCFGScale <= 0 || *b.ImageCFGScale > 30) {
		invalid(w, "image_cfg_scale must be in (0, 30]")
		return
	}
	if b.Mask != "" {
		mask, err := decodeB64Image(b.Mask, false)
		if err != nil {
			invalid(w, "mask: "+err.Error())
			return
		}
		if mask.Bounds().Size() != init.Bounds().Size() {
			invalid(w, "mask size differs from init image size")
			return
		}
	}
	s.answerGenerate(w, &b, 0)
}

// checkControlNet validates alwayson_scripts.controlnet and returns how many
// detect maps the server would append.
func (s *Server) checkControlNet(scripts map[string]script, w, h int) (int, string) {
	cn, ok := scripts["controlnet"]
	if !ok {
		if len(scripts) > 0 {
			return 0, "unknown always-on script"
		}
		return 0, ""
	}
	if len(cn.Args) == 0 {
		return 0, "controlnet args is empty"
	}
	extras := 0
	for i, u := range cn.Args {
		if u.Enabled == nil || !*u.Enabled {
			continue
		}
		switch {
		case !slices.Contains(ControlNetModules, u.Module):
			return 0, fmt.Sprintf("controlnet unit %d: unknown module %q", i, u.Module)
		case u.Model == "":
			return 0, fmt.Sprintf("controlnet unit %d: model is required", i)
		case u.Weight == nil || *u.Weight < 0 || *u.Weight > 2:
			return 0, fmt.Sprintf("controlnet unit %d: weight must be 0..2", i)
		}
		if _, err := decodeB64Image(u.Image, false); err != nil {
			return 0, fmt.Sprintf("controlnet unit %d: image: %v", i, err)
		}
		if u.Module != "none" && (u.SaveDetectedMap == nil || *u.SaveDetectedMap) {
			extras++
		}
	}
	return extras, ""
}

// answerGenerate writes batch_size×n_iter images (then extras detect maps)
// with the documented response shape.
func (s *Server) answerGenerate(w http.ResponseWriter, b *generateBody, extras int) {
	n := *b.BatchSize
	if b.NIter != nil {
		n *= *b.NIter
	}
	seed := *b.Seed
	if seed == -1 {
		seed = 1234
	}
	width, height := *b.Width, *b.Height
	images := make([]string, 0, n+extras)
	seeds := make([]int64, 0, n)
	for i := range n {
		seeds = append(seeds, seed+int64(i))
		images = append(images, encodeB64(solid(width, height, SeedColor(seed+int64(i))), s.opts.JPEG))
	}
	for range extras {
		images = append(images, encodeB64(solid(width, height, DetectMapColor), false))
	}
	model := s.opts.Models[0]
	if ck, ok := b.OverrideSettings["sd_model_checkpoint"].(string); ok {
		model = ck
	}
	info := map[string]any{
		"prompt":               *b.Prompt,
		"all_prompts":          repeat(*b.Prompt, n),
		"negative_prompt":      b.NegativePrompt,
		"all_negative_prompts": repeat(b.NegativePrompt, n),
		"seed":                 seed,
		"all_seeds":            seeds,
		"subseed":              0,
		"all_subseeds":         make([]int64, n),
		"width":                width,
		"height":               height,
		"sampler_name":         b.SamplerName,
		"cfg_scale":            *b.CFGScale,
		"steps":                *b.Steps,
		"batch_size":           *b.BatchSize,
		"sd_model_name":        strings.SplitN(model, ".", 2)[0],
		"sd_model_hash":        "a1b2c3d4e5",
		"denoising_strength":   b.DenoisingStrength,
		"index_of_first_image": 0,
		"infotexts":            repeat(fmt.Sprintf("%s\nSteps: %d, Seed: %d", *b.Prompt, *b.Steps, seed), n),
		"version":              "fake",
	}
	infoJSON, _ := json.Marshal(info)
	params := map[string]any{
		"prompt": *b.Prompt, "negative_prompt": b.NegativePrompt, "seed": *b.Seed,
		"steps": *b.Steps, "cfg_scale": *b.CFGScale, "width": width, "height": height,
		"batch_size": *b.BatchSize, "sampler_name": b.SamplerName,
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": images, "parameters": params, "info": string(infoJSON)})
}

func repeat(s string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = s
	}
	return out
}

// handleUpscale serves POST /sdapi/v1/extra-single-image.
func (s *Server) handleUpscale(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Image           string `json:"image"`
		ResizeMode      *int   `json:"resize_mode"`
		UpscalingResize *int   `json:"upscaling_resize"`
		Upscaler1       string `json:"upscaler_1"`
	}
	if err := decodeBody(r, &b); err != nil {
		invalid(w, err.Error())
		return
	}
	img, err := decodeB64Image(b.Image, true)
	if err != nil {
		invalid(w, "image: "+err.Error())
		return
	}
	switch {
	case b.ResizeMode == nil || *b.ResizeMode != 0:
		invalid(w, "the fake supports resize_mode 0 only")
		return
	case b.UpscalingResize == nil || *b.UpscalingResize < 1 || *b.UpscalingResize > 8:
		invalid(w, "upscaling_resize must be 1..8")
		return
	case !slices.Contains(s.opts.Upscalers, b.Upscaler1):
		invalid(w, fmt.Sprintf("could not find upscaler named %s", b.Upscaler1))
		return
	}
	sz := img.Bounds().Size()
	out := solid(sz.X**b.UpscalingResize, sz.Y**b.UpscalingResize, avgColor(img))
	writeJSON(w, http.StatusOK, map[string]any{"image": encodeB64(out, false), "html_info": "<p>fake upscale</p>"})
}

// handleInterrogate serves POST /sdapi/v1/interrogate.
func (s *Server) handleInterrogate(w http.ResponseWriter, r *http.Request) {
	var b struct {
		Image string `json:"image"`
		Model string `json:"model"`
	}
	if err := decodeBody(r, &b); err != nil {
		invalid(w, err.Error())
		return
	}
	if _, err := decodeB64Image(b.Image, true); err != nil {
		invalid(w, "image: "+err.Error())
		return
	}
	if b.Model != "clip" && b.Model != "deepdanbooru" {
		writeError(w, http.StatusNotFound, "HTTPException", "Model not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"caption": s.opts.Caption})
}

// MaskRadius is the radius, as a fraction of the shorter image side, of the
// disk the fake's segment-anything selects around each positive point.
const MaskRadius = 0.125

// handleSAM serves POST /sam/sam-predict: the masks are white disks of
// MaskRadius around the positive points, three identical candidates.
func (s *Server) handleSAM(w http.ResponseWriter, r *http.Request) {
	var b struct {
		InputImage        string      `json:"input_image"`
		SAMModelName      string      `json:"sam_model_name"`
		SAMPositivePoints [][]float64 `json:"sam_positive_points"`
		SAMNegativePoints [][]float64 `json:"sam_negative_points"`
	}
	if err := decodeBody(r, &b); err != nil {
		invalid(w, err.Error())
		return
	}
	img, err := decodeB64Image(b.InputImage, true)
	if err != nil {
		invalid(w, "input_image: "+err.Error())
		return
	}
	if len(b.SAMPositivePoints) == 0 {
		invalid(w, "sam_positive_points is empty")
		return
	}
	sz := img.Bounds().Size()
	points := make([]image.Point, 0, len(b.SAMPositivePoints))
	for _, p := range b.SAMPositivePoints {
		if len(p) != 2 || p[0] < 0 || p[1] < 0 || int(p[0]) >= sz.X || int(p[1]) >= sz.Y {
			invalid(w, "sam_positive_points must be [x, y] inside the image")
			return
		}
		points = append(points, image.Pt(int(p[0]), int(p[1])))
	}
	mask := encodeB64(diskMask(sz.X, sz.Y, points), false)
	writeJSON(w, http.StatusOK, map[string]any{
		"msg":            "Mask generated",
		"blended_images": []string{mask, mask, mask},
		"masks":          []string{mask, mask, mask},
		"masked_images":  []string{mask, mask, mask},
	})
}

// handleModels serves GET /sdapi/v1/sd-models.
func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	out := make([]map[string]any, 0, len(s.opts.Models))
	for _, title := range s.opts.Models {
		name := strings.SplitN(title, " ", 2)[0]
		out = append(out, map[string]any{
			"title": title, "model_name": strings.TrimSuffix(name, ".safetensors"),
			"hash": "a1b2c3d4e5", "sha256": nil, "filename": "/models/Stable-diffusion/" + name, "config": nil,
		})
	}
	writeJSON(w, http.StatusOK, out)
}
