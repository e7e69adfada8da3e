package nouns

import (
	"context"
	"fmt"
	"image"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/shared/apperr"
)

// MaxInterpolateFrames is the most in-between frames one request may ask
// for.
const MaxInterpolateFrames = 120

// Interpolate returns N frames between From and To in palette space:
// frame i (1..N) blends the two by t = i/(N+1) and snaps each pixel to the
// nearest Nouns colour, so every frame is made of Nouns colours only. To is
// resized bilinearly to From's size if they differ.
func (b *Backend) Interpolate(ctx context.Context, req inference.InterpolateRequest) ([]image.Image, error) {
	if req.From == nil || req.To == nil {
		return nil, apperr.Invalid("interpolate needs two images")
	}
	if req.N < 1 || req.N > MaxInterpolateFrames {
		return nil, apperr.Invalid(fmt.Sprintf("frames must be between 1 and %d", MaxInterpolateFrames))
	}
	from, err := toRGBA(req.From)
	if err != nil {
		return nil, err
	}
	to, err := toRGBA(req.To)
	if err != nil {
		return nil, err
	}
	if to.Bounds() != from.Bounds() {
		resized := image.NewRGBA(from.Bounds())
		xdraw.BiLinear.Scale(resized, resized.Bounds(), to, to.Bounds(), xdraw.Src, nil)
		to = resized
	}
	pal := b.newPalettizer()
	frames := make([]image.Image, 0, req.N)
	for i := 1; i <= req.N; i++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := float64(i) / float64(req.N+1)
		out := image.NewRGBA(from.Bounds())
		for p := 0; p < len(out.Pix); p += 4 {
			c := pal.nearest(lerp(rgbaAt(from.Pix, p), rgbaAt(to.Pix, p), t))
			out.Pix[p], out.Pix[p+1], out.Pix[p+2], out.Pix[p+3] = c.R, c.G, c.B, 0xff
		}
		frames = append(frames, out)
	}
	return frames, nil
}
