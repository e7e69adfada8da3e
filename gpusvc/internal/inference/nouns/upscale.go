package nouns

import (
	"context"
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
)

// Upscale enlarges the image by Scale (2 or 4) with a Catmull-Rom
// resampler. The output's sides must not exceed MaxSide.
func (b *Backend) Upscale(ctx context.Context, req inference.UpscaleRequest) (image.Image, error) {
	if req.Scale != 2 && req.Scale != 4 {
		return nil, apperr.Invalid("scale must be 2 or 4")
	}
	if req.Image == nil {
		return nil, apperr.Invalid("upscale needs an image")
	}
	src, err := toRGBA(req.Image)
	if err != nil {
		return nil, err
	}
	w, h := src.Bounds().Dx()*req.Scale, src.Bounds().Dy()*req.Scale
	if w > MaxSide || h > MaxSide {
		return nil, apperr.Invalid(fmt.Sprintf("upscaled image would be %dx%d; sides must be at most %d pixels", w, h, MaxSide))
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	xdraw.CatmullRom.Scale(dst, dst.Bounds(), src, src.Bounds(), xdraw.Src, nil)
	return dst, nil
}
