package generate

import "github.com/nounsai/sdserver/gpusvc/internal/inference"

// A work unit is one Text to Image sample of 25 steps at 512×512 pixels,
// the scale the proxy's balancer.Estimate uses; the paced fake backend
// (inference/paced) sleeps per unit.
const (
	refSteps  = 25
	refPixels = 512 * 512
)

// opCost is the relative cost of each operation per sample, step and pixel
// (the proxy's modeCost), and the fixed cost of the model routes.
var opCost = map[inference.Op]float64{
	inference.OpTxt2Img:            1.0,
	inference.OpImg2Img:            1.0,
	inference.OpPix2Pix:            1.2,
	inference.OpControlNetOutlines: 1.3,
	inference.OpControlNetDepth:    1.5,
	inference.OpControlNetSegment:  1.5,
	inference.OpInpaint:            1.1,
	inference.OpExtendPrompt:       0.3,
	inference.OpInterrogate:        0.5,
	inference.OpSegment:            0.5,
	inference.OpUpscale:            4.0,
}

// WorkUnits estimates the work of an image request.
func WorkUnits(op inference.Op, req inference.ImageRequest) float64 {
	w, h := req.Width, req.Height
	if req.Init != nil {
		w, h = req.Init.Bounds().Dx(), req.Init.Bounds().Dy()
	}
	cost := opCost[op]
	if op == inference.OpImg2Img {
		cost *= min(max(req.Strength, 0.1), 1)
	}
	return cost * float64(max(req.Samples, 1)) * float64(max(req.Steps, 1)) / refSteps * float64(w*h) / refPixels
}

// RouteUnits is the fixed work of a model route.
func RouteUnits(op inference.Op) float64 { return opCost[op] }
