package replicate

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	_ "image/jpeg" // outputs may be JPEG
	"image/png"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"

	_ "golang.org/x/image/webp" // outputs may be WebP

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
)

// Fixed inputs the legacy system sent to the SDXL model.
const (
	legacyScheduler      = "K_EULER"
	legacyPromptStrength = 0.8
	legacyRefine         = "no_refiner"
	legacyHighNoiseFrac  = 0.8
	legacyLoraScale      = 0.8
)

// maxPixels bounds a decoded output image.
const maxPixels = 16384 * 16384

// Generate runs txt2img and img2img on an SDXL-style model (req.Model is
// "owner/name:version", or a name listed in Config.Versions). It returns the
// first req.Samples outputs and Info with "prediction_id" and
// "predict_time" (seconds of billed compute).
func (b *Backend) Generate(ctx context.Context, req inference.ImageRequest) (inference.ImageResult, error) {
	if req.Op != inference.OpTxt2Img && req.Op != inference.OpImg2Img {
		return inference.ImageResult{}, inference.Unsupported(Name, req.Op)
	}
	version, err := b.resolveVersion(req.Model)
	if err != nil {
		return inference.ImageResult{}, err
	}
	samples := max(req.Samples, 1)
	guidance := req.Guidance
	if guidance <= 0 {
		guidance = DefaultGuidance
	}
	input := map[string]any{
		"prompt":              req.Prompt,
		"negative_prompt":     req.NegativePrompt,
		"num_outputs":         samples,
		"num_inference_steps": max(req.Steps, 1),
		"seed":                req.Seed,
		"guidance_scale":      guidance,
		"scheduler":           legacyScheduler,
		"prompt_strength":     legacyPromptStrength,
		"refine":              legacyRefine,
		"high_noise_frac":     legacyHighNoiseFrac,
		"lora_scale":          legacyLoraScale,
	}
	width, height := req.Width, req.Height
	if req.Op == inference.OpImg2Img {
		if req.Init == nil {
			return inference.ImageResult{}, fmt.Errorf("replicate img2img: missing input image")
		}
		uri, err := pngDataURI(req.Init)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("replicate img2img: %w", err)
		}
		input["image"] = uri
		input["prompt_strength"] = req.Strength
		if width == 0 || height == 0 {
			r := req.Init.Bounds()
			width, height = r.Dx(), r.Dy()
		}
	}
	if width == 0 || height == 0 {
		width, height = 1024, 1024
	}
	input["width"], input["height"] = width, height

	p, err := b.run(ctx, string(req.Op), version, input)
	if err != nil {
		return inference.ImageResult{}, err
	}
	urls, err := outputList(p.Output)
	if err != nil {
		return inference.ImageResult{}, err
	}
	if len(urls) < samples {
		return inference.ImageResult{}, &inference.UpstreamError{Backend: Name,
			Message: fmt.Sprintf("prediction returned %d images, want %d", len(urls), samples)}
	}
	images := make([]image.Image, 0, samples)
	for i, u := range urls[:samples] {
		data, err := b.fetch(ctx, u)
		if err != nil {
			return inference.ImageResult{}, err
		}
		img, err := decodeImage(data)
		if err != nil {
			return inference.ImageResult{}, &inference.UpstreamError{Backend: Name,
				Message: fmt.Sprintf("invalid image %d in output", i), Err: err}
		}
		images = append(images, img)
	}
	info := map[string]any{"prediction_id": p.ID}
	if p.Metrics.PredictTime > 0 {
		info["predict_time"] = p.Metrics.PredictTime
	}
	return inference.ImageResult{Images: images, Info: info}, nil
}

// musicGenModelVersions are MusicGen's model_version values; a request Model
// equal to one of them selects it.
var musicGenModelVersions = []string{"melody", "large", "encode-decode", "stereo-melody-large", "stereo-large", "melody-large"}

// demucsStems is the order stems are returned in; unknown extra stems follow
// in name order.
var demucsStems = []string{"drums", "bass", "other", "vocals"}

// Audio runs MusicGen (text_to_audio, audio_melody with req.Melody,
// audio_extend continuing req.Parent) and Demucs (audio_split of
// req.Parent). req.Model may be a MusicGen model_version ("melody",
// "stereo-melody-large", …), a model reference ("owner/name:version") or
// empty for the configured defaults. Outputs are MP3 bytes.
func (b *Backend) Audio(ctx context.Context, req inference.AudioRequest) (inference.AudioResult, error) {
	switch req.Op {
	case inference.OpTextToAudio, inference.OpAudioMelody, inference.OpAudioExtend:
		return b.musicGen(ctx, req)
	case inference.OpAudioSplit:
		return b.demucs(ctx, req)
	}
	return inference.AudioResult{}, inference.Unsupported(Name, req.Op)
}

