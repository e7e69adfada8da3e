package balancer

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/nounsai/sdserver/shared/gpuroute"
)

// Bounds of the request fields in an estimate, and gpusvc's defaults for
// fields a body leaves out. Costs and the unit are gpuroute's.
const (
	defaultSamples = 1
	defaultSide    = 768

	maxSamples = 16
	maxSteps   = 150
	maxSide    = 2048
)

// imageRequest holds the few fields of a generation body the estimate needs
// (filled by scan).
type imageRequest struct {
	Mode        string
	Samples     flexNum
	Steps       flexNum
	Strength    flexNum
	AspectRatio string
	Size        string
	Width       flexNum
	Height      flexNum
}

// flexNum accepts a JSON number or a numeric string (the legacy API coerces
// with int()/float()); anything else leaves it 0.
type flexNum float64

// UnmarshalJSON implements json.Unmarshaler; it never fails.
func (f *flexNum) UnmarshalJSON(b []byte) error {
	b = bytes.Trim(b, `"`)
	if v, err := strconv.ParseFloat(string(b), 64); err == nil {
		*f = flexNum(v)
	}
	return nil
}

// EstimatePrefix returns the work units of a request to the GPU route with
// the given JSON body, of which only prefix may be known (complete reports
// whether prefix is the whole body): the route's fixed cost, or for POST
// /images the cost of its fields. Malformed bodies and missing fields fall
// back to gpusvc's defaults (1 sample, 25 steps, 768×768), and every factor
// is clamped, so a request cannot claim unbounded work. It scans the top-level
// fields of the JSON object in order and stops at the first syntax error or
// at the end of prefix; a value that reaches the end of an incomplete prefix
// may be cut short and is ignored. Fields not seen (for example those after a
// large base_64 image) take their defaults. It never reads past prefix.
func EstimatePrefix(route gpuroute.Route, prefix []byte, complete bool) float64 {
	if c := route.FixedCost(); c > 0 {
		return c
	}
	var r imageRequest
	// A body that is not JSON is estimated with the defaults; gpusvc will
	// reject it quickly.
	r.scan(prefix, complete)

	samples := float64(r.Samples)
	if samples == 0 {
		samples = defaultSamples
	}
	steps := float64(r.Steps)
	if steps == 0 {
		steps = gpuroute.RefSteps
	}
	w, h := float64(r.Width), float64(r.Height)
	if w == 0 || h == 0 {
		w, h = parseSize(r.AspectRatio, ':')
	}
	if w == 0 || h == 0 {
		w, h = parseSize(r.Size, 'x')
	}
	if w == 0 || h == 0 {
		w, h = defaultSide, defaultSide
	}
	// An unknown mode is estimated as Text to Image; gpusvc will reject it
	// quickly.
	mode, _ := gpuroute.ParseMode(r.Mode)
	strength := float64(r.Strength)
	switch mode {
	case gpuroute.ModeImg2Img:
		if r.Strength == 0 {
			strength = 0.5
		}
	case gpuroute.ModeOutlines, gpuroute.ModeDepth, gpuroute.ModeSegmentation:
		samples = 1
	case gpuroute.ModeMask:
		samples, steps = 1, gpuroute.RefSteps
	}
	samples = clamp(samples, 1, maxSamples)
	steps = clamp(steps, 1, maxSteps)
	w, h = clamp(w, 64, maxSide), clamp(h, 64, maxSide)
	return gpuroute.Units(mode, samples, steps, w, h, strength)
}

// scan fills r from the top-level fields of the JSON object in body, in
// order, until the end of the object, a syntax error or (when !complete) a
// value touching the end of body. Keys match case-insensitively and a later
// duplicate wins, as with json.Unmarshal; a value of the wrong type leaves
// its field unset.
func (r *imageRequest) scan(body []byte, complete bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return
	}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return
		}
		key, ok := t.(string)
		if !ok {
			return
		}
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return
		}
		if !complete && dec.InputOffset() >= int64(len(body)) {
			// The value ends where the prefix does: "steps": 15 may be
			// the start of 150.
			return
		}
		var dst any
		switch {
		case strings.EqualFold(key, "inference_mode"):
			dst = &r.Mode
		case strings.EqualFold(key, "samples"):
			dst = &r.Samples
		case strings.EqualFold(key, "steps"):
			dst = &r.Steps
		case strings.EqualFold(key, "strength"):
			dst = &r.Strength
		case strings.EqualFold(key, "aspect_ratio"):
			dst = &r.AspectRatio
		case strings.EqualFold(key, "size"):
			dst = &r.Size
		case strings.EqualFold(key, "width"):
			dst = &r.Width
		case strings.EqualFold(key, "height"):
			dst = &r.Height
		default:
			continue
		}
		_ = json.Unmarshal(raw, dst)
	}
}

// parseSize parses "W<sep>H"; it returns zeros when s is not that.
func parseSize(s string, sep byte) (float64, float64) {
	i := strings.IndexByte(s, sep)
	if i < 0 {
		return 0, 0
	}
	w, err1 := strconv.ParseFloat(strings.TrimSpace(s[:i]), 64)
	h, err2 := strconv.ParseFloat(strings.TrimSpace(s[i+1:]), 64)
	if err1 != nil || err2 != nil || w <= 0 || h <= 0 {
		return 0, 0
	}
	return w, h
}

func clamp(v, lo, hi float64) float64 {
	return min(max(v, lo), hi)
}
