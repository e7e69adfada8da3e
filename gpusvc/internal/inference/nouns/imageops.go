package nouns

import (
	"context"
	"fmt"
	"image"
	"image/color"
	"math"

	xdraw "golang.org/x/image/draw"

	"github.com/nounsai/sdserver/gpusvc/internal/inference"
	"github.com/nounsai/sdserver/gpusvc/internal/nounsart"
	"github.com/nounsai/sdserver/shared/apperr"
)

// palettizer maps colours to the nearest Nouns colour, caching answers for
// the duration of one request (images hold far fewer distinct colours than
// pixels). Not safe for concurrent use.
type palettizer struct {
	colors []color.RGBA
	cache  map[color.RGBA]color.RGBA
}

func (b *Backend) newPalettizer() *palettizer {
	return &palettizer{colors: b.colors, cache: make(map[color.RGBA]color.RGBA)}
}

func (p *palettizer) nearest(c color.RGBA) color.RGBA {
	c.A = 0xff
	if n, ok := p.cache[c]; ok {
		return n
	}
	n := nounsart.Nearest(p.colors, c)
	p.cache[c] = n
	return n
}

// img2img re-colours the input into the Nouns palette on a grid of square
// cells, 32 cells along the shorter side: each cell's mean colour is
// replaced by the nearest Nouns colour, and the result is blended with the
// input by Strength (0 = input, 1 = fully Nouns-ified). The output is the
// input size rounded down to multiples of 32 (the input is resampled
// bilinearly to it). The operation is deterministic, so every sample is
// the same image.
func (b *Backend) img2img(ctx context.Context, init *image.RGBA, req inference.ImageRequest, samples int) (inference.ImageResult, error) {
	strength := req.Strength
	if math.IsNaN(strength) || strength < 0 || strength > 1 {
		return inference.ImageResult{}, apperr.Invalid("strength must be between 0 and 1")
	}
	w, h := init.Bounds().Dx()/nounsart.Size*nounsart.Size, init.Bounds().Dy()/nounsart.Size*nounsart.Size
	if w == 0 || h == 0 {
		return inference.ImageResult{}, apperr.Invalid("img2img needs an image of at least 32x32 pixels")
	}
	src := init
	if w != init.Bounds().Dx() || h != init.Bounds().Dy() {
		src = image.NewRGBA(image.Rect(0, 0, w, h))
		xdraw.BiLinear.Scale(src, src.Bounds(), init, init.Bounds(), xdraw.Src, nil)
	}
	if err := ctx.Err(); err != nil {
		return inference.ImageResult{}, err
	}
	cell := min(w, h) / nounsart.Size
	pal := b.newPalettizer()
	out := image.NewRGBA(src.Bounds())
	for cy := 0; cy < h; cy += cell {
		for cx := 0; cx < w; cx += cell {
			r := image.Rect(cx, cy, min(cx+cell, w), min(cy+cell, h))
			target := pal.nearest(meanColor(src, r))
			for y := r.Min.Y; y < r.Max.Y; y++ {
				for x := r.Min.X; x < r.Max.X; x++ {
					out.SetRGBA(x, y, lerp(src.RGBAAt(x, y), target, strength))
				}
			}
		}
	}
	res := inference.ImageResult{Info: map[string]any{
		"art": nounsart.DataVersion, "cell": cell, "grid": []int{(w + cell - 1) / cell, (h + cell - 1) / cell},
		"strength": strength,
	}}
	for range samples {
		res.Images = append(res.Images, out)
	}
	return res, nil
}

// meanColor is the mean opaque colour of r in img.
func meanColor(img *image.RGBA, r image.Rectangle) color.RGBA {
	var sr, sg, sb, n int
	for y := r.Min.Y; y < r.Max.Y; y++ {
		off := img.PixOffset(r.Min.X, y)
		for x := r.Min.X; x < r.Max.X; x++ {
			sr += int(img.Pix[off])
			sg += int(img.Pix[off+1])
			sb += int(img.Pix[off+2])
			n++
			off += 4
		}
	}
	if n == 0 {
		return color.RGBA{A: 0xff}
	}
	return color.RGBA{R: uint8(sr / n), G: uint8(sg / n), B: uint8(sb / n), A: 0xff}
}

// rgbaAt reads the colour at byte offset i of an RGBA pixel buffer.
func rgbaAt(pix []uint8, i int) color.RGBA {
	return color.RGBA{R: pix[i], G: pix[i+1], B: pix[i+2], A: pix[i+3]}
}

// lerp blends a towards b by t ∈ [0, 1], rounding; the result is opaque.
func lerp(a, b color.RGBA, t float64) color.RGBA {
	mix := func(x, y uint8) uint8 {
		return uint8(math.Round(float64(x)*(1-t) + float64(y)*t))
	}
	return color.RGBA{R: mix(a.R, b.R), G: mix(a.G, b.G), B: mix(a.B, b.B), A: 0xff}
}

