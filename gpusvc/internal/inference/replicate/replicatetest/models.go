package replicatetest

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	_ "image/jpeg" // inputs may be JPEG
	"image/png"
	"math"
	"strings"
)

// SDXLSchedulers, SDXLRefiners and MusicGenModelVersions are the enum
// values the fake accepts.
var (
	SDXLSchedulers        = []string{"DDIM", "DPMSolverMultistep", "HeunDiscrete", "KarrasDPM", "K_EULER_ANCESTRAL", "K_EULER", "PNDM"}
	SDXLRefiners          = []string{"no_refiner", "expert_ensemble_refiner", "base_image_refiner"}
	MusicGenModelVersions = []string{"melody", "large", "encode-decode", "stereo-melody-large", "stereo-large", "melody-large"}
	// DemucsStems are the stems a Demucs prediction outputs.
	DemucsStems = []string{"drums", "bass", "other", "vocals"}
)

// namedFile is one output file.
type namedFile struct {
	key, ext, contentType string
	data                  []byte
}

// outputSpec is a prediction's output before it is stored.
type outputSpec struct {
	shape string // "list", "single" or "map"
	files []namedFile
}

// validate checks input for the model kind its fields reveal (Demucs has
// "audio", MusicGen "model_version" or "duration", otherwise SDXL) and
// computes the outputs. msg is a Replicate-style validation message.
func (s *Server) validate(in map[string]any) (kind string, out outputSpec, msg string) {
	switch {
	case in["audio"] != nil:
		return "demucs", s.validateDemucs(in, &msg), msg
	case in["model_version"] != nil || in["duration"] != nil:
		return "musicgen", s.validateMusicGen(in, &msg), msg
	default:
		return "sdxl", s.validateSDXL(in, &msg), msg
	}
}

// checker accumulates the first validation failure.
type checker struct {
	in  map[string]any
	msg *string
}

func (c checker) fail(field, format string, args ...any) {
	if *c.msg == "" {
		*c.msg = fmt.Sprintf("- input.%s: %s\n", field, fmt.Sprintf(format, args...))
	}
}

func (c checker) str(field string, required bool) string {
	v, ok := c.in[field]
	if !ok {
		if required {
			c.fail(field, "is required")
		}
		return ""
	}
	s, ok := v.(string)
	if !ok {
		c.fail(field, "Invalid type. Expected: string")
	}
	return s
}

func (c checker) num(field string, required, integer bool, lo, hi float64) float64 {
	v, ok := c.in[field]
	if !ok {
		if required {
			c.fail(field, "is required")
		}
		return 0
	}
	f, ok := v.(float64)
	switch {
	case !ok:
		c.fail(field, "Invalid type. Expected: number")
	case integer && f != math.Trunc(f):
		c.fail(field, "Invalid type. Expected: integer")
	case f < lo:
		c.fail(field, "Must be greater than or equal to %v", lo)
	case f > hi:
		c.fail(field, "Must be less than or equal to %v", hi)
	}
	return f
}

func (c checker) enum(field string, required bool, values []string) string {
	s := c.str(field, required)
	if _, ok := c.in[field]; ok && !contains(values, s) {
		c.fail(field, "%s must be one of the following: %s", field, strings.Join(values, ", "))
	}
	return s
}

func (c checker) boolean(field string) bool {
	v, ok := c.in[field]
	if !ok {
		return false
	}
	b, ok := v.(bool)
	if !ok {
		c.fail(field, "Invalid type. Expected: boolean")
	}
	return b
}

// dataURI checks a file input given as a data URI (the adapter's form) and
// returns its bytes.
func (c checker) dataURI(field string, required bool, mimePrefix string) []byte {
	s := c.str(field, required)
	if s == "" {
		return nil
	}
	head, payload, ok := strings.Cut(s, ",")
	if !ok || !strings.HasPrefix(head, "data:"+mimePrefix) || !strings.HasSuffix(head, ";base64") {
		c.fail(field, "expected a base64 data URI of type %s*", mimePrefix)
		return nil
	}
	data, err := base64.StdEncoding.DecodeString(payload)
	if err != nil || len(data) == 0 {
		c.fail(field, "invalid base64 in data URI")
		return nil
	}
	return data
}

