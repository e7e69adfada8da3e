// Package gpuroute is the one table of the routes a GPU host serves and of
// what each costs in work units: the proxy classifies requests with it
// (which pool, which metric label), its balancer estimates a request's work
// with it, and gpusvc registers its routes and paces its work with it.
//
// A work unit is the cost of one Text to Image sample of 25 steps at
// 512×512 pixels; on the reference GPU it takes about a second. Hosts'
// speeds are learned in seconds per unit, so only the ratios between
// entries matter, not the absolute scale.
//
// This package must never do I/O, parse request bodies or know about
// pools, hosts or handlers: it holds facts, not policy.
package gpuroute

import "strings"

// Route is a GPU route, or None for every request a GPU host does not serve
// (the account routes).
type Route uint8

// The GPU routes. None is the zero value.
const (
	None Route = iota
	Images
	ExtendPrompt
	Interrogate
	Upscale
	Mask
	Generations
	Models
	// Count is the number of Route values, None included (for arrays
	// indexed by Route).
	Count
)

// spec is one row of the table.
type spec struct {
	method, path string
	// name is the route's label in metrics and logs.
	name string
	// cost is the fixed work of a request; 0 means it depends on the
	// request's fields (see Units).
	cost float64
	// measures is set when a successful answer took the route's GPU work,
	// so that its latency tells the host's speed.
	measures bool
}

var table = [Count]spec{
	None:         {name: "account"},
	Images:       {method: "POST", path: "/images", name: "images", measures: true},
	ExtendPrompt: {method: "POST", path: "/extend_prompt", name: "extend_prompt", cost: 0.3, measures: true},
	Interrogate:  {method: "POST", path: "/interrogate", name: "interrogate", cost: 0.5, measures: true},
	Upscale:      {method: "POST", path: "/upscale", name: "upscale", cost: 4.0, measures: true},
	Mask:         {method: "POST", path: "/mask", name: "mask", cost: 0.5, measures: true},
	// Only queues a job (202); a worker on any host does the work later.
	Generations: {method: "POST", path: "/v1/images/generations", name: "v1_images_generations", cost: 0.05},
	// Reads the model registry (with what the host's backends support);
	// no GPU work.
	Models: {method: "GET", path: "/models", name: "models", cost: 0.01},
}

// All returns the GPU routes (None excluded), in table order.
func All() []Route {
	out := make([]Route, 0, Count-1)
	for r := None + 1; r < Count; r++ {
		out = append(out, r)
	}
	return out
}

// Lookup returns the GPU route of a request with this method and path, or
// None.
func Lookup(method, path string) Route {
	// The common case (an account route) costs one comparison per row.
	for r := None + 1; r < Count; r++ {
		if s := &table[r]; s.path == path && s.method == method {
			return r
		}
	}
	return None
}

// Method returns the route's HTTP method ("" for None).
func (r Route) Method() string { return r.spec().method }

// Path returns the route's path ("" for None).
func (r Route) Path() string { return r.spec().path }

// String returns the route's label in metrics and logs ("account" for
// None).
func (r Route) String() string { return r.spec().name }

// FixedCost returns the work units of every request to the route, or 0 when
// the work depends on the request's fields (POST /images: see Units).
func (r Route) FixedCost() float64 { return r.spec().cost }

// MeasuresWork reports whether a successful answer of the route did its GPU
// work before answering, so that its latency measures the host's speed
// (false for None, for the job queue and for the model list).
func (r Route) MeasuresWork() bool { return r.spec().measures }

func (r Route) spec() *spec {
	if r >= Count {
		return &table[None]
	}
	return &table[r]
}

// Mode is a legacy inference_mode of POST /images, in its canonical
// spelling.
type Mode string

// The legacy inference modes.
const (
	ModeTxt2Img      Mode = "Text to Image"
	ModeImg2Img      Mode = "Image to Image"
	ModePix2Pix      Mode = "Pix to Pix"
	ModeOutlines     Mode = "ControlNet Outlines"
	ModeDepth        Mode = "ControlNet Depth"
	ModeSegmentation Mode = "ControlNet Segmentation"
	ModeMask         Mode = "Mask"
)

// modeCost is the cost of each mode relative to Text to Image, per sample,
// step and pixel.
var modeCost = []struct {
	mode Mode
	cost float64
}{
	{ModeTxt2Img, 1.0},
	{ModeImg2Img, 1.0}, // times the strength (the denoised fraction)
	{ModePix2Pix, 1.2},
	{ModeOutlines, 1.3},
	{ModeDepth, 1.5},
	{ModeSegmentation, 1.5},
	{ModeMask, 1.1},
}

// Modes returns the legacy inference modes, in table order.
func Modes() []Mode {
	out := make([]Mode, len(modeCost))
	for i, m := range modeCost {
		out[i] = m.mode
	}
	return out
}

// ParseMode returns the mode named by s, compared case-insensitively with
// runs of white space as one space, and whether there is one.
func ParseMode(s string) (Mode, bool) {
	s = strings.Join(strings.Fields(s), " ")
	for _, m := range modeCost {
		if strings.EqualFold(s, string(m.mode)) {
			return m.mode, true
		}
	}
	return "", false
}

// Cost returns the mode's cost relative to Text to Image (1 for an unknown
// mode).
func (m Mode) Cost() float64 {
	for _, x := range modeCost {
		if x.mode == m {
			return x.cost
		}
	}
	return 1
}

// Reference request of one work unit.
const (
	RefSteps  = 25
	RefPixels = 512 * 512
)

// Units returns the work units of a POST /images request in mode with the
// given samples, steps, output size in pixels and (for Image to Image)
// strength, which is clamped to [0.1, 1]; samples and steps count at least
// 1. Callers bound the other factors.
func Units(mode Mode, samples, steps, width, height, strength float64) float64 {
	cost := mode.Cost()
	if mode == ModeImg2Img {
		cost *= min(max(strength, 0.1), 1)
	}
	return cost * max(samples, 1) * max(steps, 1) / RefSteps * width * height / RefPixels
}

// The slot notice: how a GPU host tells the proxy, before its answer, that
// a request no longer holds a GPU slot. A request that carries
// SlotNoticeHeader (any value) asks for it; the host then sends, when the
// request's capacity slot frees (inference is over, the samples are still
// being encoded and stored), an informational response with status
// SlotNoticeStatus and SlotNoticeHeader: SlotReleased, then the final
// response as usual. The proxy counts the host's slot as free from that
// moment, so its next request is already there when the slot frees rather
// than one encode-store-answer later; it never forwards the notice to its
// client. A host that sends none is counted until its answer ends, as
// before.
const (
	SlotNoticeHeader = "X-Slot-Notice"
	SlotNoticeStatus = 103 // Early Hints: a 1xx every HTTP/1.1 client skips
	SlotReleased     = "released"
)

// HostFullHeader marks a GPU host's 503 that refused a request before doing
// any of its work: every GPU slot was busy and the host's wait queue full.
// The host takes its capacity place before it charges anything, so such a
// request has changed nothing there, its X-Request-ID included. The
// proxy sends such a request, when its body is buffered, to another host it
// has not tried yet instead of answering the 503, and strips the header
// either way.
const HostFullHeader = "X-Host-Full"