// inpaint repaints the masked pixels of the input with a rendered Noun of
// the input's size (one distinct Noun per sample, see sampleSeeds) and
// leaves every other pixel unchanged. See masked for what selects a pixel.
func (b *Backend) inpaint(ctx context.Context, init *image.RGBA, req inference.ImageRequest, samples int) (inference.ImageResult, error) {
	if req.Mask == nil {
		return inference.ImageResult{}, apperr.Invalid("inpaint needs a mask")
	}
	if err := checkBudget(samples, init.Bounds().Dx(), init.Bounds().Dy()); err != nil {
		return inference.ImageResult{}, err
	}
	sel, err := maskBits(req.Mask, init.Bounds())
	if err != nil {
		return inference.ImageResult{}, err
	}
	seeds, reqSeeds := b.sampleSeeds(req.Prompt, req.Seed, samples)
	res := inference.ImageResult{Info: b.info(seeds, reqSeeds)}
	for _, s := range seeds {
		if err := ctx.Err(); err != nil {
			return inference.ImageResult{}, err
		}
		noun, err := b.renderLike(s, init)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("inpaint: %w", err)
		}
		out := image.NewRGBA(init.Bounds())
		copy(out.Pix, init.Pix)
		for i, on := range sel {
			if on {
				copy(out.Pix[i*4:i*4+4], noun.Pix[i*4:i*4+4])
			}
		}
		res.Images = append(res.Images, out)
	}
	return res, nil
}

// maskBits reads a mask, scaled nearest-neighbour to bounds (which start
// at 0,0) if its size differs, into one bool per pixel, row-major. An
// *image.Alpha/*image.Alpha16 mask selects pixels with alpha ≥ 50%; any
// other mask selects pixels that are at least half opaque and whose
// brightest channel (un-premultiplied) is at least 50%: white or coloured
// strokes repaint, black or transparent pixels keep.
func maskBits(mask image.Image, bounds image.Rectangle) ([]bool, error) {
	mr := mask.Bounds()
	if mr.Dx() < 1 || mr.Dy() < 1 || mr.Dx() > MaxSide || mr.Dy() > MaxSide {
		return nil, apperr.Invalid(fmt.Sprintf("mask sides must be between 1 and %d pixels", MaxSide))
	}
	m := image.NewRGBA(bounds)
	xdraw.NearestNeighbor.Scale(m, bounds, mask, mr, xdraw.Src, nil)
	alphaOnly := false
	switch mask.(type) {
	case *image.Alpha, *image.Alpha16:
		alphaOnly = true
	}
	bits := make([]bool, bounds.Dx()*bounds.Dy())
	for i := range bits {
		p := m.Pix[i*4 : i*4+4]
		a := int(p[3])
		if alphaOnly {
			bits[i] = a >= 128
			continue
		}
		// Pix is premultiplied: channel/alpha ≥ 1/2 ⇔ 2·channel ≥ alpha.
		bright := 2*int(max(p[0], p[1], p[2])) >= a
		bits[i] = a >= 128 && bright
	}
	return bits, nil
}

// pix2pix paints the traits the prompt names ("a shark head", "red
// noggles") over the input at the Placement a Noun of the input's size
// would have, leaving the rest of the input as it is. A prompt naming no
// body, accessory, head or glasses is invalid.
func (b *Backend) pix2pix(ctx context.Context, init *image.RGBA, req inference.ImageRequest, samples int) (inference.ImageResult, error) {
	sel := b.art.Select(req.Prompt)
	layers := sel.Pinned &^ (1 << nounsart.Background)
	if layers == 0 {
		return inference.ImageResult{}, apperr.Invalid(`pix2pix with the nouns backend needs a prompt naming a trait, e.g. "a shark head" or "red noggles"`)
	}
	if err := ctx.Err(); err != nil {
		return inference.ImageResult{}, err
	}
	s := sel.Apply(b.art.SeedFromInt(req.Seed))
	g := b.art.Compose(s, layers)
	out := image.NewRGBA(init.Bounds())
	copy(out.Pix, init.Pix)
	g.Draw(out)
	painted := map[string]any{}
	names := b.art.Traits(s)
	for _, l := range nounsart.Layers() {
		if layers.Has(l) {
			painted[l.String()] = map[string]any{"index": s[l], "name": names[l]}
		}
	}
	res := inference.ImageResult{Info: map[string]any{"art": nounsart.DataVersion, "painted": painted}}
	for range samples {
		res.Images = append(res.Images, out)
	}
	return res, nil
}