func (s *Server) validateSDXL(in map[string]any, msg *string) outputSpec {
	c := checker{in: in, msg: msg}
	if c.str("prompt", true) == "" {
		c.fail("prompt", "must not be empty")
	}
	c.str("negative_prompt", false)
	w := int(c.num("width", true, true, 64, 2048))
	h := int(c.num("height", true, true, 64, 2048))
	n := int(c.num("num_outputs", true, true, 1, 4))
	c.num("num_inference_steps", true, true, 1, 500)
	c.num("guidance_scale", true, false, 1, 50)
	seed := int64(c.num("seed", true, true, math.MinInt32, math.MaxUint32))
	c.enum("scheduler", true, SDXLSchedulers)
	c.enum("refine", true, SDXLRefiners)
	c.num("prompt_strength", true, false, 0, 1)
	c.num("high_noise_frac", true, false, 0, 1)
	c.num("lora_scale", true, false, 0, 1)
	if img := c.dataURI("image", false, "image/"); img != nil {
		if _, _, err := image.Decode(bytes.NewReader(img)); err != nil {
			c.fail("image", "not a decodable image")
		}
	}
	if *msg != "" {
		return outputSpec{}
	}
	out := outputSpec{shape: "list"}
	for i := range n {
		out.files = append(out.files, namedFile{key: fmt.Sprintf("out-%d", i), ext: ".png",
			contentType: "image/png", data: PNG(w, h, SeedColor(seed+int64(i)))})
	}
	return out
}

func (s *Server) validateMusicGen(in map[string]any, msg *string) outputSpec {
	c := checker{in: in, msg: msg}
	prompt := c.str("prompt", false)
	dur := int(c.num("duration", true, true, 1, 300))
	c.enum("model_version", true, MusicGenModelVersions)
	c.enum("output_format", false, []string{"wav", "mp3"})
	c.num("seed", false, true, math.MinInt32, math.MaxUint32)
	cont := c.boolean("continuation")
	audio := c.dataURI("input_audio", cont, "audio/")
	if prompt == "" && audio == nil {
		c.fail("prompt", "a prompt or input_audio is required")
	}
	if *msg != "" {
		return outputSpec{}
	}
	return outputSpec{shape: "single", files: []namedFile{{key: "music", ext: ".mp3",
		contentType: "audio/mpeg", data: MP3(dur, "musicgen:"+prompt)}}}
}

func (s *Server) validateDemucs(in map[string]any, msg *string) outputSpec {
	c := checker{in: in, msg: msg}
	c.dataURI("audio", true, "audio/")
	if *msg != "" {
		return outputSpec{}
	}
	out := outputSpec{shape: "map"}
	for _, stem := range DemucsStems {
		out.files = append(out.files, namedFile{key: stem, ext: ".mp3", contentType: "audio/mpeg", data: MP3(2, stem)})
	}
	return out
}

// storeOutputs makes the files downloadable and returns the output value.
// Callers hold s.mu.
func (s *Server) storeOutputs(id string, spec outputSpec) any {
	ref := func(f namedFile) string {
		if s.opts.DataURIOutputs {
			return "data:" + f.contentType + ";base64," + base64.StdEncoding.EncodeToString(f.data)
		}
		name := id + "-" + f.key + f.ext
		s.files[name] = file{contentType: f.contentType, data: f.data}
		return s.srv.URL + "/files/" + name
	}
	switch spec.shape {
	case "list":
		list := make([]string, 0, len(spec.files))
		for _, f := range spec.files {
			list = append(list, ref(f))
		}
		return list
	case "single":
		return ref(spec.files[0])
	case "map":
		m := make(map[string]any, len(spec.files)+2)
		for _, f := range spec.files {
			m[f.key] = ref(f)
		}
		m["guitar"], m["piano"] = nil, nil // 6-stem keys absent from 4-stem models
		return m
	}
	return nil
}

// SeedColor is the solid colour of the image generated for seed (opaque,
// derived with a splitmix64 step so nearby seeds differ visibly).
func SeedColor(seed int64) color.RGBA {
	z := uint64(seed) + 0x9e3779b97f4a7c15
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	z ^= z >> 31
	return color.RGBA{R: uint8(z), G: uint8(z >> 8), B: uint8(z >> 16), A: 255}
}

// PNG returns a w×h PNG of one colour.
func PNG(w, h int, c color.Color) []byte {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{C: c}, image.Point{}, draw.Src)
	var buf bytes.Buffer
	_ = png.Encode(&buf, img)
	return buf.Bytes()
}

// MP3 returns seconds of MPEG-1 Layer III frames (128 kbit/s, 44.1 kHz)
// with empty payloads, which decoders play as silence; tag is written into
// the first frame's payload so tests can tell outputs apart.
func MP3(seconds int, tag string) []byte {
	const frameLen = 417 // 144 * 128000 / 44100
	frames := max(1, seconds*44100/1152)
	out := make([]byte, 0, frames*frameLen)
	for i := range frames {
		frame := make([]byte, frameLen)
		copy(frame, []byte{0xFF, 0xFB, 0x90, 0x44})
		if i == 0 {
			copy(frame[40:], tag)
		}
		out = append(out, frame...)
	}
	return out
}
