package nounsart

import (
	"fmt"
	"image"
	"image/color"
)

// Seed selects one part per layer: Seed[Body] is an index into
// Parts(Body), and so on. The zero Seed is a valid Noun.
type Seed [NumLayers]int

// Valid reports whether every index is inside its layer.
func (a *Art) Valid(s Seed) bool {
	for _, l := range Layers() {
		if s[l] < 0 || s[l] >= a.Count(l) {
			return false
		}
	}
	return true
}

// Traits names the parts of a seed, in layer order.
func (a *Art) Traits(s Seed) [NumLayers]string {
	var out [NumLayers]string
	for _, l := range Layers() {
		out[l] = a.parts[l][s[l]].Name
	}
	return out
}

// LayerSet is a set of layers.
type LayerSet uint8

// AllLayers holds every layer.
const AllLayers LayerSet = 1<<NumLayers - 1

// Has reports whether l is in the set.
func (s LayerSet) Has(l Layer) bool { return s&(1<<l) != 0 }

// With returns the set with l added.
func (s LayerSet) With(l Layer) LayerSet { return s | 1<<l }

// Grid is a 32×32 canvas, row-major; a zero-alpha entry is transparent.
type Grid [Size * Size]color.RGBA

// Compose paints the chosen layers of s onto a transparent grid in layer
// order (background fills the whole grid; colour 0 never overwrites).
// Indices must be valid (see Valid).
func (a *Art) Compose(s Seed, layers LayerSet) Grid {
	var g Grid
	if layers.Has(Background) {
		bg := a.backgrounds[s[Background]]
		for i := range g {
			g[i] = bg
		}
	}
	for _, l := range [...]Layer{Body, Accessory, Head, Glasses} {
		if !layers.Has(l) {
			continue
		}
		for _, px := range a.parts[l][s[l]].Pixels {
			g[int(px.Y)*Size+int(px.X)] = a.Palette[px.Color]
		}
	}
	return g
}

// Placement returns how a 32×32 Noun sits on a w×h image: the integer
// scale (the largest that fits, at least 1) and the top-left offset that
// centres it (negative when the image is smaller than 32 px).
func Placement(w, h int) (scale, ox, oy int) {
	scale = max(1, min(w, h)/Size)
	return scale, (w - Size*scale) / 2, (h - Size*scale) / 2
}

// Render draws the Noun s on a new w×h image: the 32×32 Noun scaled by the
// integer factor of Placement with nearest-neighbour (crisp) pixels,
// centred, and padded with its background colour. w and h must be ≥ 1.
func (a *Art) Render(s Seed, w, h int) (*image.RGBA, error) {
	if !a.Valid(s) {
		return nil, fmt.Errorf("render noun: invalid seed %v", s)
	}
	if w < 1 || h < 1 {
		return nil, fmt.Errorf("render noun: bad size %dx%d", w, h)
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	fill(dst, a.backgrounds[s[Background]])
	g := a.Compose(s, AllLayers)
	g.Draw(dst)
	return dst, nil
}

// fill paints every pixel of dst with c.
func fill(dst *image.RGBA, c color.RGBA) {
	b := dst.Bounds()
	if b.Empty() {
		return
	}
	row := dst.Pix[:b.Dx()*4]
	for x := 0; x < len(row); x += 4 {
		row[x], row[x+1], row[x+2], row[x+3] = c.R, c.G, c.B, c.A
	}
	for y := 1; y < b.Dy(); y++ {
		copy(dst.Pix[y*dst.Stride:y*dst.Stride+len(row)], row)
	}
}

// Draw paints the grid onto dst (whose bounds must start at 0,0) at the
// Placement of dst's size: every opaque grid cell becomes a scale×scale
// block; transparent cells leave dst untouched.
func (g *Grid) Draw(dst *image.RGBA) {
	w, h := dst.Bounds().Dx(), dst.Bounds().Dy()
	scale, ox, oy := Placement(w, h)
	opaque := true
	for _, c := range g {
		if c.A == 0 {
			opaque = false
			break
		}
	}
	for gy := 0; gy < Size; gy++ {
		y0 := oy + gy*scale
		if y0+scale <= 0 || y0 >= h {
			continue
		}
		first := -1
		for dy := 0; dy < scale; dy++ {
			y := y0 + dy
			if y < 0 || y >= h {
				continue
			}
			row := dst.Pix[y*dst.Stride : y*dst.Stride+w*4]
			if opaque && first >= 0 {
				// Fully opaque grids repeat the first drawn row of the band.
				copy(row, dst.Pix[first*dst.Stride:first*dst.Stride+w*4])
				continue
			}
			for gx := 0; gx < Size; gx++ {
				c := g[gy*Size+gx]
				if c.A == 0 {
					continue
				}
				x0 := max(0, ox+gx*scale)
				x1 := min(w, ox+(gx+1)*scale)
				for x := x0; x < x1; x++ {
					i := x * 4
					row[i], row[i+1], row[i+2], row[i+3] = c.R, c.G, c.B, c.A
				}
			}
			first = y
		}
	}
}

// GridFromImage samples img back onto the 32×32 grid using the Placement
// of its size: each cell gets the mean colour of its scale×scale block (the
// exact colour for images drawn by Render). img's bounds must start at 0,0.
// Cells outside img are zero.
func GridFromImage(img *image.RGBA) Grid {
	var g Grid
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	scale, ox, oy := Placement(w, h)
	for gy := 0; gy < Size; gy++ {
		for gx := 0; gx < Size; gx++ {
			var r, gg, bb, n int
			for y := max(0, oy+gy*scale); y < min(h, oy+(gy+1)*scale); y++ {
				off := y*img.Stride + max(0, ox+gx*scale)*4
				for x := max(0, ox+gx*scale); x < min(w, ox+(gx+1)*scale); x++ {
					r += int(img.Pix[off])
					gg += int(img.Pix[off+1])
					bb += int(img.Pix[off+2])
					n++
					off += 4
				}
			}
			if n > 0 {
				g[gy*Size+gx] = color.RGBA{R: uint8(r / n), G: uint8(gg / n), B: uint8(bb / n), A: 0xff}
			}
		}
	}
	return g
}