// outlines is controlnet_outlines: it finds the input's edges (Sobel
// gradient magnitude of the luminance above a threshold), adjusted by
// Strength in −5..5 (k = round(Strength): k > 0 thickens edges by k pixels,
// k < 0 box-blurs the input with radius −k first so only broad edges
// remain), renders a Noun at the input's size, and traces the edges over it
// in ink: each edge pixel becomes the Nouns colour nearest to the Noun's
// own colour there at 40% brightness. An input without edges gives the
// plain Noun.
func (b *Backend) outlines(ctx context.Context, init *image.RGBA, req inference.ImageRequest, samples int) (inference.ImageResult, error) {
	if math.IsNaN(req.Strength) || req.Strength < -5 || req.Strength > 5 {
		return inference.ImageResult{}, apperr.Invalid("strength must be between -5 and 5 for controlnet_outlines")
	}
	if err := checkBudget(samples, init.Bounds().Dx(), init.Bounds().Dy()); err != nil {
		return inference.ImageResult{}, err
	}
	edges := edgeMap(init, int(math.Round(req.Strength)))
	if err := ctx.Err(); err != nil {
		return inference.ImageResult{}, err
	}
	seeds, reqSeeds := b.sampleSeeds(req.Prompt, req.Seed, samples)
	res := inference.ImageResult{Info: b.info(seeds, reqSeeds)}
	pal := b.newPalettizer()
	for _, s := range seeds {
		noun, err := b.renderLike(s, init)
		if err != nil {
			return inference.ImageResult{}, fmt.Errorf("controlnet outlines: %w", err)
		}
		for i, on := range edges {
			if !on {
				continue
			}
			p := noun.Pix[i*4 : i*4+4]
			ink := pal.nearest(color.RGBA{R: uint8(int(p[0]) * 2 / 5), G: uint8(int(p[1]) * 2 / 5), B: uint8(int(p[2]) * 2 / 5)})
			p[0], p[1], p[2], p[3] = ink.R, ink.G, ink.B, 0xff
		}
		res.Images = append(res.Images, noun)
	}
	return res, nil
}

// edgeThreshold is the Sobel magnitude (on 0..255 luminance) that counts
// as an edge; a hard black/white step scores about 1020.
const edgeThreshold = 160

// edgeMap returns one bool per pixel of img (row-major): true on edges.
// k > 0 dilates the edges by k pixels; k < 0 blurs the luminance with a box
// of radius −k before the Sobel operator.
func edgeMap(img *image.RGBA, k int) []bool {
	w, h := img.Bounds().Dx(), img.Bounds().Dy()
	lum := make([]float64, w*h)
	for i := range lum {
		p := img.Pix[i*4 : i*4+4]
		lum[i] = 0.299*float64(p[0]) + 0.587*float64(p[1]) + 0.114*float64(p[2])
	}
	if k < 0 {
		lum = boxBlur(lum, w, h, -k)
	}
	at := func(x, y int) float64 {
		return lum[min(max(y, 0), h-1)*w+min(max(x, 0), w-1)]
	}
	edges := make([]bool, w*h)
	for y := range h {
		for x := range w {
			gx := at(x+1, y-1) + 2*at(x+1, y) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x-1, y) - at(x-1, y+1)
			gy := at(x-1, y+1) + 2*at(x, y+1) + at(x+1, y+1) - at(x-1, y-1) - 2*at(x, y-1) - at(x+1, y-1)
			edges[y*w+x] = math.Hypot(gx, gy) >= edgeThreshold
		}
	}
	if k > 0 {
		edges = dilate(edges, w, h, k)
	}
	return edges
}

// boxBlur is a separable box blur of radius r with clamped edges.
func boxBlur(v []float64, w, h, r int) []float64 {
	tmp := make([]float64, len(v))
	out := make([]float64, len(v))
	for y := range h {
		for x := range w {
			var s float64
			for d := -r; d <= r; d++ {
				s += v[y*w+min(max(x+d, 0), w-1)]
			}
			tmp[y*w+x] = s / float64(2*r+1)
		}
	}
	for y := range h {
		for x := range w {
			var s float64
			for d := -r; d <= r; d++ {
				s += tmp[min(max(y+d, 0), h-1)*w+x]
			}
			out[y*w+x] = s / float64(2*r+1)
		}
	}
	return out
}

// dilate grows true pixels by r in every direction (a square kernel).
func dilate(v []bool, w, h, r int) []bool {
	tmp := make([]bool, len(v))
	out := make([]bool, len(v))
	for y := range h {
		for x := range w {
			for d := max(x-r, 0); d <= min(x+r, w-1); d++ {
				if v[y*w+d] {
					tmp[y*w+x] = true
					break
				}
			}
		}
	}
	for y := range h {
		for x := range w {
			for d := max(y-r, 0); d <= min(y+r, h-1); d++ {
				if tmp[d*w+x] {
					out[y*w+x] = true
					break
				}
			}
		}
	}
	return out
}