func (b *Backend) musicGen(ctx context.Context, req inference.AudioRequest) (inference.AudioResult, error) {
	model, modelVersion := b.cfg.MusicGenModel, b.cfg.MusicGenVersion
	switch {
	case slices.Contains(musicGenModelVersions, req.Model):
		modelVersion = req.Model
	case strings.Contains(req.Model, "/"):
		model = req.Model
	}
	version, err := b.resolveVersion(model)
	if err != nil {
		return inference.AudioResult{}, err
	}
	duration := int(math.Round(req.DurationSec))
	if duration <= 0 {
		duration = 15 // the legacy default
	}
	input := map[string]any{
		"prompt":        req.Prompt,
		"duration":      duration,
		"model_version": modelVersion,
		"output_format": "mp3",
		"seed":          req.Seed,
	}
	switch req.Op {
	case inference.OpAudioMelody:
		if len(req.Melody) == 0 {
			return inference.AudioResult{}, errors.New("replicate audio_melody: missing melody")
		}
		input["input_audio"] = mp3DataURI(req.Melody)
		input["continuation"] = false
	case inference.OpAudioExtend:
		if len(req.Parent) == 0 {
			return inference.AudioResult{}, errors.New("replicate audio_extend: missing parent audio")
		}
		input["input_audio"] = mp3DataURI(req.Parent)
		input["continuation"] = true
	}
	p, err := b.run(ctx, string(req.Op), version, input)
	if err != nil {
		return inference.AudioResult{}, err
	}
	urls, err := outputList(p.Output)
	if err != nil || len(urls) == 0 {
		return inference.AudioResult{}, &inference.UpstreamError{Backend: Name, Message: "prediction returned no audio", Err: err}
	}
	data, err := b.fetch(ctx, urls[0])
	if err != nil {
		return inference.AudioResult{}, err
	}
	return inference.AudioResult{Tracks: [][]byte{data}}, nil
}

func (b *Backend) demucs(ctx context.Context, req inference.AudioRequest) (inference.AudioResult, error) {
	if len(req.Parent) == 0 {
		return inference.AudioResult{}, errors.New("replicate audio_split: missing source audio")
	}
	model := b.cfg.DemucsModel
	if strings.Contains(req.Model, "/") {
		model = req.Model
	}
	version, err := b.resolveVersion(model)
	if err != nil {
		return inference.AudioResult{}, err
	}
	p, err := b.run(ctx, string(req.Op), version, map[string]any{"audio": mp3DataURI(req.Parent)})
	if err != nil {
		return inference.AudioResult{}, err
	}
	var stems map[string]*string
	if err := json.Unmarshal(p.Output, &stems); err != nil || len(stems) == 0 {
		return inference.AudioResult{}, &inference.UpstreamError{Backend: Name, Message: "prediction returned no stems", Err: err}
	}
	names := make([]string, 0, len(stems))
	for _, n := range demucsStems {
		if s := stems[n]; s != nil && *s != "" {
			names = append(names, n)
		}
	}
	var extra []string
	for n, s := range stems {
		if s != nil && *s != "" && !slices.Contains(demucsStems, n) {
			extra = append(extra, n)
		}
	}
	sort.Strings(extra)
	names = append(names, extra...)
	res := inference.AudioResult{Names: names, Tracks: make([][]byte, 0, len(names))}
	for _, n := range names {
		data, err := b.fetch(ctx, *stems[n])
		if err != nil {
			return inference.AudioResult{}, err
		}
		res.Tracks = append(res.Tracks, data)
	}
	return res, nil
}

// outputList reads an output that is a URL or a list of URLs.
func outputList(raw json.RawMessage) ([]string, error) {
	var list []string
	if err := json.Unmarshal(raw, &list); err == nil {
		return list, nil
	}
	var one string
	if err := json.Unmarshal(raw, &one); err != nil || one == "" {
		return nil, &inference.UpstreamError{Backend: Name, Message: "unexpected prediction output", Err: err}
	}
	return []string{one}, nil
}

// fetch returns an output's bytes: a data: URI decoded, or an http(s) URL
// downloaded (with the token only when it is on the API host).
func (b *Backend) fetch(ctx context.Context, u string) ([]byte, error) {
	if strings.HasPrefix(u, "data:") {
		i := strings.IndexByte(u, ',')
		if i < 0 || !strings.HasSuffix(u[:i], ";base64") {
			return nil, &inference.UpstreamError{Backend: Name, Message: "unsupported data URI in output"}
		}
		data, err := base64.StdEncoding.DecodeString(u[i+1:])
		if err != nil {
			return nil, &inference.UpstreamError{Backend: Name, Message: "invalid data URI in output", Err: err}
		}
		return data, nil
	}
	if !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://") {
		return nil, &inference.UpstreamError{Backend: Name, Message: "unsupported output URL"}
	}
	header := http.Header{}
	if b.sameHost(u) {
		header.Set("Authorization", "Bearer "+b.cfg.Token)
	}
	return b.send(ctx, "download output", http.MethodGet, u, header, nil)
}

// decodeImage decodes PNG, JPEG or WebP bytes, refusing huge images.
func decodeImage(data []byte) (image.Image, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("decode image header: %w", err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > maxPixels {
		return nil, fmt.Errorf("image size %dx%d out of range", cfg.Width, cfg.Height)
	}
	img, _, err := image.Decode(bytes.NewReader(data))
	return img, err
}

// pngDataURI encodes img as a PNG data URI.
func pngDataURI(img image.Image) (string, error) {
	var buf bytes.Buffer
	w := base64.NewEncoder(base64.StdEncoding, &buf)
	buf.WriteString("data:image/png;base64,")
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(w, img); err != nil {
		return "", fmt.Errorf("encode png: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", err
	}
	return buf.String(), nil
}

// mp3DataURI wraps MP3 bytes as a data URI.
func mp3DataURI(data []byte) string {
	return "data:audio/mpeg;base64," + base64.StdEncoding.EncodeToString(data)
}
