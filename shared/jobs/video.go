package jobs

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/nounsai/sdserver/shared/apperr"
)

// Limits on a video project's metadata.
const (
	// MaxKeyframes bounds the keyframes of one project.
	MaxKeyframes = 200
	// MaxPromptLen bounds one keyframe prompt in bytes.
	MaxPromptLen = 2000
)

// VideoPlan is what a video project's metadata asks for (legacy §8): the
// keyframes and the frames between them.
type VideoPlan struct {
	// Timestamps are the kept keyframe times in seconds of the audio:
	// strictly increasing, the first one the audio start, none more than
	// the maximum duration after it.
	Timestamps []float64
	// ImageIDs are the keyframe images, one per timestamp.
	ImageIDs []int64
	// Prompts are the keyframe prompts, one per timestamp ("" = none).
	Prompts []string
	// Frames is the number of frames of each segment (between keyframes i
	// and i+1): ceil((b-a)·fps), forced even; the segment's first frame is
	// keyframe i.
	Frames []int
	// FPS is the frame rate.
	FPS int
}

// Start is the audio offset of the first keyframe in seconds.
func (p VideoPlan) Start() float64 { return p.Timestamps[0] }

// Duration is the length of the video in seconds the timestamps imply.
func (p VideoPlan) Duration() float64 { return p.Timestamps[len(p.Timestamps)-1] - p.Timestamps[0] }

// TotalFrames is the number of frames rendered (every segment's frames
// plus the last keyframe).
func (p VideoPlan) TotalFrames() int {
	n := 1
	for _, f := range p.Frames {
		n += f
	}
	return n
}

// Seconds is the billable duration: Duration rounded up, at least 1.
func (p VideoPlan) Seconds() int { return max(1, int(math.Ceil(p.Duration()-1e-9))) }

type projectMetadata struct {
	Timestamps []json.RawMessage `json:"timestamps"`
	ImageIDs   []json.RawMessage `json:"imageIds"`
	Prompts    []json.RawMessage `json:"prompts"`
}

// PlanVideo reads a video project's metadata (timestamps, imageIds,
// prompts) as the legacy job did: numbers or numeric strings; timestamps
// are kept while t - first <= maxDuration, and the lists are cut to the
// shorter one. Fewer than two keyframes, times that do not increase, or
// malformed values are an Invalid error whose message is the reason.
func PlanVideo(metadata json.RawMessage, fps, maxDuration int) (VideoPlan, error) {
	var m projectMetadata
	if len(bytes.TrimSpace(metadata)) == 0 {
		return VideoPlan{}, apperr.Invalid("the project has no metadata")
	}
	if err := json.Unmarshal(metadata, &m); err != nil {
		return VideoPlan{}, apperr.Wrap(apperr.KindInvalid, "the project metadata is malformed", err)
	}
	if len(m.Timestamps) > 10*MaxKeyframes || len(m.ImageIDs) > 10*MaxKeyframes || len(m.Prompts) > 10*MaxKeyframes {
		return VideoPlan{}, apperr.Invalid(fmt.Sprintf("a project has at most %d keyframes", MaxKeyframes))
	}
	p := VideoPlan{FPS: fps}
	for i, raw := range m.Timestamps {
		t, err := number(raw)
		if err != nil || t < 0 {
			return VideoPlan{}, apperr.Invalid(fmt.Sprintf("timestamps[%d] must be a non-negative number", i))
		}
		if len(p.Timestamps) > 0 && t-p.Timestamps[0] > float64(maxDuration) {
			break
		}
		if len(p.Timestamps) > 0 && t <= p.Timestamps[len(p.Timestamps)-1] {
			return VideoPlan{}, apperr.Invalid("timestamps must increase")
		}
		p.Timestamps = append(p.Timestamps, t)
	}
	for i, raw := range m.ImageIDs {
		if i == len(p.Timestamps) {
			break
		}
		id, err := number(raw)
		if err != nil || id < 1 || id != math.Trunc(id) || id > math.MaxInt32 {
			return VideoPlan{}, apperr.Invalid(fmt.Sprintf("imageIds[%d] must be an image id", i))
		}
		p.ImageIDs = append(p.ImageIDs, int64(id))
	}
	n := min(len(p.Timestamps), len(p.ImageIDs))
	if n < 2 {
		return VideoPlan{}, apperr.Invalid(fmt.Sprintf(
			"a video needs at least two keyframes (timestamps and imageIds within %d seconds)", maxDuration))
	}
	if n > MaxKeyframes {
		return VideoPlan{}, apperr.Invalid(fmt.Sprintf("a project has at most %d keyframes", MaxKeyframes))
	}
	p.Timestamps, p.ImageIDs = p.Timestamps[:n], p.ImageIDs[:n]
	p.Prompts = make([]string, n)
	for i := 0; i < n && i < len(m.Prompts); i++ {
		var s string
		if json.Unmarshal(m.Prompts[i], &s) == nil {
			if len(s) > MaxPromptLen {
				return VideoPlan{}, apperr.Invalid(fmt.Sprintf("prompts[%d] is longer than %d bytes", i, MaxPromptLen))
			}
			p.Prompts[i] = strings.TrimSpace(s)
		}
	}
	for i := 1; i < n; i++ {
		f := int(math.Ceil((p.Timestamps[i] - p.Timestamps[i-1]) * float64(fps)))
		if f%2 == 1 {
			f++
		}
		p.Frames = append(p.Frames, max(f, 2))
	}
	return p, nil
}

// number parses a JSON number or numeric string.
func number(raw json.RawMessage) (float64, error) {
	var v any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		return 0, err
	}
	var s string
	switch x := v.(type) {
	case json.Number:
		s = x.String()
	case string:
		s = strings.TrimSpace(x)
	default:
		return 0, fmt.Errorf("not a number")
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("not a finite number")
	}
	return f, nil
}
