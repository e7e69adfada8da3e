package generate

import (
	"reflect"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/models"
)

// imageMetadata is the images.metadata of sample i of n: the legacy request
// fields (never the input image or mask bytes, legacy S1: has_input_image
// and has_mask say they were sent), the backend that served it, and the
// backend's Info for this sample (e.g. the nouns traits).
func imageMetadata(job ImageJob, route models.Route, info map[string]any, i, n int) map[string]any {
	m := map[string]any{
		"inference_mode":  job.Mode,
		"model_id":        job.ModelID,
		"prompt":          job.Prompt,
		"negative_prompt": job.NegativePrompt,
		"samples":         job.Samples,
		"steps":           job.Steps,
		"seed":            job.Seed,
		"has_input_image": len(job.Input) > 0,
		"sample":          i,
		"backend":         route.Backend.Name(),
	}
	if route.BackendModel != "" {
		m["backend_model"] = route.BackendModel
	}
	if job.Op == inference.OpTxt2Img {
		m["aspect_ratio"] = job.AspectRatio
	} else if job.Op != inference.OpPix2Pix && job.Op != inference.OpInpaint {
		m["strength"] = job.Strength
	}
	if job.Op == inference.OpInpaint {
		m["has_mask"] = true
	}
	if len(info) > 0 {
		m["info"] = sampleInfo(info, i, n)
	}
	return m
}

// sampleInfo picks sample i's part of a backend's Info: a list value with
// one element per sample becomes that element; anything else is kept.
func sampleInfo(info map[string]any, i, n int) map[string]any {
	out := make(map[string]any, len(info))
	for k, v := range info {
		rv := reflect.ValueOf(v)
		if n > 0 && rv.IsValid() && (rv.Kind() == reflect.Slice || rv.Kind() == reflect.Array) && rv.Len() == n {
			out[k] = rv.Index(i).Interface()
			continue
		}
		out[k] = v
	}
	return out
}
