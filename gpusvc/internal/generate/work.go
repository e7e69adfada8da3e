package generate

import (
	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/gpuroute"
)

// opWork is the cost entry of each operation in the shared table of GPU
// routes and work costs (gpuroute), the scale the proxy's balancer
// estimates with: the legacy inference mode of an image operation, or the
// route of a model operation with a fixed cost.
var opWork = map[inference.Op]struct {
	mode  gpuroute.Mode
	route gpuroute.Route
}{
	inference.OpTxt2Img:            {mode: gpuroute.ModeTxt2Img},
	inference.OpImg2Img:            {mode: gpuroute.ModeImg2Img},
	inference.OpPix2Pix:            {mode: gpuroute.ModePix2Pix},
	inference.OpControlNetOutlines: {mode: gpuroute.ModeOutlines},
	inference.OpControlNetDepth:    {mode: gpuroute.ModeDepth},
	inference.OpControlNetSegment:  {mode: gpuroute.ModeSegmentation},
	inference.OpInpaint:            {mode: gpuroute.ModeMask},
	inference.OpExtendPrompt:       {route: gpuroute.ExtendPrompt},
	inference.OpInterrogate:        {route: gpuroute.Interrogate},
	inference.OpSegment:            {route: gpuroute.Mask},
	inference.OpUpscale:            {route: gpuroute.Upscale},
}

// WorkUnits estimates the work of an image request.
func WorkUnits(op inference.Op, req inference.ImageRequest) float64 {
	w, h := req.Width, req.Height
	if req.Init != nil {
		w, h = req.Init.Bounds().Dx(), req.Init.Bounds().Dy()
	}
	return gpuroute.Units(opWork[op].mode, float64(req.Samples), float64(req.Steps), float64(w), float64(h), req.Strength)
}

// RouteUnits is the fixed work of a model route. A work unit is one Text to
// Image sample of 25 steps at 512×512 pixels (gpuroute's scale, the one the
// proxy's balancer estimates with); the paced fake backend (inference/paced)
// sleeps per unit.
func RouteUnits(op inference.Op) float64 { return opWork[op].route.FixedCost() }
